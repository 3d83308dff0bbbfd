"""Two processes of one traced app for the OpenTelemetry test:

    python -m tests.procs.otelapp dispatch OUT   # dispatches one event, writes its spans
    python -m tests.procs.otelapp worker OUT     # runs jobs until 2 runs ended, writes its spans

Each process has its own TracerProvider with OpenTelemetry's in-memory span exporter; at the end
it writes the finished spans to OUT as JSON (one object per span). The store is the PostgreSQL
schema ``OTELAPP_SCHEMA`` of ``OTELAPP_DSN``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import relaybus as rb
import relaybus.otel


@dataclass(frozen=True)
class Traced(rb.Event, name="otelapp.traced"):
    n: int


def build() -> tuple[rb.Bus[Any], InMemorySpanExporter]:
    store = rb.PostgresStore(
        os.environ["OTELAPP_DSN"], schema=os.environ["OTELAPP_SCHEMA"], min_size=1, max_size=2
    )
    bus: rb.Bus[Any] = rb.Bus(store=store)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    relaybus.otel.instrument(bus, tracer_provider=provider)

    @bus.on(Traced, name="otelapp.inline")
    async def inline(event: Traced, ctx: rb.Context[Any]) -> None: ...

    @bus.job(Traced, name="otelapp.job", queue="traced", backoff=rb.Constant(0))
    async def job(event: Traced, ctx: rb.Context[Any]) -> None:
        assert ctx.job is not None
        if ctx.job.attempt == 1:
            raise RuntimeError("first attempt fails on purpose")

    return bus, exporter


def as_json(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
        "pid": os.getpid(),
    }


def write_spans(exporter: InMemorySpanExporter, out: str) -> None:
    with open(out, "w") as f:
        json.dump([as_json(span) for span in exporter.get_finished_spans()], f)


async def dispatch(out: str) -> None:
    bus, exporter = build()
    async with bus:
        result = await bus.dispatch(Traced(1))
    write_spans(exporter, out)
    print(json.dumps({"job_id": result.jobs[0].id}))


async def work(out: str) -> None:
    bus, exporter = build()
    ended = asyncio.Event()
    runs: list[rb.JobFinished] = []

    def observer(event: rb.RuntimeEvent) -> None:
        if isinstance(event, rb.JobFinished):
            runs.append(event)
            if len(runs) >= 2:
                ended.set()

    bus.observe(observer)
    async with bus, bus.worker(queues={"traced": 1}, poll_interval=0.1):
        async with asyncio.timeout(60):
            await ended.wait()
    write_spans(exporter, out)


if __name__ == "__main__":
    command, target = sys.argv[1], sys.argv[2]
    asyncio.run(dispatch(target) if command == "dispatch" else work(target))
