"""relaybus on PostgreSQL: ``rb.PostgresStore`` (asyncpg), one job handler per event."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import relaybus as rb

from . import hooks


@dataclass(frozen=True)
class BenchJob(rb.Event, name="bench.job"):
    i: int
    t: float


async def handle(event: BenchJob, ctx: rb.Context[None]) -> None:
    hooks.job_ran(event.i, event.t)


class Adapter:
    name = "relaybus"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.bus: rb.Bus[None] | None = None
        self.worker: Any = None
        self.fetch_spans: list[tuple[float, float, int]] = []

    def _bus(self) -> rb.Bus[None]:
        bus: rb.Bus[None] = rb.Bus(store=rb.PostgresStore(self.dsn))
        bus.job(BenchJob, name="bench.noop", queue="default")(handle)
        return bus

    async def install(self) -> None:
        store = rb.PostgresStore(self.dsn)
        await store.migrate()

    async def open_client(self) -> None:
        self.bus = self._bus()
        await self.bus.open()

    async def enqueue_one(self, i: int, t: float) -> None:
        assert self.bus is not None
        await self.bus.dispatch(BenchJob(i, t))

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        assert self.bus is not None
        await self.bus.dispatch_many([BenchJob(i, t) for i, t in items])

    async def close_client(self) -> None:
        if self.bus is not None:
            await self.bus.close()

    async def start_worker(self, concurrency: int) -> None:
        if self.bus is None:
            await self.open_client()
        assert self.bus is not None
        self._time_fetches(self.bus.store)
        self.worker = self.bus.worker(queues={"default": concurrency})
        await self.worker.__aenter__()

    def _time_fetches(self, store: Any) -> None:
        """Record when each claim (``Driver.fetch``: finish the last runs, claim the next) was
        in flight: the share of the processing window with a claim in flight is how far the
        worker waits on the database's side of the claim."""
        fetch = store.fetch
        spans = self.fetch_spans = []

        async def timed(params: Any) -> Any:
            start = time.time()
            claimed = []
            try:
                claimed = await fetch(params)
                return claimed
            finally:
                spans.append((start, time.time(), len(claimed)))

        store.fetch = timed

    def worker_figures(self, first: float, last: float) -> dict[str, float]:
        """The share of [first job start, last job start] with a claim in flight (the spans
        never overlap: one claim at a time per node), the claims' mean duration, and the mean
        jobs per claim that found any."""
        inside = [(max(a, first), min(b, last), n) for a, b, n in self.fetch_spans
                  if b > first and a < last]
        busy = sum(b - a for a, b, _ in inside)
        window = max(1e-9, last - first)
        sizes = [n for _, _, n in inside if n]
        return {"fetch_busy": busy / window,
                "fetch_ms": busy / len(inside) * 1000 if inside else 0.0,
                "fetch_jobs": statistics.mean(sizes) if sizes else 0.0}

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.__aexit__(None, None, None)
        await self.close_client()
