"""Exactly-once effects: ``async with ctx.transaction() as conn:`` in a job handler gives a
connection of the job's own store whose commit also completes the job, fenced like every
completion (a stale run's transaction rolls back). MemoryStore refuses it clearly.

The effect is a row in a table of the test's own, in the store's database, counted through a
connection of the test's own (never through the store)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

import relaybus as rb

from ._support import Ping, Pong, beat, claim, job_of, one_id

S = rb.JobState
TTL = 30


class Effects:
    """A table ``lc_effects(k)`` next to the store's tables, written by handlers on ``conn``."""

    def __init__(self, store: Any, kind: str) -> None:
        self.store = store
        self.kind = kind

    @property
    def table(self) -> str:
        if self.kind == "postgres":
            return f'"{self.store.schema}".lc_effects'
        return "lc_effects"

    async def _sql(self, sql: str) -> list[Any]:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.store.path)
            try:
                rows = conn.execute(sql).fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        if self.kind == "postgres":
            import asyncpg

            from tests.stores import PG_DSN

            pg = await asyncpg.connect(PG_DSN)
            try:
                return list(await pg.fetch(sql))
            finally:
                await pg.close()
        from tests.stores import mysql_admin, mysql_sql

        my = await mysql_admin(self.store._executor.dsn)
        try:
            return await mysql_sql(my, sql)
        finally:
            my.close()

    async def create(self) -> None:
        await self._sql(f"CREATE TABLE IF NOT EXISTS {self.table} (k INTEGER NOT NULL)")
        await self._sql(f"DELETE FROM {self.table}")

    async def keys(self) -> list[int]:
        return sorted(row[0] for row in await self._sql(f"SELECT k FROM {self.table}"))

    async def write(self, conn: Any, key: int) -> None:
        """The handler's own write, on the connection ctx.transaction() gave it."""
        if self.kind == "sqlite":
            assert isinstance(conn, sqlite3.Connection)
            conn.execute(f"INSERT INTO {self.table} (k) VALUES (?)", (key,))
        elif self.kind == "postgres":
            await conn.execute(f"INSERT INTO {self.table} (k) VALUES ($1)", key)
        else:
            async with conn.cursor() as cur:
                await cur.execute(f"INSERT INTO {self.table} (k) VALUES (%s)", (key,))


@pytest.fixture
async def effects(store, store_kind) -> Effects:
    assert store_kind != "memory", "mark the test @pytest.mark.stores(...) without memory"
    fx = Effects(store, store_kind)
    await store.open()
    try:
        await fx.create()
    finally:
        await store.close()
    return fx


@pytest.mark.stores("sqlite", "postgres", "mysql")
async def test_the_commit_completes_the_job_with_its_effect(store, effects, clock) -> None:
    bus = rb.Bus(store=store)
    types: list[type] = []

    @bus.job(Ping, name="conf.tx.commit")
    async def h(event: Ping, ctx: rb.Context) -> None:
        async with ctx.transaction() as conn:
            types.append(type(conn))
            await effects.write(conn, event.n)

    async with bus:
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(1), Ping(2)])]
        assert await rb.testing.drain(bus) == 2
        for job_id in ids:
            job = await job_of(bus, job_id)
            assert (job.state, job.attempt, job.errors) == (S.COMPLETED, 1, ())
        assert await effects.keys() == [1, 2]
    if effects.kind == "sqlite":
        assert types == [sqlite3.Connection] * 2
    elif effects.kind == "postgres":
        import asyncpg

        assert all(issubclass(t, asyncpg.Connection) for t in types)
    else:
        import asyncmy

        assert all(issubclass(t, asyncmy.connection.Connection) for t in types)


@pytest.mark.stores("sqlite", "postgres", "mysql")
async def test_an_error_in_the_block_rolls_the_effect_back(store, effects, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.tx.rollback", backoff=rb.Constant(10))
    async def h(event: Ping, ctx: rb.Context) -> None:
        async with ctx.transaction() as conn:
            await effects.write(conn, ctx.job.attempt)
            if ctx.job.attempt == 1:
                raise ValueError("after the write, before the commit")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        assert await rb.testing.drain(bus) == 1
        job = await job_of(bus, job_id)
        assert job.state is S.RETRYABLE
        assert [e.message for e in job.errors] == ["after the write, before the commit"]
        assert await effects.keys() == []
        clock.advance(10)
        assert await rb.testing.drain(bus) == 1
        assert (await job_of(bus, job_id)).state is S.COMPLETED
        assert await effects.keys() == [2]


@pytest.mark.stores("sqlite", "postgres", "mysql")
async def test_once_committed_nothing_after_the_block_fails_the_job(store, effects, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.tx.after")
    async def h(event: Ping, ctx: rb.Context) -> None:
        async with ctx.transaction() as conn:
            await effects.write(conn, event.n)
        raise rb.Discard("too late: the job is completed")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(5)))
        assert await rb.testing.drain(bus) == 1
        job = await job_of(bus, job_id)
        assert (job.state, job.errors) == (S.COMPLETED, ())
        assert await effects.keys() == [5]


@pytest.mark.stores("sqlite", "postgres", "mysql")
async def test_a_stale_run_is_rolled_back_and_raises_job_lost(store, effects, clock) -> None:
    """A node paused past its lease comes back after its job was rescued and rerun: its
    transaction's commit is fenced off, so its writes never exist."""
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.tx.stale")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = bus.worker(queues={"default": 1}, node_ttl=TTL)
        job_id = one_id(await bus.dispatch(Ping(1)))
        await beat(store, "paused-node", ttl=TTL)
        [stale] = await claim(store, "paused-node")
        clock.advance(TTL + 1)
        assert await w.rescuer.run_once() == 1
        await w.stager.run_once()
        await beat(store, "new-node", ttl=TTL)
        [fresh] = await claim(store, "new-node")
        assert (fresh.id, fresh.attempt) == (job_id, 2)
        with pytest.raises(rb.JobLost, match=f"job {job_id} is no longer running attempt 1"):
            async with store.transaction(job_id, stale.attempt) as conn:
                await effects.write(conn, 1)
        assert await effects.keys() == []
        job = await job_of(bus, job_id)
        assert (job.state, job.attempt) == (S.RUNNING, 2)
        # The current run's transaction commits.
        async with store.transaction(job_id, fresh.attempt) as conn:
            await effects.write(conn, 2)
        assert await effects.keys() == [2]
        assert (await job_of(bus, job_id)).state is S.COMPLETED
        # ... exactly once: the same run again is stale.
        with pytest.raises(rb.JobLost):
            async with store.transaction(job_id, fresh.attempt) as conn:
                await effects.write(conn, 3)
        assert await effects.keys() == [2]


@pytest.mark.stores("postgres", "mysql")
async def test_a_cancelled_job_rolls_its_transaction_back(store, effects, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.tx.cancelled")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        await beat(store, "node-a")
        [run] = await claim(store, "node-a")
        async with asyncio.timeout(30):
            with pytest.raises(rb.JobLost):
                async with store.transaction(job_id, run.attempt) as conn:
                    await effects.write(conn, 1)
                    await bus.jobs.cancel(job_id)  # commits first, on another connection
        assert await effects.keys() == []
        assert (await job_of(bus, job_id)).state is S.CANCELLED


@pytest.mark.stores("sqlite", "postgres", "mysql")
async def test_one_transaction_per_run(store, effects, clock) -> None:
    bus = rb.Bus(store=store)
    failures: list[str] = []

    @bus.job(Ping, name="conf.tx.twice")
    async def h(event: Ping, ctx: rb.Context) -> None:
        async with ctx.transaction() as conn:
            await effects.write(conn, 1)
        try:
            ctx.transaction()
        except rb.ConfigurationError as exc:
            failures.append(str(exc))

    async with bus:
        await bus.dispatch(Ping(1))
        assert await rb.testing.drain(bus) == 1
    assert len(failures) == 1 and "already used" in failures[0]
    assert await effects.keys() == [1]


async def test_inline_handlers_have_no_transaction(store) -> None:
    bus = rb.Bus(store=store)

    @bus.on(Ping)
    async def h(event: Ping, ctx: rb.Context) -> None:
        ctx.transaction()

    async with bus:
        with pytest.raises(rb.DispatchError) as info:
            await bus.dispatch(Ping(1))
    [error] = info.value.exceptions
    assert isinstance(error, rb.ConfigurationError)
    assert "job handlers" in str(error)


@pytest.mark.stores("memory")
async def test_memory_store_refuses_clearly(store, store_kind, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.tx.memory", max_attempts=1)
    async def h(event: Ping, ctx: rb.Context) -> None:
        async with ctx.transaction():
            pass

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        await rb.testing.drain(bus)
        job = await job_of(bus, job_id)
    assert job.state is S.DISCARDED
    assert job.errors[-1].kind == "relaybus._errors.ConfigurationError"
    assert "needs a SQL store" in job.errors[-1].message


@pytest.mark.stores("postgres", "mysql")
async def test_every_slot_in_a_transaction_leaves_room_for_the_worker(
    store, effects, clock
) -> None:
    """A pool smaller than the worker's concurrency grows to concurrency + 3 when the worker
    starts: with every slot holding a transaction, the node's own statements still run."""
    slots = 4
    executor = store._executor
    bus = rb.Bus(store=store)
    inside = 0
    all_inside = asyncio.Event()

    @bus.job(Ping, name="conf.tx.room")
    async def h(event: Ping, ctx: rb.Context) -> None:
        nonlocal inside
        async with ctx.transaction() as conn:
            await effects.write(conn, event.n)
            inside += 1
            if inside == slots:
                all_inside.set()
            await all_inside.wait()
            await ctx.bus.jobs.stats()  # the store's own statement, on another connection

    async with bus:
        # As if the store were made with max_size=2: room for one transaction.
        executor._max_size = 2
        executor._room = asyncio.Semaphore(1)
        if effects.kind == "postgres":
            executor.pool._max_size = 2
        else:
            executor.pool.max_size = 2
            executor.pool._slots = asyncio.Semaphore(2)
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(n) for n in range(slots)])]
        async with bus.worker(queues={"default": slots}, poll_interval=0.05):
            async with asyncio.timeout(30):
                await all_inside.wait()
                for _ in range(1500):
                    if [(await job_of(bus, i)).state for i in ids] == [S.COMPLETED] * slots:
                        break
                    await asyncio.sleep(0.02)
        assert executor._max_size == slots + 3
        if effects.kind == "postgres":
            assert executor.pool._max_size == slots + 3
        else:
            assert executor.pool.max_size == slots + 3
    assert await effects.keys() == list(range(slots))


@pytest.mark.stores("postgres", "mysql")
async def test_follow_up_jobs_dispatched_on_conn_commit_with_the_job(store, effects, clock) -> None:
    """On PostgreSQL and MySQL ``dispatch(..., conn=conn)`` inside the block joins the
    transaction: the follow-up jobs exist exactly when the job completed."""
    bus = rb.Bus(store=store)
    followed: list[int] = []

    @bus.job(Ping, name="conf.tx.source", backoff=rb.Constant(10))
    async def source(event: Ping, ctx: rb.Context) -> None:
        async with ctx.transaction() as conn:
            await effects.write(conn, ctx.job.attempt)
            await ctx.bus.dispatch(Pong(ctx.job.attempt), conn=conn)
            if ctx.job.attempt == 1:
                raise ValueError("rolled back with its follow-up")

    @bus.job(Pong, name="conf.tx.follow_up")
    async def follow_up(event: Pong, ctx: rb.Context) -> None:
        followed.append(event.n)

    async with bus:
        await bus.dispatch(Ping(1))
        await rb.testing.drain(bus)
        assert await bus.jobs.list(handler="conf.tx.follow_up") == []
        clock.advance(10)
        await rb.testing.drain(bus)
        assert followed == [2]
        assert await effects.keys() == [2]
