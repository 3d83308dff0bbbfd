"""Group ``telemetry`` (D): the per-job cost of ``relaybus.otel`` + ``relaybus.prometheus`` on
PostgreSQL processing. ``python -m benchmarks --only telemetry``, or on its own:
``python -m benchmarks.telemetry [--quick] [--rounds N] [--jobs N]``.

Each round runs the same processing twice, telemetry off and on, in an order that alternates
between rounds (off/on, on/off, ...) to cancel drift on a noisy machine. A run: a fresh
PostgreSQL schema, N jobs inserted (untimed), then one worker (concurrency 10) processes them;
the time per job is measured from the first handler call to the last. "On" means the bus is
instrumented with ``relaybus.otel`` (an SDK ``TracerProvider`` with a ``BatchSpanProcessor``
and an exporter that drops the spans: production minus the network) and
``relaybus.prometheus.Metrics`` (its own registry); its jobs were dispatched traced, so every
run extracts a parent context from the job's meta. "Off" installs nothing. The overhead is the
median over rounds of (on / off - 1), per job.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._common import GroupResult, Stat, Table, fmt_stat, log, machine_facts, now, package_version

DSN = os.environ.get("RELAYBUS_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TARGET = 0.15  # at most 15% more time per job with both on


class _DropSpans:
    """A span exporter that drops what it gets (the cost of export is the backend's)."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None: ...

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


async def one_run(
    jobs: int, telemetry: bool, parts: tuple[str, ...] = ("otel", "prometheus")
) -> float:
    """Seconds per job of one processing run (first handler call to last); ``parts``: what
    ``telemetry`` turns on."""
    import asyncpg
    from prometheus_client import CollectorRegistry

    import relaybus as rb
    import relaybus.otel
    import relaybus.prometheus

    schema = f"bench_tel_{uuid.uuid4().hex[:10]}"
    store = rb.PostgresStore(DSN, schema=schema, auto_migrate=True)
    bus: rb.Bus[None] = rb.Bus(store=store)
    provider: Any = None
    if telemetry:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if "otel" in parts:
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(_DropSpans()))  # type: ignore[arg-type]
            relaybus.otel.instrument(bus, tracer_provider=provider)
        if "prometheus" in parts:
            relaybus.prometheus.Metrics(CollectorRegistry()).instrument(bus)
    seen = 0
    first = last = 0.0
    done = asyncio.Event()

    @dataclass(frozen=True)
    class Job(rb.Event, name="bench.telemetry.job"):
        n: int

    @bus.job(Job, name="bench.telemetry.handler", max_attempts=3)
    async def handler(event: Job, ctx: rb.Context[None]) -> None:
        nonlocal seen, first, last
        seen += 1
        if seen == 1:
            first = now()
        if seen == jobs:
            last = now()
            done.set()

    try:
        async with bus:
            for start in range(0, jobs, 1000):
                await bus.dispatch_many([Job(i) for i in range(start, min(jobs, start + 1000))])
            async with bus.worker(queues={"default": 10}):
                async with asyncio.timeout(600):
                    await done.wait()
    finally:
        if provider is not None:
            provider.shutdown()
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    return (last - first) / max(1, jobs - 1)


def measure(rounds: int, jobs: int) -> tuple[list[float], list[float]]:
    """Per-job seconds of every round, off and on, interleaved."""
    asyncio.run(one_run(min(jobs, 500), False))  # warm up: imports, server caches
    asyncio.run(one_run(min(jobs, 500), True))
    off: list[float] = []
    on: list[float] = []
    for i in range(rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        for telemetry in order:
            value = asyncio.run(one_run(jobs, telemetry))
            (on if telemetry else off).append(value)
        log(
            f"[telemetry] round {i + 1}/{rounds}: off {off[-1] * 1e6:.0f} us/job, "
            f"on {on[-1] * 1e6:.0f} us/job ({on[-1] / off[-1] - 1:+.1%})"
        )
    return off, on


def run(quick: bool = False, rounds: int | None = None, jobs: int | None = None) -> GroupResult:
    rounds = rounds or (3 if quick else 7)
    jobs = jobs or (1000 if quick else 5000)
    off, on = measure(rounds, jobs)
    overheads = [b / a - 1 for a, b in zip(off, on, strict=True)]
    overhead = statistics.median(overheads)
    off_us = Stat.of(v * 1e6 for v in off)
    on_us = Stat.of(v * 1e6 for v in on)
    table = Table(
        title="PostgreSQL processing: telemetry off vs on (1 worker, concurrency 10)",
        headers=["telemetry", "time per job", "jobs/s"],
        rows=[
            ["off (nothing installed)", fmt_stat(off_us, 0, " us"),
             f"{1e6 / off_us.median:,.0f}"],
            ["on (relaybus.otel + relaybus.prometheus)", fmt_stat(on_us, 0, " us"),
             f"{1e6 / on_us.median:,.0f}"],
        ],
        notes=[
            f"Per-job overhead with both on: **{overhead:+.1%}** (median of {rounds} "
            f"interleaved rounds of {jobs} jobs; per round: "
            + ", ".join(f"{o:+.1%}" for o in overheads)
            + ")."
        ],
    )
    facts = machine_facts()
    facts["opentelemetry-sdk"] = package_version("opentelemetry-sdk")
    facts["prometheus-client"] = package_version("prometheus-client")
    return GroupResult(
        name="telemetry",
        title="D. Telemetry overhead (relaybus.otel + relaybus.prometheus, PostgreSQL)",
        intro=[(__doc__ or "").split("\n\n", 1)[1].strip().replace("\n", " ")],
        tables=[table],
        facts=facts,
        raw={"off_s_per_job": off, "on_s_per_job": on, "overheads": overheads},
        targets=[(
            "telemetry on: per-job overhead on PostgreSQL processing < 15%",
            f"{overhead:+.1%}", overhead < TARGET,
        )],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args()
    result = run(args.quick, args.rounds, args.jobs)
    for row in result.tables[0].rows:
        log("  " + " | ".join(row))
    for note in result.tables[0].notes:
        log("  " + note)


if __name__ == "__main__":
    main()
