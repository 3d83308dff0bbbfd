"""relaybus on PostgreSQL: ``rb.PostgresStore`` (asyncpg), one job handler per event."""

from __future__ import annotations

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
        self.worker = self.bus.worker(queues={"default": concurrency})
        await self.worker.__aenter__()

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.__aexit__(None, None, None)
        await self.close_client()
