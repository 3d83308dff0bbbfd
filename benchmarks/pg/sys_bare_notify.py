"""The latency baseline: the least a LISTEN/NOTIFY job queue can do on this machine.

The producer inserts relaybus's row for one job and notifies its id in the same statement
(``bare_pg_notify_insert.sql``, prepared, one transaction); the worker holds one listening
asyncpg connection and one more that claims each notified job by its id
(``bare_pg_claim.sql``: no queue scan, no order, no lease), then reports it started. Its
enqueue-to-start percentiles are the floor of every notify-driven queue here: the commit, the
notification's trip through PostgreSQL and the two processes' scheduling on this machine's
cores. Latency (``produce`` and ``worker`` modes) only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg

import relaybus as rb

from . import hooks

SQL = Path(__file__).parent.parent / "sql"
INSERT_SQL = (SQL / "bare_pg_notify_insert.sql").read_text()
CLAIM_SQL = (SQL / "bare_pg_claim.sql").read_text()
CHANNEL = "bare_bench"


class Adapter:
    name = "bare_notify"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None
        self.stmt: Any = None
        self.listener: Any = None
        self.ids: asyncio.Queue[int] = asyncio.Queue()
        self.consumer: asyncio.Task[None] | None = None

    async def install(self) -> None:
        await rb.PostgresStore(self.dsn).migrate()

    async def open_client(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        self.stmt = await self.conn.prepare(INSERT_SQL)

    async def enqueue_one(self, i: int, t: float) -> None:
        payload = json.dumps({"i": i, "t": t}, separators=(",", ":"))
        await self.stmt.fetchval("bench.noop", "bench.job", "default", 2, 10, payload)

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        raise NotImplementedError("the bare notify baseline measures latency only")

    async def close_client(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def start_worker(self, concurrency: int) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        self.stmt = await self.conn.prepare(CLAIM_SQL)
        self.listener = await asyncpg.connect(self.dsn)
        await self.listener.add_listener(CHANNEL, self._notified)
        self.consumer = asyncio.create_task(self._consume())

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.ids.put_nowait(int(payload))

    async def _consume(self) -> None:
        while True:
            job_id = await self.ids.get()
            payload = await self.stmt.fetchval(job_id)
            if payload is not None:
                data = json.loads(payload)
                hooks.job_ran(data["i"], data["t"])

    async def stop_worker(self) -> None:
        if self.consumer is not None:
            self.consumer.cancel()
        if self.listener is not None:
            await self.listener.close()
        await self.close_client()
