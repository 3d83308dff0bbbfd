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
from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

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


class _Series:
    """The label children of one (queue, handler): looked up once, then reused per job."""

    __slots__ = (
        "cancelled", "completed", "discarded", "duration", "rescued", "retried", "running",
        "snoozed", "wait",
    )  # fmt: skip

    def __init__(self, metrics: Metrics, queue: str, handler: str) -> None:
        self.completed = metrics.completed.labels(queue, handler)
        self.retried = metrics.retried.labels(queue, handler)
        self.discarded = metrics.discarded.labels(queue, handler)
        self.cancelled = metrics.cancelled.labels(queue, handler)
        self.snoozed = metrics.snoozed.labels(queue, handler)
        self.rescued = metrics.rescued.labels(queue, handler)
        self.duration = metrics.duration.labels(queue, handler)
        self.wait = metrics.wait.labels(queue, handler)
        self.running = metrics.running.labels(queue)


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
        self.registry = registry if registry is not None else REGISTRY
        self.sample_interval = sample_interval
        self.logger = logging.getLogger("relaybus.prometheus")
        r, jh = self.registry, ("queue", "handler")

        def counter(name: str) -> Counter:
            _kind, labels, doc = METRICS[name]
            return Counter(name, doc, labels, registry=r)

        self.inserted = counter("relaybus_jobs_inserted")
        self.completed = counter("relaybus_jobs_completed")
        self.retried = counter("relaybus_jobs_retried")
        self.discarded = counter("relaybus_jobs_discarded")
        self.cancelled = counter("relaybus_jobs_cancelled")
        self.snoozed = counter("relaybus_jobs_snoozed")
        self.rescued = counter("relaybus_jobs_rescued")
        self.duration = Histogram(
            "relaybus_job_duration_seconds", METRICS["relaybus_job_duration_seconds"][2], jh,
            registry=r, buckets=tuple(buckets),
        )  # fmt: skip
        self.wait = Histogram(
            "relaybus_job_queue_wait_seconds", METRICS["relaybus_job_queue_wait_seconds"][2], jh,
            registry=r, buckets=tuple(buckets),
        )  # fmt: skip
        self.running = Gauge(
            "relaybus_jobs_running", METRICS["relaybus_jobs_running"][2], ("queue",), registry=r
        )
        self.queue_jobs = Gauge(
            "relaybus_queue_jobs", METRICS["relaybus_queue_jobs"][2], ("queue", "state"),
            registry=r,
        )  # fmt: skip
        self.nodes_alive = Gauge(
            "relaybus_nodes_alive", METRICS["relaybus_nodes_alive"][2], registry=r
        )
        self.leader = Gauge("relaybus_leader", METRICS["relaybus_leader"][2], registry=r)
        self._series: dict[tuple[str, str], _Series] = {}
        self._samplers: dict[str, asyncio.Task[None]] = {}  # leader node id → its sampler
        self._sampled_queues: set[str] = set()

    def instrument(self, bus: rb.Bus[Any]) -> None:
        """Observe ``bus``'s runtime events (and sample the store while one of its nodes in
        this process leads)."""

        def observer(event: rb.RuntimeEvent) -> None:
            self.record(event, bus)

        bus.observe(observer)

    def series(self, queue: str, handler: str) -> _Series:
        key = (queue, handler)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = _Series(self, queue, handler)
        return found

    def record(self, event: rb.RuntimeEvent, bus: rb.Bus[Any]) -> None:
        """Update the metrics for one runtime event of ``bus``."""
        if isinstance(event, rb.JobFinished):
            s = self.series(event.queue, event.handler)
            s.running.dec()
            if event.duration is not None:
                s.duration.observe(event.duration)
            outcome = event.outcome
            if outcome == "completed":
                s.completed.inc()
            elif outcome == "retried":
                s.retried.inc()
            elif outcome == "discarded":
                s.discarded.inc()
            elif outcome == "cancelled":
                s.cancelled.inc()
            elif outcome == "snoozed":
                s.snoozed.inc()
        elif isinstance(event, rb.JobClaimed):
            s = self.series(event.queue, event.handler)
            s.running.inc()
            s.wait.observe(event.wait)
        elif isinstance(event, rb.JobsInserted):
            for job in event.jobs:
                self.inserted.labels(job.queue, job.handler, job.outcome).inc()
        elif isinstance(event, rb.JobRescued):
            s = self.series(event.queue, event.handler)
            s.rescued.inc()
            if event.state is rb.JobState.DISCARDED:
                s.discarded.inc()
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
