"""Bare baselines for group B, measured in the same rounds as the store they bound:

- ``bare_pool``: what MemoryStore processing would cost with no job system at all: an
  ``asyncio.Queue`` of the same job records (``Claimed``), ``concurrency`` consumer tasks each
  awaiting the same no-op handler;
- ``bare_sqlite_batch``: what SQLiteStore batch enqueue would cost with no store in between: the
  same rows into the same (migrated) table with one ``sqlite3`` ``executemany`` per batch, one
  transaction per batch, same journal mode and synchronous setting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import sqlite3
import time
from pathlib import Path

import relaybus as rb
from relaybus._driver import Claimed

from ._common import cpu_self, now

INSERT_SQL = (Path(__file__).parent / "sql" / "bare_sqlite_insert.sql").read_text()


def _record(i: int) -> Claimed:
    t = dt.datetime.now(dt.UTC)
    return Claimed(
        id=i, handler="bench.noop", event="bench.tick", queue="default", priority=2,
        attempt=1, max_attempts=10, payload=json.dumps({"n": i}).encode(), meta={},
        inserted_at=t, scheduled_at=t, timeout=None, rescues=0,
    )  # fmt: skip


async def bare_pool(n: int, concurrency: int) -> tuple[float, float]:
    """jobs/s and CPU µs per job of the bare asyncio pool."""
    queue: asyncio.Queue[Claimed | None] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(_record(i))
    for _ in range(concurrency):
        queue.put_nowait(None)

    async def noop(job: Claimed) -> None:
        return None

    async def consumer() -> None:
        while (job := await queue.get()) is not None:
            await noop(job)

    gc.collect()
    c0, t0 = cpu_self(), now()
    await asyncio.gather(*(consumer() for _ in range(concurrency)))
    elapsed, cpu = now() - t0, cpu_self() - c0
    return n / elapsed, cpu / n * 1e6


async def bare_sqlite_batch(tmp: Path, n: int, batch: int) -> tuple[float, float]:
    """jobs/s and CPU µs per job of raw ``executemany`` into SQLiteStore's own table."""
    path = tmp / "bare.db"
    bus: rb.Bus[None] = rb.Bus(store=rb.SQLiteStore(path))
    async with bus:  # migrates the schema; closed before the raw connection opens
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        t = time.time()
        batches = [
            [("bench.noop", "bench.tick", "default", 2, 10,
              json.dumps({"n": i}), t, t) for i in range(j, min(n, j + batch))]
            for j in range(0, n, batch)
        ]  # fmt: skip
        gc.collect()
        c0, t0 = cpu_self(), now()
        for rows in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_SQL, rows)
            conn.execute("COMMIT")
        elapsed, cpu = now() - t0, cpu_self() - c0
    finally:
        conn.close()
    return n / elapsed, cpu / n * 1e6
