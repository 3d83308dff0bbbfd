"""ctx.transaction() and the connections behind it: a user's asyncpg.Pool is never resized;
when it is smaller than the worker's concurrency + 3 the worker says so, and handlers take turns
holding transactions so that the node's own statements keep connections. An in-memory SQLite
database has no second connection to give."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

import relaybus as rb
from tests.stores import PG_DSN, server_missing


@dataclass(frozen=True)
class Credit(rb.Event, name="pools.credit"):
    n: int


async def test_a_small_user_pool_is_warned_about_and_still_works(caplog) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        server_missing("PostgreSQL", exc)
    pool = await asyncpg.create_pool(
        PG_DSN, min_size=1, max_size=4, server_settings=dict(rb.PostgresStore.server_settings)
    )
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        await admin.execute(f'CREATE TABLE "{schema}".credits (n int)')
        store = rb.PostgresStore(pool, schema=schema, auto_migrate=True)
        bus: rb.Bus[Any] = rb.Bus(store=store)
        inside = 0
        most = 0

        @bus.job(Credit, name="pools.credit")
        async def credit(event: Credit, ctx: rb.Context) -> None:
            nonlocal inside, most
            async with ctx.transaction() as conn:
                inside += 1
                most = max(most, inside)
                await conn.execute(f'INSERT INTO "{schema}".credits VALUES ($1)', event.n)
                await asyncio.sleep(0.05)
                inside -= 1

        caplog.set_level(logging.WARNING, logger="relaybus.postgres")
        async with bus:
            await bus.dispatch_many([Credit(n) for n in range(6)])
            async with bus.worker(queues={"default": 4}, poll_interval=0.05):
                for _ in range(1200):  # up to a minute
                    stats = await bus.jobs.stats()
                    if stats.get("default", {}).get("completed", 0) == 6:
                        break
                    await asyncio.sleep(0.05)
        assert most == 1  # 4 connections, 3 kept for the node: one transaction at a time
        assert any("holds at most 4 connections" in r.getMessage() for r in caplog.records)
        rows = await admin.fetch(f'SELECT n FROM "{schema}".credits ORDER BY n')
        assert [r[0] for r in rows] == list(range(6))
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@dataclass(frozen=True)
class Note(rb.Event, name="pools.note"):
    n: int


async def test_an_in_memory_sqlite_database_refuses_clearly() -> None:
    bus: rb.Bus[Any] = rb.Bus(store=rb.SQLiteStore(":memory:"))

    @bus.job(Note, name="pools.note", max_attempts=1)
    async def note(event: Note, ctx: rb.Context) -> None:
        async with ctx.transaction():
            pass

    async with bus:
        job_id = (await bus.dispatch(Note(1))).jobs[0].id
        await rb.testing.drain(bus)
        job = await bus.jobs.get(job_id)
    assert job is not None and job.state is rb.JobState.DISCARDED
    assert "needs a SQLite database file" in job.errors[-1].message
