"""Prometheus metrics for relaybus (the ``prometheus`` extra).

    metrics = relaybus.prometheus.Metrics()      # registers in prometheus_client's REGISTRY
    metrics.instrument(bus)                      # an observer of the bus's runtime events
    relaybus.prometheus.serve(9464)              # /metrics over HTTP (or use your app's own)

Built on the public API only: the counters and histograms come from ``bus.observe`` events
(``JobsInserted``, ``JobClaimed``, ``JobFinished``, ``JobRescued``); the queue depth and the
live nodes are sampled with the admin API (``bus.jobs.stats()``, ``bus.nodes()``) by the leader
node only, every ``sample_interval`` seconds while it leads, so N nodes do not query the store
N times and only one process exports those gauges. The metric names are listed in
``METRICS`` (and in docs/observability.md).
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

import relaybus as rb

__all__ = ["DURATION_BUCKETS", "METRICS", "Metrics", "serve"]

#: Seconds: from 5 ms to 10 minutes (job runs and queue waits).
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
)  # fmt: skip

#: name → (type, labels, help). Counters are exported with the ``_total`` suffix.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "relaybus_jobs_inserted": (
        "counter", ("queue", "handler", "outcome"),
        "Jobs inserted by dispatch (outcome: inserted, duplicate, replaced)",
    ),
    "relaybus_jobs_completed": ("counter", ("queue", "handler"), "Job runs that completed"),
    "relaybus_jobs_retried": (
        "counter", ("queue", "handler"), "Job runs that failed and will be retried",
    ),
    "relaybus_jobs_discarded": (
        "counter", ("queue", "handler"),
        "Jobs discarded (attempts exhausted, rb.Discard, or rescued past their limits)",
    ),
    "relaybus_jobs_cancelled": ("counter", ("queue", "handler"), "Job runs that raised rb.Cancel"),
    "relaybus_jobs_snoozed": ("counter", ("queue", "handler"), "Job runs that raised rb.Snooze"),
    "relaybus_jobs_rescued": (
        "counter", ("queue", "handler"), "Stuck running jobs rescued by the leader",
    ),
    "relaybus_job_duration_seconds": (
        "histogram", ("queue", "handler"), "Execution time of job runs",
    ),
    "relaybus_job_queue_wait_seconds": (
        "histogram", ("queue", "handler"), "Time from a job's scheduled_at to its claim",
    ),
    "relaybus_jobs_running": ("gauge", ("queue",), "Jobs running on this node now"),
    "relaybus_queue_jobs": (
        "gauge", ("queue", "state"), "Jobs by queue and state (sampled by the leader only)",
    ),
    "relaybus_nodes_alive": ("gauge", (), "Live nodes (sampled by the leader only)"),
    "relaybus_leader": ("gauge", (), "1 while a node of this process is the leader"),
}  # fmt: skip

_STATES = tuple(state.value for state in rb.JobState)


def _le(bound: float) -> str:
    """A bucket's ``le`` label, as prometheus_client writes it."""
    return "+Inf" if bound == float("inf") else repr(bound)


class _Histogram:
    """Counts per bucket (not cumulative: the collector adds them up) and the sum."""

    __slots__ = ("buckets", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.sum = 0.0


class _Series:
    """The per-job figures of one (queue, handler), as plain numbers: a job costs a few
    additions here (no lock, no label lookup); the collector reads them at scrape time."""

    __slots__ = (
        "cancelled", "completed", "discarded", "duration", "rescued", "retried", "running",
        "snoozed", "wait",
    )  # fmt: skip

    def __init__(self, buckets: int) -> None:
        self.completed = self.retried = self.discarded = self.cancelled = 0
        self.snoozed = self.rescued = self.running = 0
        self.duration = _Histogram(buckets)
        self.wait = _Histogram(buckets)


_COUNTERS = (
    ("relaybus_jobs_completed", "completed"),
    ("relaybus_jobs_retried", "retried"),
    ("relaybus_jobs_discarded", "discarded"),
    ("relaybus_jobs_cancelled", "cancelled"),
    ("relaybus_jobs_snoozed", "snoozed"),
    ("relaybus_jobs_rescued", "rescued"),
)
_HISTOGRAMS = (
    ("relaybus_job_duration_seconds", "duration"),
    ("relaybus_job_queue_wait_seconds", "wait"),
)
_JOB_LABELS = ["queue", "handler"]


class _JobCollector(Collector):
    """Exports the per-job counters, histograms and the running gauge from ``Metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families([], [])

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        return self._families(list(m.series_by_key.items()), list(m.inserted.items()))

    def _families(
        self,
        series: list[tuple[tuple[str, str], _Series]],
        inserted: list[tuple[tuple[str, str, str], int]],
    ) -> list[Metric]:
        families: list[Metric] = []
        family = CounterMetricFamily(
            "relaybus_jobs_inserted", METRICS["relaybus_jobs_inserted"][2],
            labels=["queue", "handler", "outcome"],
        )  # fmt: skip
        for labels, count in inserted:
            family.add_metric(list(labels), count)
        families.append(family)
        for name, attr in _COUNTERS:
            family = CounterMetricFamily(name, METRICS[name][2], labels=_JOB_LABELS)
            for key, s in series:
                family.add_metric(list(key), getattr(s, attr))
            families.append(family)
        bounds = self._metrics.bucket_labels
        for name, attr in _HISTOGRAMS:
            hist = HistogramMetricFamily(name, METRICS[name][2], labels=_JOB_LABELS)
            for key, s in series:
                h: _Histogram = getattr(s, attr)
                cumulative = list(accumulate(h.buckets))
                hist.add_metric(list(key), list(zip(bounds, cumulative, strict=True)), h.sum)
            families.append(hist)
        running = GaugeMetricFamily(
            "relaybus_jobs_running", METRICS["relaybus_jobs_running"][2], labels=["queue"]
        )
        by_queue: dict[str, int] = {}
        for (queue, _handler), s in series:
            by_queue[queue] = by_queue.get(queue, 0) + s.running
        for queue, count in by_queue.items():
            running.add_metric([queue], count)
        families.append(running)
        return families


class Metrics:
    """The relaybus metrics in ``registry`` (prometheus_client's default ``REGISTRY`` unless
    given); ``instrument`` as many buses as you like with one instance."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        sample_interval: float = 15.0,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        if sample_interval <= 0:
            raise rb.ConfigurationError("sample_interval must be > 0")
        bounds = sorted(float(b) for b in buckets if b != float("inf"))
        if not bounds:
            raise rb.ConfigurationError("buckets must hold at least one finite bound")
        self.registry = registry if registry is not None else REGISTRY
        self.sample_interval = sample_interval
        self.logger = logging.getLogger("relaybus.prometheus")
        self.bounds = [*bounds, float("inf")]
        self.bucket_labels = [_le(b) for b in self.bounds]
        self.series_by_key: dict[tuple[str, str], _Series] = {}
        self.inserted: dict[tuple[str, str, str], int] = {}
        r = self.registry
        self.queue_jobs = Gauge(
            "relaybus_queue_jobs", METRICS["relaybus_queue_jobs"][2], ("queue", "state"),
            registry=None,
        )  # fmt: skip
        self.nodes_alive = Gauge(
            "relaybus_nodes_alive", METRICS["relaybus_nodes_alive"][2], registry=None
        )
        self.leader = Gauge("relaybus_leader", METRICS["relaybus_leader"][2], registry=None)
        r.register(_JobCollector(self))  # ValueError if these metrics are registered already
        for gauge in (self.queue_jobs, self.nodes_alive, self.leader):
            r.register(gauge)
        self._samplers: dict[str, asyncio.Task[None]] = {}  # leader node id → its sampler
        self._sampled_queues: set[str] = set()

    def instrument(self, bus: rb.Bus[Any]) -> None:
        """Observe ``bus``'s runtime events (and sample the store while one of its nodes in
        this process leads)."""

        def observer(event: rb.RuntimeEvent) -> None:
            self.record(event, bus)

        kinds = (
            rb.JobFinished, rb.JobClaimed, rb.JobsInserted, rb.JobRescued, rb.LeadershipGained,
            rb.LeadershipLost, rb.NodeStopped,
        )  # fmt: skip
        bus.observe(observer, kinds=kinds)

    def series(self, queue: str, handler: str) -> _Series:
        key = (queue, handler)
        found = self.series_by_key.get(key)
        if found is None:
            found = self.series_by_key[key] = _Series(len(self.bounds))
        return found

    def _observe(self, h: _Histogram, value: float) -> None:
        h.buckets[bisect_left(self.bounds, value)] += 1
        h.sum += value

    def record(self, event: rb.RuntimeEvent, bus: rb.Bus[Any]) -> None:
        """Update the metrics for one runtime event of ``bus``."""
        if isinstance(event, rb.JobFinished):
            s = self.series(event.queue, event.handler)
            s.running -= 1
            if event.duration is not None:
                self._observe(s.duration, event.duration)
            outcome = event.outcome
            if outcome == "completed":
                s.completed += 1
            elif outcome == "retried":
                s.retried += 1
            elif outcome == "discarded":
                s.discarded += 1
            elif outcome == "cancelled":
                s.cancelled += 1
            elif outcome == "snoozed":
                s.snoozed += 1
        elif isinstance(event, rb.JobClaimed):
            s = self.series(event.queue, event.handler)
            s.running += 1
            self._observe(s.wait, event.wait)
        elif isinstance(event, rb.JobsInserted):
            inserted = self.inserted
            for job in event.jobs:
                key = (job.queue, job.handler, job.outcome)
                inserted[key] = inserted.get(key, 0) + 1
        elif isinstance(event, rb.JobRescued):
            s = self.series(event.queue, event.handler)
            s.rescued += 1
            if event.state is rb.JobState.DISCARDED:
                s.discarded += 1
        elif isinstance(event, rb.LeadershipGained):
            self._start_sampling(event.node, bus)
        elif isinstance(event, rb.LeadershipLost | rb.NodeStopped):
            self._stop_sampling(event.node)

    # -- leader-only sampling
    def _start_sampling(self, node: str, bus: rb.Bus[Any]) -> None:
        if node in self._samplers:
            return
        task = asyncio.get_running_loop().create_task(self._sample_loop(bus))
        self._samplers[node] = task
        self.leader.set(1)

    def _stop_sampling(self, node: str) -> None:
        task = self._samplers.pop(node, None)
        if task is None:
            return
        task.cancel()
        if not self._samplers:  # no longer the leader here: export no stale samples
            self.leader.set(0)
            self.queue_jobs.clear()
            self._sampled_queues.clear()
            self.nodes_alive.set(0)

    async def _sample_loop(self, bus: rb.Bus[Any]) -> None:
        while True:
            try:
                await self.sample(bus)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.logger.warning("sampling queue depth failed", exc_info=True)
            await asyncio.sleep(self.sample_interval)

    async def sample(self, bus: rb.Bus[Any]) -> None:
        """Set the queue depth and live-node gauges from the admin API, once."""
        stats = await bus.jobs.stats()
        nodes = await bus.nodes()
        for queue, counts in stats.items():
            for state in _STATES:
                self.queue_jobs.labels(queue, state).set(counts.get(state, 0))
        for queue in self._sampled_queues - set(stats):
            for state in _STATES:
                self.queue_jobs.remove(queue, state)
        self._sampled_queues = set(stats)
        self.nodes_alive.set(len(nodes))


def serve(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry | None = None) -> Any:
    """Serve ``registry`` (default: prometheus_client's) at ``http://addr:port/metrics`` from
    a daemon thread; returns the server (``.shutdown()`` stops it)."""
    server, _thread = start_http_server(port, addr, registry if registry is not None else REGISTRY)
    return server
