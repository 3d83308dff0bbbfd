"""PgQueuer: asyncpg connection driver, ``Queries.enqueue`` (scalar and list forms),
``PgQueuer.run(batch_size=10)``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.models import Job

from . import hooks

ENTRYPOINT = "bench"


class Adapter:
    name = "pgqueuer"

    def __init__(self, dsn: str, concurrency: int = 10) -> None:
        self.dsn = dsn
        self.conn: Any = None
        self.queries: Queries | None = None
        self.pgq: PgQueuer | None = None
        self.task: asyncio.Task[None] | None = None


    async def _connect(self) -> Queries:
        self.conn = await asyncpg.connect(self.dsn)
        self.queries = Queries(AsyncpgDriver(self.conn))
        return self.queries

    async def install(self) -> None:
        queries = await self._connect()
        await queries.install()
        await self.conn.close()

    async def open_client(self) -> None:
        await self._connect()

    async def enqueue_one(self, i: int, t: float) -> None:
        assert self.queries is not None
        await self.queries.enqueue(ENTRYPOINT, json.dumps({"i": i, "t": t}).encode(), 0)

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        assert self.queries is not None
        await self.queries.enqueue(
            [ENTRYPOINT] * len(items),
            [json.dumps({"i": i, "t": t}).encode() for i, t in items],
            [0] * len(items),
        )

    async def close_client(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    async def start_worker(self, concurrency: int) -> None:
        conn = await asyncpg.connect(self.dsn)
        self.conn = conn
        pgq = PgQueuer(AsyncpgDriver(conn))

        @pgq.entrypoint(ENTRYPOINT)
        async def bench(job: Job) -> None:
            data = json.loads(job.payload or b"{}")
            hooks.job_ran(data["i"], data["t"])

        self.pgq = pgq
        # PgQueuer's defaults (batch_size=10, no max_concurrent_tasks): its only per-process
        # cap, max_concurrent_tasks, must be >= 2x the batch size, and capping at 10 (batches
        # of 5) measured 2-3x slower here; the defaults are what its own benchmark runs.
        self.task = asyncio.create_task(pgq.run(batch_size=concurrency))
        await asyncio.sleep(0)

    async def stop_worker(self) -> None:
        if self.pgq is not None:
            self.pgq.shutdown.set()
        if self.task is not None:
            await self.task
        # PgQueuer's run() closes the driver's connection on exit.
        self.conn = None
