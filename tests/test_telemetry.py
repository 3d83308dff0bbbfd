"""relaybus.otel and relaybus.prometheus in one process (memory store, fake clock), and the
example Grafana dashboard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.context import attach, detach
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanContext, SpanKind, StatusCode
from prometheus_client import CollectorRegistry

import relaybus as rb
import relaybus.otel
import relaybus.prometheus
from relaybus.testing import FakeClock, drain
from tests.conformance._support import claim

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Order(rb.Event, name="tel.order"):
    n: int
    mode: str = "ok"


def traced_bus(clock: FakeClock) -> tuple[rb.Bus[None], InMemorySpanExporter]:
    bus: rb.Bus[None] = rb.Bus(store=rb.MemoryStore(clock=clock), errors="log")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    relaybus.otel.instrument(bus, tracer_provider=provider)

    @bus.on(Order, name="tel.inline")
    async def inline(event: Order, ctx: rb.Context[None]) -> None:
        if event.mode == "inline_fails":
            raise ValueError("inline broke")

    @bus.job(Order, name="tel.job", queue="orders", max_attempts=2, timeout=5)
    async def job(event: Order, ctx: rb.Context[None]) -> None:
        if event.mode == "fail":
            raise RuntimeError("job broke")
        if event.mode == "snooze":
            raise rb.Snooze(10)
        if event.mode == "cancel":
            raise rb.Cancel("no")
        if event.mode == "discard":
            raise rb.Discard("never")

    return bus, exporter


async def until(check: Callable[[], bool]) -> None:
    """Wait for ``check()`` (the caller bounds the wait)."""
    for _ in range(100_000):
        if check():
            return
        await asyncio.sleep(0.01)


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_dispatch_insert_and_runs_share_one_trace(clock: FakeClock) -> None:
    bus, exporter = traced_bus(clock)
    async with bus:
        result = await bus.dispatch(Order(1), meta={"tenant": "a"})
        job_id = result.jobs[0].id
        job = await bus.jobs.get(job_id)
        assert job is not None
        carrier = job.meta[rb.TRACE_META_KEY]
        assert set(carrier) == {"traceparent"} and job.meta["tenant"] == "a"
        await drain(bus)
    [send] = by_name(exporter, "send tel.order")
    [insert] = by_name(exporter, "insert orders")
    [inline] = by_name(exporter, "process tel.inline")
    [run] = by_name(exporter, "process orders")
    trace_id = send.context.trace_id
    assert carrier["traceparent"].startswith(f"00-{trace_id:032x}-{send.context.span_id:016x}-")
    assert send.kind is SpanKind.PRODUCER and send.parent is None
    for child in (insert, inline, run):
        assert child.context.trace_id == trace_id
        assert child.parent is not None and child.parent.span_id == send.context.span_id
    assert insert.kind is SpanKind.CLIENT
    assert insert.attributes is not None and insert.attributes["messaging.message.id"] == str(
        job_id
    )
    assert insert.start_time is not None and insert.end_time is not None
    assert insert.start_time <= insert.end_time
    assert run.kind is SpanKind.CONSUMER
    assert dict(run.attributes or {}) == {
        "messaging.system": "relaybus",
        "messaging.operation.type": "process",
        "messaging.destination.name": "orders",
        "messaging.message.id": str(job_id),
        "relaybus.job.handler": "tel.job",
        "relaybus.job.attempt": 1,
        "relaybus.job.outcome": "completed",
    }


@pytest.mark.parametrize(
    ("mode", "outcome", "error"),
    [
        ("fail", "retried", True),
        ("snooze", "snoozed", False),
        ("cancel", "cancelled", False),
        ("discard", "discarded", False),
    ],
)
async def test_job_span_outcomes(clock: FakeClock, mode: str, outcome: str, error: bool) -> None:
    bus, exporter = traced_bus(clock)
    async with bus:
        await bus.dispatch(Order(1, mode))
        await drain(bus)
    run = by_name(exporter, "process orders")[0]
    assert run.attributes is not None and run.attributes["relaybus.job.outcome"] == outcome
    assert (run.status.status_code is StatusCode.ERROR) is error
    assert [e.name for e in run.events] == (["exception"] if error else [])
    if error:
        assert run.attributes["error.type"] == "RuntimeError"


async def test_the_last_failed_attempt_is_discarded_and_a_timeout_is_interrupted(
    clock: FakeClock,
) -> None:
    bus, exporter = traced_bus(clock)

    @bus.job(Order, name="tel.slow", queue="slow", timeout=0.05)
    async def slow(event: Order, ctx: rb.Context[None]) -> None:
        await asyncio.sleep(30)

    async with bus:
        await bus.dispatch(Order(1, "fail"))
        await drain(bus)
        clock.advance(3600)
        await drain(bus)
    runs = by_name(exporter, "process orders")
    assert [r.attributes["relaybus.job.outcome"] for r in runs if r.attributes] == [
        "retried",
        "discarded",
    ]
    timed_out = by_name(exporter, "process slow")[0]
    assert timed_out.attributes is not None
    assert timed_out.attributes["relaybus.job.outcome"] == "interrupted"
    assert timed_out.status.status_code is StatusCode.ERROR


async def test_inline_failure_and_a_batch(clock: FakeClock) -> None:
    bus, exporter = traced_bus(clock)
    bus.errors = "raise"
    async with bus:
        with pytest.raises(rb.DispatchError):
            await bus.dispatch(Order(1, "inline_fails"))
        await bus.dispatch_many([Order(2), Order(3)])
    [failed] = [s for s in by_name(exporter, "process tel.inline") if s.events]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["relaybus.job.outcome"] == "failed"
    sends = by_name(exporter, "send tel.order")
    assert sends[0].status.status_code is StatusCode.ERROR  # the DispatchError
    batch = sends[1]
    assert batch.attributes is not None and batch.attributes["messaging.batch.message_count"] == 2
    [insert] = [s for s in by_name(exporter, "insert orders") if s.parent == batch.context]
    assert insert.attributes is not None and insert.attributes["messaging.batch.message_count"] == 2


async def test_prometheus_counters_histograms_and_leader_sampling(clock: FakeClock) -> None:
    registry = CollectorRegistry()
    metrics = relaybus.prometheus.Metrics(registry, sample_interval=0.01)
    bus: rb.Bus[None] = rb.Bus(store=rb.MemoryStore(clock=clock))
    metrics.instrument(bus)
    done = asyncio.Event()

    @bus.job(Order, name="tel.job", queue="orders", max_attempts=2, backoff=rb.Constant(1))
    async def job(event: Order, ctx: rb.Context[None]) -> None:
        clock.advance(0.2)
        if event.mode == "fail":
            raise RuntimeError("job broke")
        if event.n == 3:
            done.set()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    jobs = {"queue": "orders", "handler": "tel.job"}
    async with bus:
        await bus.dispatch(Order(1), delay=2)
        await bus.dispatch(Order(2, "fail"))
        assert value("relaybus_jobs_inserted_total", outcome="inserted", **jobs) == 2
        clock.advance(2)
        async with bus.worker(queues={"orders": 2}, node="prom") as w:
            await w.stager.run_once()
            assert await w.elector.run_once() is True  # the leader samples the store
            await asyncio.sleep(0.05)
            assert value("relaybus_leader") == 1
            assert value("relaybus_nodes_alive") == 1
            await bus.dispatch(Order(3))
            async with asyncio.timeout(10):
                await done.wait()
                await until(lambda: value("relaybus_jobs_completed_total", **jobs) == 2)
                await until(
                    lambda: value("relaybus_queue_jobs", queue="orders", state="completed") == 2
                )
            assert value("relaybus_queue_jobs", queue="orders", state="retryable") == 1
            assert value("relaybus_jobs_running", queue="orders") == 0
        # stopped: no longer the leader here, so no stale depth
        assert value("relaybus_leader") == 0
        assert value("relaybus_queue_jobs", queue="orders", state="completed") is None
    assert value("relaybus_jobs_retried_total", **jobs) == 1
    assert value("relaybus_jobs_discarded_total", **jobs) in (None, 0)
    assert value("relaybus_job_duration_seconds_count", **jobs) == 3
    assert value("relaybus_job_duration_seconds_sum", **jobs) == pytest.approx(0.6)
    assert value("relaybus_job_queue_wait_seconds_count", **jobs) == 3
    # job 1 was due 2 s after insert and claimed then (wait 0); job 2 waited 2 s
    assert value("relaybus_job_queue_wait_seconds_sum", **jobs) == pytest.approx(2.0, abs=0.5)
    assert value("relaybus_job_queue_wait_seconds_bucket", le="0.005", **jobs) is not None


async def test_prometheus_counts_rescues(clock: FakeClock) -> None:
    registry = CollectorRegistry()
    metrics = relaybus.prometheus.Metrics(registry)
    bus: rb.Bus[None] = rb.Bus(store=rb.MemoryStore(clock=clock))
    metrics.instrument(bus)

    @bus.job(Order, name="tel.job", queue="orders", max_attempts=1)
    async def job(event: Order, ctx: rb.Context[None]) -> None: ...

    async with bus:
        await bus.dispatch(Order(1))
        await claim(bus.store, "ghost", queue="orders")
        w = bus.worker(queues={"orders": 1})
        assert await w.elector.run_once() is True
        assert await w.rescuer.run_once() == 1
        await w.elector.resign()
    labels = {"queue": "orders", "handler": "tel.job"}
    assert registry.get_sample_value("relaybus_jobs_rescued_total", labels) == 1
    assert registry.get_sample_value("relaybus_jobs_discarded_total", labels) == 1  # exhausted


def test_metrics_reject_bad_settings_and_a_second_registration() -> None:
    with pytest.raises(rb.ConfigurationError):
        relaybus.prometheus.Metrics(CollectorRegistry(), sample_interval=0)
    with pytest.raises(rb.ConfigurationError):
        relaybus.prometheus.Metrics(CollectorRegistry(), buckets=[float("inf")])
    registry = CollectorRegistry()
    relaybus.prometheus.Metrics(registry, buckets=[2.0, 1.0])
    with pytest.raises(ValueError, match="Duplicated"):  # what `--metrics-port` relies on
        relaybus.prometheus.Metrics(registry)


async def test_histogram_buckets_are_cumulative_and_le_inclusive(clock: FakeClock) -> None:
    registry = CollectorRegistry()
    metrics = relaybus.prometheus.Metrics(registry, buckets=(1.0, 2.0))
    bus: rb.Bus[None] = rb.Bus(store=rb.MemoryStore(clock=clock))
    for took in (0.5, 1.0, 1.5, 3.0):
        metrics.record(rb.JobFinished("n", 1, "h", "q", 1, "completed", took), bus)
    labels = {"queue": "q", "handler": "h"}

    def bucket(le: str) -> float | None:
        return registry.get_sample_value(
            "relaybus_job_duration_seconds_bucket", {**labels, "le": le}
        )

    assert [bucket("1.0"), bucket("2.0"), bucket("+Inf")] == [2, 3, 4]
    assert registry.get_sample_value("relaybus_job_duration_seconds_count", labels) == 4
    assert registry.get_sample_value("relaybus_job_duration_seconds_sum", labels) == 6.0
    assert registry.get_sample_value("relaybus_jobs_completed_total", labels) == 4


def test_the_grafana_dashboard_is_json_over_the_documented_metrics() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-relaybus.json").read_text())
    assert dashboard["title"] and dashboard["panels"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    assert exprs
    names = set(relaybus.prometheus.METRICS)
    for expr in exprs:
        assert any(name in expr for name in names), expr
    doc = (ROOT / "docs" / "observability.md").read_text()
    for name in names:
        assert name in doc, f"{name} is not in docs/observability.md"


def test_metric_names_are_what_prometheus_exports() -> None:
    registry = CollectorRegistry()
    relaybus.prometheus.Metrics(registry)
    exported = {family.name for family in registry.collect()}
    assert exported == set(relaybus.prometheus.METRICS)


class _CountingSampler(ParentBased):
    """The SDK's default sampler (parent-based, roots always on), counting its decisions."""

    def __init__(self) -> None:
        super().__init__(ALWAYS_ON)
        self.names: list[str] = []

    def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any,
                      **kwargs: Any) -> Any:  # fmt: skip
        self.names.append(name)
        return super().should_sample(parent_context, trace_id, name, *args, **kwargs)


@pytest.mark.parametrize("follow", [False, True])
async def test_a_job_under_an_unsampled_parent_records_nothing(
    clock: FakeClock, follow: bool
) -> None:
    """A request that was not sampled: its job run records no span either way (a parent-based
    sampler drops it). With ``follow_parent_sampling`` the SDK is not even asked, and the
    carried context itself is current in the handler (what it dispatches stays in the same
    unsampled trace)."""
    sampler = _CountingSampler()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus: rb.Bus[None] = rb.Bus(store=rb.MemoryStore(clock=clock))
    relaybus.otel.instrument(bus, tracer_provider=provider, follow_parent_sampling=follow)
    seen: list[SpanContext] = []

    @bus.job(Order, name="tel.unsampled", queue="orders")
    async def job(event: Order, ctx: rb.Context[None]) -> None:
        seen.append(trace.get_current_span().get_span_context())

    request = propagate.extract({"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-00"})
    async with bus:
        token = attach(request)
        try:
            result = await bus.dispatch(Order(1))
        finally:
            detach(token)
        job_info = await bus.jobs.get(result.jobs[0].id)
        assert job_info is not None
        carried = job_info.meta[rb.TRACE_META_KEY]["traceparent"]
        await drain(bus)
    assert exporter.get_finished_spans() == ()  # nothing recorded, in either mode
    [current] = seen
    assert current.trace_id == int("ab" * 16, 16) and not current.trace_flags.sampled
    carried_span_id = int(carried.split("-")[2], 16)
    assert carried.endswith("-00")
    if follow:
        assert "process orders" not in sampler.names  # no SDK decision for the run
        assert current.span_id == carried_span_id  # the carried context is the current one
    else:
        assert "process orders" in sampler.names
        assert current.span_id != carried_span_id  # the SDK's non-recording span of the run


async def test_follow_parent_sampling_still_traces_a_sampled_request(clock: FakeClock) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus: rb.Bus[None] = rb.Bus(store=rb.MemoryStore(clock=clock))
    relaybus.otel.instrument(bus, tracer_provider=provider, follow_parent_sampling=True)

    @bus.job(Order, name="tel.sampled", queue="orders")
    async def job(event: Order, ctx: rb.Context[None]) -> None:
        pass

    async with bus:
        await bus.dispatch(Order(1))
        await drain(bus)
    [send] = by_name(exporter, "send tel.order")
    [run] = by_name(exporter, "process orders")
    assert run.parent is not None and run.parent.span_id == send.context.span_id
