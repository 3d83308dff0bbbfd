"""What only MySQL/MariaDB has: query plans (no filesort under a locking read), SKIP LOCKED
races, concurrent unique inserts, conn= transactions, the server version check, deadlock and
lock wait retries, the server clock whatever the session time zone, DSN masking."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import relaybus as rb
from relaybus._driver import (
    ElectParams,
    FetchParams,
    HeartbeatParams,
    PruneParams,
    RescueParams,
    StageParams,
)
from relaybus._errors import StoreError
from relaybus.stores.mysql import MySQLStore
from relaybus.stores.mysql.executor import check_version, parse_dsn
from relaybus.testing import FakeClock

from .driver._support import claim, insert, new_job
from .stores import MYSQL_DSN, mysql_admin, mysql_dsn_for, mysql_sql, mysql_store


@dataclass(frozen=True)
class Ping(rb.Event, name="tests.mysql.ping"):
    n: int


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MySQLStore]:
    async with mysql_store(FakeClock(datetime(2030, 1, 1, tzinfo=UTC)), tmp_path) as made:
        await made.open()
        yield made


@pytest.fixture
async def db_store(tmp_path: Path) -> AsyncIterator[MySQLStore]:
    """A store on the server's clock (no fake clock)."""
    async with mysql_store(FakeClock(), tmp_path) as made:
        real = MySQLStore(made._executor.dsn)
        await real.open()
        try:
            yield real
        finally:
            await real.close()


async def _raw(store: MySQLStore) -> Any:
    return await mysql_admin(store._executor.dsn)


# -- query plans


async def _explain(store: MySQLStore, name: str, args: dict[str, Any]) -> dict[str, Any]:
    conn = await _raw(store)
    try:
        await mysql_sql(conn, "ANALYZE TABLE relaybus_jobs")
        sql = store.dialect.queries[name].sql
        rows = await mysql_sql(conn, "EXPLAIN FORMAT=JSON " + sql, args)
        return json.loads(rows[0][0])  # type: ignore[no-any-return]
    finally:
        conn.close()


def _tables(plan: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(plan, dict):
        if "table_name" in plan:
            found.append(plan)
        for value in plan.values():
            found.extend(_tables(value))
    elif isinstance(plan, list):
        for value in plan:
            found.extend(_tables(value))
    return found


@pytest.mark.parametrize(
    ("query", "index", "args"),
    [
        (
            "fetch",
            "fetch_idx",
            {"queue": "default", "limit": 10, "window": 40, "isolate_after": 2, "idle": True},
        ),
        ("stage", "due_idx", {"now": None, "limit": 100}),
        ("due_contested", "due_idx", {"now": None, "limit": 100}),
        ("prune", "finished_idx", {"state": "completed", "now": None, "keep": 0, "limit": 100}),
        ("rescue_candidates", "running_idx", {"now": None, "grace": 5.0, "limit": 100}),
    ],
)
async def test_locking_reads_use_their_index_without_filesort(
    store: MySQLStore, query: str, index: str, args: dict[str, Any]
) -> None:
    """A filesort under FOR UPDATE locks every row it sorts (WooCommerce #1366); the wrong
    index locks rows the claim never takes."""
    jobs = [new_job(queue=q, priority=p) for q in ("default", "mail") for p in (0, 2, 5)] * 40
    jobs += [new_job(delay=60) for _ in range(50)]
    await insert(store, *jobs)
    await claim(store, limit=20)
    plan = await _explain(store, query, args)
    text = json.dumps(plan)
    assert "filesort" not in text, text
    jobs_tables = [t for t in _tables(plan) if t["table_name"] in ("c", "j", "relaybus_jobs")]
    assert jobs_tables and jobs_tables[0].get("key") == index, text
    if query == "fetch":  # the candidates' plain read, then each one locked by primary key
        assert [(t["table_name"], t.get("key")) for t in jobs_tables] == [
            ("c", "fetch_idx"),
            ("j", "PRIMARY"),
        ], text


@pytest.mark.parametrize("rows", [3, 300])
@pytest.mark.parametrize(
    "query", ["claim", "lock_runs", "end_runs", "make_available_many", "delete_jobs"]
)
async def test_writes_by_id_go_through_the_primary_key(
    store: MySQLStore, query: str, rows: int
) -> None:
    """On a small table the optimizer would rather scan (and lock) every row."""
    await insert(store, *[new_job() for _ in range(rows)])
    args = {
        "ids": "[1, 2]",
        "runs": "[[1, 1], [2, 1]]",
        "ends": json.dumps([[3, 1, "completed", 0, 0, None, 1, None]]),
        "now": None,
        "node": "n",
    }
    plan = await _explain(store, query, args)
    jobs = [t for t in _tables(plan) if t["table_name"] == "j"]
    assert jobs and jobs[0]["key"] == "PRIMARY" and jobs[0]["access_type"] == "eq_ref", plan


# -- races


async def test_skip_locked_a_locked_job_is_skipped_not_waited_for(store: MySQLStore) -> None:
    first, second, third = await insert(store, new_job(), new_job(), new_job())
    conn = await _raw(store)
    try:
        await conn.begin()
        await mysql_sql(conn, "SELECT id FROM relaybus_jobs WHERE id = %s FOR UPDATE", (first,))
        async with asyncio.timeout(5):  # a plain FOR UPDATE would wait 10 s for the lock
            claimed = await claim(store, limit=10)
        assert [c.id for c in claimed] == [second, third]
    finally:
        await conn.rollback()
        conn.close()
    assert [c.id for c in await claim(store, limit=10)] == [first]


async def test_the_claim_locks_only_the_jobs_it_returns(store: MySQLStore) -> None:
    """The candidates are a plain read: of the 12 read for a claim of 3, the 3 returned are
    locked and nothing else (a locking read of the candidates would lock all 12, a claim of
    one job would hold back the next eleven); a job locked elsewhere is skipped."""
    ids = await insert(store, *[new_job() for _ in range(20)])
    holder, claimer, probe = await _raw(store), await _raw(store), await _raw(store)
    try:
        await holder.begin()
        await mysql_sql(holder, "SELECT id FROM relaybus_jobs WHERE id = %s FOR UPDATE", (ids[0],))
        await claimer.begin()
        args = {"queue": "default", "limit": 3, "window": 12, "isolate_after": 2, "idle": True}
        sql = store.dialect.queries["fetch"].sql
        async with asyncio.timeout(5):
            rows = await mysql_sql(claimer, sql, args)
        assert [row[0] for row in rows] == ids[1:4]

        async def locked(job_id: int) -> bool:
            await probe.begin()
            try:
                await mysql_sql(
                    probe, "SELECT id FROM relaybus_jobs WHERE id = %s FOR UPDATE NOWAIT", (job_id,)
                )
            except Exception:  # asyncmy's lock error (NOWAIT)
                return True
            finally:
                await probe.rollback()
            return False

        assert [job_id for job_id in ids if await locked(job_id)] == ids[:4]
    finally:
        for conn in (holder, claimer):
            await conn.rollback()
        for conn in (holder, claimer, probe):
            conn.close()


async def _rescue_while_its_row_is_locked(
    store: MySQLStore, node: str, *, ttl: float, later: float = 0.0
) -> tuple[int, list[Any]]:
    """A job claimed by ``node`` (lease ``ttl``), then, ``later`` seconds on, a rescue while
    another connection holds ``node``'s row locked (as its heartbeat transaction does for a
    moment, or for as long as a node frozen inside it stays frozen)."""
    (job_id,) = await insert(store, new_job())
    await store.heartbeat(HeartbeatParams(node, ttl=ttl))
    assert [c.id for c in await claim(store, node)] == [job_id]
    store.clock.advance(later)  # type: ignore[attr-defined]
    conn = await _raw(store)
    try:
        await conn.begin()
        await mysql_sql(conn, "SELECT node FROM relaybus_nodes WHERE node = %s FOR UPDATE", (node,))
        async with asyncio.timeout(5):
            rescued = await store.rescue(RescueParams(grace=0.0, max_rescues=3))
    finally:
        await conn.rollback()
        conn.close()
    return job_id, rescued


async def test_a_live_node_whose_row_is_locked_keeps_its_jobs(store: MySQLStore) -> None:
    """A rescuer running while a live node's row is locked must not take the row for missing
    and rescue that node's jobs (a locking read that joined the nodes table skipped the
    locked row and saw no node)."""
    _, rescued = await _rescue_while_its_row_is_locked(store, "alive", ttl=30.0)
    assert rescued == []  # its lease runs for 30 s more


async def test_a_lost_node_whose_row_is_locked_still_has_its_jobs_rescued(
    store: MySQLStore,
) -> None:
    """A node frozen (SIGSTOP, a VM pause) inside its heartbeat transaction keeps its row
    locked; once its lease has run out its jobs are rescued all the same."""
    job_id, rescued = await _rescue_while_its_row_is_locked(store, "frozen", ttl=1.0, later=5)
    assert [r.id for r in rescued] == [job_id]


async def test_concurrent_fetches_claim_each_job_once(store: MySQLStore) -> None:
    ids = await insert(store, *[new_job() for _ in range(300)])
    others = [MySQLStore(store._executor.dsn, clock=store.clock) for _ in range(3)]
    for other in others:
        await other.open()
    try:
        claimed: list[int] = []

        async def drain(s: MySQLStore, node: str) -> None:
            while batch := await claim(s, node, limit=7):
                claimed.extend(c.id for c in batch)

        await asyncio.gather(*(drain(s, f"n{i}") for i, s in enumerate([store, *others])))
    finally:
        for other in others:
            await other.close()
    assert sorted(claimed) == ids  # every job claimed, none twice


async def test_concurrent_unique_inserts_make_one_row(store: MySQLStore) -> None:
    stores = [MySQLStore(store._executor.dsn) for _ in range(12)]
    for s in stores:
        await s.open()
    try:
        job = new_job(key=b"k" * 32)
        results = await asyncio.gather(*(s.insert_many([job]) for s in stores))
    finally:
        for s in stores:
            await s.close()
    outcomes = sorted(r[0].outcome for r in results)
    assert outcomes == ["duplicate"] * 11 + ["inserted"]
    assert len({r[0].id for r in results}) == 1
    conn = await _raw(store)
    try:
        assert await mysql_sql(conn, "SELECT COUNT(*) FROM relaybus_jobs") == [(1,)]
    finally:
        conn.close()


async def test_concurrent_replaces_report_honest_outcomes(store: MySQLStore) -> None:
    stores = [MySQLStore(store._executor.dsn) for _ in range(8)]
    for s in stores:
        await s.open()
    replace = {rb.JobState.AVAILABLE: ("payload",)}
    try:
        jobs = [new_job({"n": i}, key=b"r" * 32, replace=replace) for i in range(8)]
        results = await asyncio.gather(
            *(s.insert_many([j]) for s, j in zip(stores, jobs, strict=True))
        )
    finally:
        for s in stores:
            await s.close()
    outcomes = sorted(r[0].outcome for r in results)
    assert outcomes == ["inserted"] + ["replaced"] * 7
    assert len({r[0].id for r in results}) == 1


async def test_a_batch_reports_duplicates_and_replaces_of_its_own_entries(
    store: MySQLStore,
) -> None:
    replace = {rb.JobState.AVAILABLE: ("payload",)}
    results = await store.insert_many(
        [
            new_job({"a": 1}),
            new_job({"u": 1}, key=b"a" * 32),
            new_job({"u": 2}, key=b"a" * 32),
            new_job({"u": 3}, key=b"a" * 32, replace=replace),
            new_job({"a": 2}),
            new_job({"a": 3}),
        ]
    )
    assert [r.outcome for r in results] == [
        "inserted", "inserted", "duplicate", "replaced", "inserted", "inserted",
    ]  # fmt: skip
    ids = [r.id for r in results]
    assert ids[1] == ids[2] == ids[3]
    assert ids[0] < ids[1] < ids[4] < ids[5]  # ids increase in input order
    job = await store.get(ids[1])
    assert job is not None and job.payload == {"u": 3}


# -- conn=


async def test_conn_jobs_commit_and_roll_back_with_the_callers_transaction(
    db_store: MySQLStore,
) -> None:
    import asyncmy

    bus: rb.Bus[None] = rb.Bus(store=db_store)

    @bus.job(Ping)
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        return None

    conn = await asyncmy.connect(autocommit=False, **parse_dsn(db_store._executor.dsn))
    try:
        await bus.dispatch(Ping(1), conn=conn)
        await bus.dispatch_many([Ping(2), Ping(3)], conn=conn)
        await conn.rollback()
        assert await bus.jobs.list() == []
        await bus.dispatch(Ping(4), conn=conn)
        await conn.commit()
        assert [j.payload for j in await bus.jobs.list()] == [{"n": 4}]
        with pytest.raises(StoreError, match="asyncmy connection"):
            await bus.dispatch(Ping(5), conn=object())
    finally:
        conn.close()


async def test_conn_with_autocommit_commits_its_own_batch(db_store: MySQLStore) -> None:
    import asyncmy

    conn = await asyncmy.connect(autocommit=True, **parse_dsn(db_store._executor.dsn))
    try:
        results = await db_store.insert_many([new_job(), new_job(key=b"c" * 32)], conn=conn)
        assert [r.outcome for r in results] == ["inserted", "inserted"]
    finally:
        conn.close()
    assert len(await db_store.list(rb._driver.ListParams())) == 2


async def test_the_server_clock_is_utc_whatever_the_session_time_zone(
    db_store: MySQLStore,
) -> None:
    import asyncmy

    conn = await asyncmy.connect(autocommit=True, **parse_dsn(db_store._executor.dsn))
    try:
        await mysql_sql(conn, "SET time_zone = '+05:00'")
        [result] = await db_store.insert_many([new_job(), new_job(delay=60)][:1], conn=conn)
        (later,) = await db_store.insert_many([new_job(delay=60)], conn=conn)
    finally:
        conn.close()
    job = await db_store.get(result.id)
    delayed = await db_store.get(later.id)
    assert job is not None and delayed is not None
    assert abs(job.inserted_at - datetime.now(UTC)) < timedelta(seconds=30)
    assert (
        timedelta(seconds=59) < delayed.scheduled_at - delayed.inserted_at < timedelta(seconds=61)
    )
    assert delayed.state is rb.JobState.SCHEDULED


# -- contention


class _FakeDeadlock:
    """Makes the first ``times`` runs of a query raise a driver error with ``code``."""

    def __init__(self, code: int, times: int) -> None:
        import asyncmy.errors

        self.left = times
        self.error = asyncmy.errors.OperationalError(code, "simulated")

    def check(self) -> None:
        if self.left > 0:
            self.left -= 1
            raise self.error


async def _nodes(store: MySQLStore) -> list[str]:
    raw = await _raw(store)
    try:
        rows = await mysql_sql(raw, f"SELECT node FROM {store.dialect.prefix}nodes ORDER BY node")
        return [row[0] for row in rows]
    finally:
        raw.close()


async def test_a_store_transaction_starts_with_its_first_statement_and_may_end_with_its_last(
    store: MySQLStore,
) -> None:
    """START TRANSACTION travels with the work's first statement and COMMIT, when asked, with
    its last: a failure before the end rolls everything back, a failure after a committing
    statement loses nothing, a work that ran no statement sends nothing."""
    from relaybus.stores.mysql.executor import MyTx

    executor = store._executor
    args = {"ttl": 60.0, "now": None}

    async def failing(tx: Any) -> None:
        await tx.execute("heartbeat", {**args, "node": "a"})
        await tx.execute("heartbeat", {**args, "node": "b"})
        raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        await executor.run(failing, transaction=True)
    assert await _nodes(store) == []  # both rolled back

    async def committed_then_failing(tx: MyTx) -> None:
        await tx.execute("heartbeat", {**args, "node": "a"})
        await tx.execute("heartbeat", {**args, "node": "b"}, commit=True)
        raise RuntimeError("after the commit")

    with pytest.raises(RuntimeError):
        await executor.run(committed_then_failing, transaction=True)
    assert await _nodes(store) == ["a", "b"]

    async def nothing(tx: Any) -> str:
        return "done"

    assert await executor.run(nothing, transaction=True) == "done"

    async def bad_statement(tx: Any) -> None:
        await tx.execute("heartbeat", {**args, "node": "c"})
        await tx.execute("delete_node", {"node": "a"})
        await tx.execute("heartbeat", {**args, "node": None}, commit=True)  # NOT NULL: fails

    with pytest.raises(Exception, match=r"cannot be null|1048"):
        await executor.run(bad_statement, transaction=True)
    assert await _nodes(store) == ["a", "b"]  # c and the delete rolled back with it


@pytest.mark.parametrize("code", [1213, 1205])
async def test_deadlocks_and_lock_waits_are_retried_inside_the_store(
    store: MySQLStore, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    from relaybus.stores.mysql import executor as mod

    fake = _FakeDeadlock(code, 3)
    original = mod.MyTx.fetch

    async def flaky(self: Any, name: str, args: Any) -> list[Any]:
        if name == "fetch":
            fake.check()
        return await original(self, name, args)

    (job_id,) = await insert(store, new_job())
    monkeypatch.setattr(mod.MyTx, "fetch", flaky)
    claimed = await claim(store)
    assert [c.id for c in claimed] == [job_id] and fake.left == 0


async def test_endless_deadlocks_become_a_store_error(
    store: MySQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaybus.stores.mysql import executor as mod

    fake = _FakeDeadlock(1213, 1000)
    original = mod.MyTx.fetch

    async def flaky(self: Any, name: str, args: Any) -> list[Any]:
        if name == "fetch":
            fake.check()
        return await original(self, name, args)

    monkeypatch.setattr(mod, "CONTENTION_TRIES", 3)
    monkeypatch.setattr(mod.MyTx, "fetch", flaky)
    with pytest.raises(StoreError, match="kept reporting lock conflicts"):
        await claim(store)


@pytest.mark.parametrize("code", [1213, 1205])
async def test_a_conflict_in_the_callers_transaction_is_a_clear_store_error(
    db_store: MySQLStore, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    import asyncmy

    from relaybus.stores.mysql import executor as mod

    fake = _FakeDeadlock(code, 1)
    original = mod.MyTx.insert

    async def flaky(self: Any, name: str, args: Any) -> int:
        fake.check()
        return await original(self, name, args)

    monkeypatch.setattr(mod.MyTx, "insert", flaky)
    conn = await asyncmy.connect(autocommit=False, **parse_dsn(db_store._executor.dsn))
    try:
        with pytest.raises(StoreError, match="your transaction was rolled back"):
            await db_store.insert_many([new_job()], conn=conn)
        assert fake.left == 0  # never retried on the caller's connection
    finally:
        conn.close()


async def test_a_real_deadlock_in_the_store_is_retried(store: MySQLStore) -> None:
    """A caller's transaction and the store's completion lock two jobs in opposite orders:
    InnoDB picks a victim; whichever it is, the store's side completes."""
    ids = await insert(store, new_job(), new_job())
    runs = await claim(store, limit=2)
    conn = await _raw(store)
    try:
        await conn.begin()
        await mysql_sql(conn, "SELECT id FROM relaybus_jobs WHERE id = %s FOR UPDATE", (ids[1],))

        async def holder() -> None:
            await asyncio.sleep(0.3)
            with contextlib.suppress(Exception):  # this side may be the deadlock victim
                await mysql_sql(
                    conn, "SELECT id FROM relaybus_jobs WHERE id = %s FOR UPDATE", (ids[0],)
                )
            await asyncio.sleep(0.2)
            await conn.rollback()

        from .driver._support import ended

        done, _ = await asyncio.gather(store.complete_many([ended(r) for r in runs]), holder())
        assert sorted(done) == ids
    finally:
        conn.close()


# -- open, versions, DSNs


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        ("10.5.23-MariaDB", True),
        ("5.5.5-10.4.1-MariaDB-log", True),
        ("10.6.0-MariaDB", False),
        ("10.11.19-MariaDB-0+deb12u1", False),
        ("5.7.44", True),
        ("8.0.0", True),
        ("8.0.36", False),
        ("8.4.2", False),
    ],
)
def test_servers_without_skip_locked_are_refused_naming_the_version(
    version: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(StoreError, match=version.replace("+", r"\+")):
            check_version(version)
    else:
        check_version(version)


async def test_open_refuses_an_old_server(
    store: MySQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaybus.stores.mysql import executor as mod

    original = mod.MyTx.fetchrow

    async def old(self: Any, name: str, args: Any) -> Any:
        if name == "server_info":
            return ("10.5.9-MariaDB", 1, 1)
        return await original(self, name, args)

    monkeypatch.setattr(mod.MyTx, "fetchrow", old)
    fresh = MySQLStore(store._executor.dsn)
    with pytest.raises(StoreError, match=r"MariaDB 10\.6 or later.*10\.5\.9-MariaDB"):
        await fresh.open()


async def test_the_password_never_shows(tmp_path: Path) -> None:
    dsn = "mysql://root:secret-canary@127.0.0.1:3306/test"
    store = MySQLStore(dsn)
    assert "secret-canary" not in repr(store)
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "secret-canary" not in str(caught.value)
    assert "secret-canary" not in repr(store)


def test_bad_dsns_are_configuration_errors() -> None:
    with pytest.raises(rb.ConfigurationError, match="names no database"):
        MySQLStore("mysql://root@127.0.0.1:3306/")
    with pytest.raises(rb.ConfigurationError):
        MySQLStore("mysql://root@h/db", prefix="bad; DROP")


async def test_a_missing_schema_is_a_clear_store_error() -> None:
    admin = await mysql_admin(MYSQL_DSN)
    try:
        await mysql_sql(admin, "CREATE DATABASE IF NOT EXISTS t_empty")
        store = MySQLStore(mysql_dsn_for("t_empty"))
        await store.open()  # warns only: workers need no DDL rights
        try:
            with pytest.raises(StoreError, match="relaybus tables are missing"):
                await store.stats()
        finally:
            await store.close()
    finally:
        await mysql_sql(admin, "DROP DATABASE IF EXISTS t_empty")
        admin.close()


async def test_migrate_is_idempotent_and_safe_concurrently(store: MySQLStore) -> None:
    others = [MySQLStore(store._executor.dsn) for _ in range(3)]
    await asyncio.gather(*(s.migrate() for s in others))
    await store.migrate()
    assert (await store.stats()) == {}


async def test_maintenance_runs_on_the_server_clock(db_store: MySQLStore) -> None:
    (job_id,) = await insert(db_store, new_job(delay=0.2))
    await asyncio.sleep(0.3)
    assert await db_store.stage(StageParams(limit=100)) == ["default"]
    [run] = await db_store.fetch(
        FetchParams(queue="default", limit=5, node="n", isolate_after=2, idle=True)
    )
    assert run.id == job_id
    rescued = await db_store.rescue(RescueParams(grace=0, max_rescues=3, limit=10))
    assert [r.id for r in rescued] == [job_id]
    assert await db_store.prune(PruneParams({rb.JobState.COMPLETED: 0.0})) == 0


def _frozen_store(kind: str, dsn: str) -> Any:
    """A store of ``kind`` (native, or SQLAlchemy over asyncmy) on ``dsn``."""
    if kind == "native":
        return MySQLStore(dsn, min_size=1)
    from sqlalchemy.ext.asyncio import create_async_engine

    return rb.SQLAlchemyStore(create_async_engine("mysql+asyncmy://" + dsn.split("://", 1)[1]))


@pytest.mark.parametrize("kind", ["native", "sqlalchemy"])
async def test_a_node_frozen_inside_its_election_blocks_no_other_leader(
    db_store: MySQLStore, kind: str
) -> None:
    """A node frozen (SIGSTOP, a VM pause) right after sending its election leaves no lock on
    the leader row behind: the election runs outside a transaction (its upsert commits on its
    own), natively and through SQLAlchemy. Another node takes the lease once it runs out (it
    would wait for the lock, 10 s per try, while the frozen node held it)."""
    from urllib.parse import urlsplit

    from .freezing_proxy import freezing_proxy

    await db_store.migrate()
    parts = urlsplit(db_store._executor.dsn)
    async with freezing_proxy(parts.hostname or "127.0.0.1", parts.port or 3306) as proxy:
        frozen_store = _frozen_store(
            kind, parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
        )
        await frozen_store.open()
        try:
            assert await frozen_store.elect(ElectParams("frozen", ttl=1.0))
            proxy.freeze_on(b"leader")
            renewal = asyncio.create_task(frozen_store.elect(ElectParams("frozen", ttl=1.0)))
            async with asyncio.timeout(5):
                await proxy.frozen.wait()
            async with asyncio.timeout(5):  # a lock on the leader row would make these wait
                assert not await db_store.elect(ElectParams("other", ttl=1.0))  # its lease
                await asyncio.sleep(1.1)  # the lease of the frozen renewal runs out
                assert await db_store.elect(ElectParams("other", ttl=1.0))
            assert not renewal.done()  # the frozen node never heard back
            renewal.cancel()
        finally:
            await frozen_store.close()
            if kind == "sqlalchemy":
                await frozen_store.engine.dispose()


# -- long binds quoted by the store


@pytest.mark.parametrize("driver", ["asyncmy", "aiomysql"])
@pytest.mark.parametrize(
    "sql_mode", ["STRICT_TRANS_TABLES", "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES"]
)
async def test_long_binds_quoted_by_the_store_arrive_unchanged(driver: str, sql_mode: str) -> None:
    """A long string bind is written into the query by the store (quoting.py), not by the
    driver: every character the server's lexer treats specially, percent signs and
    placeholder-like text in it arrive as they were sent, with either driver; a session with
    NO_BACKSLASH_ESCAPES (a caller's connection may have it) leaves quoting to the driver."""
    import importlib

    from relaybus.stores.mysql.quoting import QUOTE_FROM, inline_long_strings

    chunk = "\\ ' \" '' \\' \0 \n \r \x1a \t % %% %(short)s %(long)s é 😀 {\"a\": \"b\\\"c\"} "
    value = chunk * (QUOTE_FROM // len(chunk) + 1)
    module = importlib.import_module(driver)
    conn = await module.connect(autocommit=True, **parse_dsn(MYSQL_DSN))
    try:
        await mysql_sql(conn, f"SET SESSION sql_mode = '{sql_mode}'")
        sql, args = inline_long_strings(
            "SELECT %(long)s, %(short)s, %(long)s = %(short)s",
            {"long": value, "short": "a'b%"},
            conn,
        )
        inlined = not sql.startswith("SELECT %(long)s")
        assert inlined is ("NO_BACKSLASH_ESCAPES" not in sql_mode)
        assert await mysql_sql(conn, sql, args) == [(value, "a'b%", 0)]
    finally:
        conn.close()
