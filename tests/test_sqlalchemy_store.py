"""SQLAlchemyStore beyond the shared suites: transactional dispatch with a real ORM model
(``conn=`` an AsyncSession or AsyncConnection, in a savepoint), wake-ups after the commit and
never after a rollback, notifications per driver, and bad arguments."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import relaybus as rb
from relaybus.sqlalchemy import metadata_for, sqlite_transactions
from relaybus.stores.sqlalchemy import SQLAlchemyStore

from .sqlalchemy_support import ONE_PER_DATABASE, Target, empty_target
from .stores import SQLALCHEMY_VARIANTS


@dataclass(frozen=True)
class OrderPlaced(rb.Event, name="test.sa.order_placed"):
    order_id: int


def user_engine(url: str) -> AsyncEngine:
    """The user's engine; on SQLite with SAVEPOINTs that work (see sqlite_transactions)."""
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        sqlite_transactions(engine)
    return engine


def order_model(schema: str | None) -> tuple[type[DeclarativeBase], Any]:
    class Base(DeclarativeBase):
        pass

    class Order(Base):
        __tablename__ = "shop_orders"
        __table_args__ = {"schema": schema}  # noqa: RUF012
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(String(200))

    return Base, Order


class Shop:
    """An ORM model, a store on the same engine and a bus with one unique job handler."""

    def __init__(self, target: Target) -> None:
        self.engine = user_engine(target.url)
        self.base, self.order = order_model(target.schema)
        self.store = SQLAlchemyStore(self.engine, schema=target.schema, auto_migrate=True)
        self.bus = rb.Bus(store=self.store)
        self.ran: list[int] = []
        self.done = asyncio.Event()
        self.woken: list[str] = []
        self.woke = asyncio.Event()

        @self.bus.job(OrderPlaced, queue="mail", unique=rb.Unique(by=("payload",)))
        async def send_receipt(event: OrderPlaced, ctx: rb.Context) -> None:
            self.ran.append(event.order_id)
            self.done.set()

    async def __aenter__(self) -> Shop:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.base.metadata.create_all)
        await self.bus.__aenter__()
        await self.store.subscribe(self._woken)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.__aexit__(None, None, None)
        await self.engine.dispose()

    def _woken(self, queue: str) -> None:
        self.woken.append(queue)
        self.woke.set()

    async def orders(self) -> list[int]:
        async with AsyncSession(self.engine) as session:
            return list(await session.scalars(select(self.order.id).order_by(self.order.id)))


@pytest.fixture(params=ONE_PER_DATABASE)
async def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    async with empty_target(request.param, tmp_path) as target, Shop(target) as opened:
        yield opened


async def test_commit_keeps_the_order_and_its_job_and_the_job_runs(shop: Shop) -> None:
    async with AsyncSession(shop.engine) as session, session.begin():
        session.add(shop.order(id=1, email="a@example.com"))
        result = await shop.bus.dispatch(OrderPlaced(1), conn=session)
        assert [job.outcome for job in result.jobs] == ["inserted"]
        # A unique conflict inside the caller's transaction does not poison it.
        again = await shop.bus.dispatch(OrderPlaced(1), conn=session)
        assert [job.outcome for job in again.jobs] == ["duplicate"]
        assert again.jobs[0].id == result.jobs[0].id
        session.add(shop.order(id=2, email="b@example.com"))
        await session.flush()
        assert await shop.bus.jobs.list() == []  # not visible before the commit
        assert shop.woken == []  # nor are local workers woken before it
    # Woken by the after_commit event (and LISTEN on asyncpg).
    await asyncio.wait_for(shop.woke.wait(), 10)
    assert set(shop.woken) == {"mail"}
    assert await shop.orders() == [1, 2]
    [job] = await shop.bus.jobs.list()
    assert job.id == result.jobs[0].id and job.state is rb.JobState.AVAILABLE
    async with shop.bus.worker(queues={"mail": 1}):
        await asyncio.wait_for(shop.done.wait(), 30)
    assert shop.ran == [1]
    done = await shop.bus.jobs.get(job.id)
    assert done is not None and done.state is rb.JobState.COMPLETED


async def test_rollback_keeps_neither_and_nothing_runs(shop: Shop) -> None:
    with pytest.raises(RuntimeError, match="payment declined"):
        async with AsyncSession(shop.engine) as session, session.begin():
            session.add(shop.order(id=1, email="a@example.com"))
            await shop.bus.dispatch(OrderPlaced(1), conn=session)
            raise RuntimeError("payment declined")
    await asyncio.sleep(0)
    assert shop.woken == []
    assert await shop.orders() == []
    assert await shop.bus.jobs.list() == []
    await rb.testing.drain(shop.bus)
    assert shop.ran == []


async def test_an_async_connection_joins_the_callers_transaction(shop: Shop) -> None:
    orders = shop.order.__table__
    async with shop.engine.begin() as conn:
        await conn.execute(insert(orders).values(id=7, email="c@example.com"))
        await shop.bus.dispatch(OrderPlaced(7), conn=conn)
        assert shop.woken == []
    await asyncio.wait_for(shop.woke.wait(), 10)  # once the commit has ended
    assert set(shop.woken) == {"mail"}
    with pytest.raises(RuntimeError):
        async with shop.engine.begin() as conn:
            await conn.execute(insert(orders).values(id=8, email="d@example.com"))
            await shop.bus.dispatch(OrderPlaced(8), conn=conn)
            raise RuntimeError("undo")
    assert await shop.orders() == [7]
    await rb.testing.drain(shop.bus)
    assert shop.ran == [7]


async def test_the_orm_reads_the_jobs_table(shop: Shop) -> None:
    await shop.bus.dispatch(OrderPlaced(3))
    schema = shop.store.schema
    jobs = metadata_for(schema=schema).tables[
        f"{schema}.relaybus_jobs" if schema else "relaybus_jobs"
    ]
    async with AsyncSession(shop.engine) as session:
        row = (
            await session.execute(
                select(jobs.c.id, jobs.c.state, jobs.c.queue, jobs.c.meta, jobs.c.scheduled_at)
            )
        ).one()
        count = await session.scalar(select(func.count()).select_from(jobs))
    assert (row.state, row.queue, row.meta, count) == ("available", "mail", {}, 1)
    assert row.scheduled_at.tzinfo is not None
    job = await shop.bus.jobs.get(row.id)
    assert job is not None and abs((job.scheduled_at - row.scheduled_at).total_seconds()) < 1e-3


async def test_conn_must_be_a_session_or_connection(shop: Shop) -> None:
    with pytest.raises(rb.StoreError, match="AsyncSession or AsyncConnection"):
        await shop.bus.dispatch(OrderPlaced(1), conn=object())
    assert await shop.bus.jobs.list() == []


@pytest.mark.parametrize("variant", sorted(SQLALCHEMY_VARIANTS))
async def test_notifications_where_the_driver_pushes(variant: str, tmp_path: Path) -> None:
    async with empty_target(variant, tmp_path) as target:
        engine = create_async_engine(target.url)
        store = SQLAlchemyStore(engine, schema=target.schema, auto_migrate=True)
        try:
            await store.open()
            assert store.supports_notify == (variant == "sqlalchemy-asyncpg")
            if store.supports_notify:  # another store's insert arrives by LISTEN
                got: asyncio.Queue[str] = asyncio.Queue()
                stop = await store.subscribe(got.put_nowait)
                other = rb.Bus(store=SQLAlchemyStore(engine, schema=target.schema))

                @other.job(OrderPlaced, queue="mail")
                async def handler(event: OrderPlaced, ctx: rb.Context) -> None: ...

                async with other:
                    await other.dispatch(OrderPlaced(1))
                assert await asyncio.wait_for(got.get(), 10) == "mail"
                assert stop is not None
                await stop()
        finally:
            await store.close()
            await engine.dispose()


def test_only_an_async_engine_of_a_known_database() -> None:
    with pytest.raises(rb.ConfigurationError, match="AsyncEngine"):
        SQLAlchemyStore("postgresql+asyncpg://u@h/db")  # type: ignore[arg-type]
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    with pytest.raises(rb.ConfigurationError, match="no schemas"):
        SQLAlchemyStore(engine, schema="other")
    with pytest.raises(ValueError, match="prefix"):
        SQLAlchemyStore(engine, prefix="bad prefix")
    store = SQLAlchemyStore(engine)
    assert store.dialect.name == "sqlite" and "sqlite+aiosqlite" in repr(store)
    pg = create_async_engine("postgresql+psycopg://u:secret@h/db")
    assert "secret" not in repr(SQLAlchemyStore(pg))
    assert SQLAlchemyStore(pg).dialect.paramstyle == "pyformat"
    assert (
        SQLAlchemyStore(create_async_engine("postgresql+asyncpg://u@h/db")).dialect.paramstyle
        == "numeric"
    )


@dataclass(frozen=True)
class Refund(rb.Event, name="test.sa.refund"):
    order_id: int


async def test_ctx_transaction_lends_an_async_connection(shop: Shop) -> None:
    """A handler's own writes and its job's completion commit together; an error in the block
    rolls the writes back and the job retries."""
    orders = shop.order.__table__
    seen: list[type] = []

    @shop.bus.job(Refund, name="test.sa.refund_handler", backoff=rb.Constant(0))
    async def refund(event: Refund, ctx: rb.Context) -> None:
        assert ctx.job is not None
        async with ctx.transaction() as conn:
            seen.append(type(conn))
            await conn.execute(
                insert(orders).values(id=event.order_id * 10 + ctx.job.attempt, email="r@x")
            )
            if ctx.job.attempt == 1:
                raise ValueError("after the write, before the commit")

    result = await shop.bus.dispatch(Refund(5))
    assert await rb.testing.drain(shop.bus) == 2  # attempt 1 fails, attempt 2 commits
    job = await shop.bus.jobs.get(result.jobs[0].id)
    assert job is not None and (job.state, job.attempt) == (rb.JobState.COMPLETED, 2)
    assert await shop.orders() == [52]  # attempt 1's write was rolled back
    assert seen == [AsyncConnection, AsyncConnection]


@pytest.mark.parametrize("steps", range(8))
async def test_a_fetch_cancelled_at_any_moment_loses_no_claim_on_aiosqlite(
    steps: int, tmp_path: Path
) -> None:
    """On ``sqlite+aiosqlite`` the store's work runs on aiosqlite's thread in one hop; a caller
    cancelled after its work was queued gets nothing, and the claims the work made are given
    back: however many loop steps the fetch got before the cancel, both jobs end up available
    and claimable again, with their attempts refunded."""
    from .driver._support import claim, new_job

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}")
    store = SQLAlchemyStore(engine, auto_migrate=True)
    try:
        await store.open()
        ids = [r.id for r in await store.insert_many([new_job(), new_job()])]
        task = asyncio.create_task(claim(store))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        try:
            claimed = await task
        except asyncio.CancelledError:
            claimed = []
        if claimed:  # it finished before the cancel landed: finish its runs
            assert sorted(c.id for c in claimed) == ids
            return
        for _ in range(50):  # the give-back is a work of its own, queued after the claim
            if await store.stats() == {"default": {"available": 2}}:
                break
            await asyncio.sleep(0.01)
        assert await store.stats() == {"default": {"available": 2}}
        again = await claim(store)
        assert sorted((c.id, c.attempt) for c in again) == [(i, 1) for i in ids]
    finally:
        await store.close()
        await engine.dispose()
