"""The single-enqueue baseline: a bare prepared asyncpg ``INSERT`` of the row relaybus inserts
for one job (same table, installed by relaybus's own migrations). Enqueue modes only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg

import relaybus as rb

INSERT_SQL = (Path(__file__).parent.parent / "sql" / "bare_pg_insert.sql").read_text()


class Adapter:
    name = "bare_asyncpg"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None
        self.stmt: Any = None

    async def install(self) -> None:
        await rb.PostgresStore(self.dsn).migrate()

    async def open_client(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        self.stmt = await self.conn.prepare(INSERT_SQL)

    async def enqueue_one(self, i: int, t: float) -> None:
        payload = json.dumps({"i": i, "t": t}, separators=(",", ":"))
        await self.stmt.fetchval("bench.noop", "bench.job", "default", 2, 10, payload)

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        raise NotImplementedError("the bare baseline measures single enqueues only")

    async def close_client(self) -> None:
        await self.conn.close()
