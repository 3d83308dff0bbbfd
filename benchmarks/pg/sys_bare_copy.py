"""The COPY batch baseline: the same rows as the bare batch ``INSERT`` written with asyncpg's
``copy_records_to_table`` (binary ``COPY FROM STDIN`` into relaybus's own table; one statement,
so one transaction, per batch). COPY returns no ids: this is less than an enqueue must do (relaybus
returns each job's id), so it bounds from below what a COPY path could cost. Batches only."""

from __future__ import annotations

import json
from typing import Any

from .sys_bare_asyncpg import Adapter as InsertAdapter

COLUMNS = ("handler", "event", "queue", "priority", "state", "max_attempts", "payload")


class Adapter(InsertAdapter):
    name = "bare_copy"

    async def enqueue_one(self, i: int, t: float) -> None:
        raise NotImplementedError("the COPY baseline measures batches only")

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        conn: Any = self.conn
        records = [
            ("bench.noop", "bench.job", "default", 2, "available", 10,
             json.dumps({"i": i, "t": t}, separators=(",", ":")))
            for i, t in items
        ]  # fmt: skip
        status = await conn.copy_records_to_table(
            "relaybus_jobs", columns=COLUMNS, records=records
        )
        if status != f"COPY {len(items)}":
            raise RuntimeError(f"COPY wrote {status!r} for {len(items)} jobs")
