"""The enqueue baselines: a bare prepared asyncpg ``INSERT`` of the row relaybus inserts for one
job, and for a batch one prepared ``INSERT ... SELECT FROM unnest`` of the payloads (same table,
installed by relaybus's own migrations; ids returned, as relaybus returns them). Enqueue modes
only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg

import relaybus as rb

SQL = Path(__file__).parent.parent / "sql"
INSERT_SQL = (SQL / "bare_pg_insert.sql").read_text()
INSERT_BATCH_SQL = (SQL / "bare_pg_insert_batch.sql").read_text()


class Adapter:
    name = "bare_asyncpg"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None
        self.stmt: Any = None
        self.batch_stmt: Any = None

    async def install(self) -> None:
        await rb.PostgresStore(self.dsn).migrate()

    async def open_client(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        self.stmt = await self.conn.prepare(INSERT_SQL)
        self.batch_stmt = await self.conn.prepare(INSERT_BATCH_SQL)

    async def enqueue_one(self, i: int, t: float) -> None:
        payload = json.dumps({"i": i, "t": t}, separators=(",", ":"))
        await self.stmt.fetchval("bench.noop", "bench.job", "default", 2, 10, payload)

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        payloads = [json.dumps({"i": i, "t": t}, separators=(",", ":")) for i, t in items]
        ids = await self.batch_stmt.fetch("bench.noop", "bench.job", "default", 2, 10, payloads)
        if len(ids) != len(items):
            raise RuntimeError(f"inserted {len(ids)} rows for {len(items)} jobs")

    async def close_client(self) -> None:
        await self.conn.close()
