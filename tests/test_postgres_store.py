"""What only a real PostgreSQL can show: concurrent unique inserts and SKIP LOCKED races over
separate connections, query plans, LISTEN/NOTIFY, migrations, conn= transactions, pools, lost
connections, the database clock, and the behaviours in which PostgresStore differs from the
other stores today. The Driver operations themselves are specified, for every store, by
tests/driver/ (which also holds the differential test against MemoryStore)."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from relaybus._driver import (
    Completion,
    FetchParams,
    HeartbeatParams,
    ListParams,
    NewJob,
    RescueParams,
    StageParams,
)
from relaybus._errors import StoreClosed, StoreError
from relaybus._options import bucket_key
from relaybus._types import PENDING_STATES, JobState, state_mask
from relaybus.cli import full_schema
from relaybus.stores.memory import MemoryStore
from relaybus.testing import FakeClock
from tests.stores import PG_DSN, server_missing

asyncpg = pytest.importorskip("asyncpg")

from relaybus.stores.postgres import PostgresStore  # noqa: E402

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
S = JobState
PENDING = state_mask(PENDING_STATES)
NO_RETRYABLE = state_mask(PENDING_STATES - {S.RETRYABLE})


def job(
    n: int = 0,
    *,
    key: bytes | None = None,
    states: int = PENDING,
    period: float | None = None,
    replace: dict[JobState, tuple[str, ...]] | None = None,
    queue: str = "default",
    priority: int = 2,
    delay: float | None = None,
    at: datetime | None = None,
    max_attempts: int = 5,
    meta: dict[str, Any] | None = None,
) -> NewJob:
    return NewJob(
        handler="t.h",
        event="t.e",
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        payload=json.dumps({"n": n}).encode(),
        meta=json.dumps(meta or {}).encode(),
        timeout=30.0,
        delay=delay,
        at=at,
        unique_key=key,
        unique_period=period,
        unique_states=states if key is not None else 0,
        replace=replace or {},
    )


@pytest.fixture
async def admin() -> AsyncIterator[Any]:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        server_missing("PostgreSQL", exc)
        raise
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def schema(admin: Any) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def pg(schema: str, clock: FakeClock) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(PG_DSN, schema=schema, clock=clock, auto_migrate=True, min_size=1)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def pgdb(schema: str) -> AsyncIterator[PostgresStore]:
    """On the database clock."""
    store = PostgresStore(PG_DSN, schema=schema, auto_migrate=True, min_size=1)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def fetch(node: str = "n1", limit: int = 10, queue: str = "default", idle: bool = True) -> Any:
    return FetchParams(queue=queue, limit=limit, node=node, isolate_after=2, idle=idle)


async def blocked_by(admin: Any, conn: Any, limit: float = 10.0) -> None:
    """Wait until another backend waits for a lock that ``conn``'s open transaction holds."""
    pid = conn.get_server_pid()
    query = "SELECT count(*) > 0 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"
    async with asyncio.timeout(limit):
        while True:  # a condition on the server: poll it, with a deadline
            if await admin.fetchval(query, pid):
                return
            await asyncio.sleep(0.005)


# -------------------------------------------------------------------------- batch insert


async def test_batch_of_1000_is_one_statement(pg: PostgresStore) -> None:
    jobs = [job(i) for i in range(1000)]
    calls: list[str] = []

    def log(record: Any) -> None:
        calls.append(record.query)

    async with pg.pool.acquire() as conn:
        # asyncpg introspects the array types once per connection: warm it up first.
        await pg.insert_many(jobs[:2], conn=conn)
        await pg.insert_many([job(0, key=b"w" * 32)] * 2, conn=conn)
        conn.add_query_logger(log)
        result = await pg.insert_many(jobs, conn=conn)
        unique = await pg.insert_many(
            [job(i, key=i.to_bytes(32, "big")) for i in range(1000)], conn=conn
        )
        await asyncio.sleep(0.05)  # query loggers are called soon after, not during
        conn.remove_query_logger(log)
    assert len(result) == 1000 and len(unique) == 1000
    assert len(calls) == 2, calls
    assert {r.outcome for r in unique} == {"inserted"}


async def test_plain_batches_with_shared_and_mixed_columns(
    pg: PostgresStore, clock: FakeClock, admin: Any
) -> None:
    """A plain batch sends a column the jobs share as one value and a mixed one as an array:
    every combination stores the same jobs as the memory store."""
    mem = MemoryStore(clock=clock)
    await mem.open()
    rng = random.Random(11)
    for _ in range(30):
        columns = ("handler", "queue", "priority", "delay", "at", "max", "meta", "timeout")
        mixed = {c for c in columns if rng.random() < 0.5}
        batch = []
        for _ in range(rng.randint(2, 6)):
            new = job(
                rng.randint(0, 99),
                queue=rng.choice(["a", "b"]) if "queue" in mixed else "a",
                priority=rng.randint(0, 9) if "priority" in mixed else 3,
                delay=rng.choice([None, 0, 30]) if "delay" in mixed else 15,
                at=START + timedelta(seconds=rng.choice([-5, 20]))
                if "at" in mixed and rng.random() < 0.5
                else None,
                max_attempts=rng.randint(1, 9) if "max" in mixed else 4,
                meta={"m": rng.randint(0, 3)} if "meta" in mixed else {"m": "same"},
            )
            batch.append(
                msgspec.structs.replace(
                    new,
                    handler=rng.choice(["h1", "h2"]) if "handler" in mixed else "h",
                    event=rng.choice(["e1", "e2"]) if "handler" in mixed else "e",
                    timeout=rng.choice([None, 5.0]) if "timeout" in mixed else None,
                )
            )
        got = await pg.insert_many(batch)
        want = await mem.insert_many(batch)
        assert [g.id for g in got] == sorted(g.id for g in got)
        for new, g, w in zip(batch, got, want, strict=True):
            a, b = await mem.get(w.id), await pg.get(g.id)
            assert a is not None and b is not None
            assert (a.state, a.queue, a.priority, a.payload, a.meta, a.max_attempts) == (
                b.state,
                b.queue,
                b.priority,
                b.payload,
                b.meta,
                b.max_attempts,
            )
            assert (a.handler, a.event) == (b.handler, b.event)
            assert a.scheduled_at == b.scheduled_at
            timeout = await admin.fetchval(
                f'SELECT timeout FROM "{pg.schema}".relaybus_jobs WHERE id = $1', g.id
            )
            assert timeout == new.timeout


async def test_unique_period_bucket_on_the_database_clock(pgdb: PostgresStore, admin: Any) -> None:
    base = b"p" * 32
    [r] = await pgdb.insert_many([job(1, key=base, period=3600)])
    row = await admin.fetchrow(
        f'SELECT unique_key, inserted_at FROM "{pgdb.schema}".relaybus_jobs WHERE id = $1', r.id
    )
    assert bytes(row["unique_key"]) == bucket_key(base, 3600, row["inserted_at"].timestamp())
    [again] = await pgdb.insert_many([job(2, key=base, period=3600)])
    assert (again.id, again.outcome) == (r.id, "duplicate")


# --------------------------------------------------------------------------- concurrency


async def test_concurrent_unique_inserts_from_many_connections(
    pg: PostgresStore, admin: Any
) -> None:
    conns = [await asyncpg.connect(PG_DSN) for _ in range(20)]
    try:
        for round_ in range(3):
            key = bytes([round_]) * 32
            results = await asyncio.gather(
                *(pg.insert_many([job(round_, key=key)], conn=c) for c in conns)
            )
            outcomes = sorted(r[0].outcome for r in results)
            assert outcomes == ["duplicate"] * 19 + ["inserted"]
            assert len({r[0].id for r in results}) == 1
        count = await admin.fetchval(f'SELECT count(*) FROM "{pg.schema}".relaybus_jobs')
        assert count == 3
    finally:
        await asyncio.gather(*(c.close() for c in conns))


async def test_concurrent_overlapping_unique_batches_never_fail(
    pg: PostgresStore, admin: Any
) -> None:
    """Batches sharing keys in different orders, from separate connections: no deadlock or
    unique-violation escapes, and each key ends with exactly one holder."""
    keys = [bytes([i]) * 32 for i in range(40)]
    rep = {S.AVAILABLE: ("payload",)}

    async def writer(seed: int) -> list[str]:
        rng = random.Random(seed)
        mine = keys[:]
        rng.shuffle(mine)
        out: list[str] = []
        for chunk in range(4):
            batch = [job(seed, key=k, replace=rep) for k in mine[chunk * 10 : chunk * 10 + 10]]
            out += [r.outcome for r in await pg.insert_many(batch)]
        return out

    results = await asyncio.gather(*(writer(s) for s in range(8)))
    flat = [o for r in results for o in r]
    assert flat.count("inserted") == 40
    rows = await admin.fetch(
        f'SELECT unique_key, count(*) FROM "{pg.schema}".relaybus_jobs GROUP BY unique_key'
    )
    assert len(rows) == 40 and all(r[1] == 1 for r in rows)


async def test_skip_locked_race_claims_each_job_once(schema: str, clock: FakeClock) -> None:
    a = PostgresStore(PG_DSN, schema=schema, clock=clock, auto_migrate=True, min_size=1)
    b = PostgresStore(PG_DSN, schema=schema, clock=clock, min_size=1)
    await a.open()
    await b.open()
    try:
        for start in range(0, 5000, 1000):
            await a.insert_many([job(i) for i in range(start, start + 1000)])

        async def drain(store: PostgresStore, node: str) -> list[int]:
            got: list[int] = []
            while True:
                claimed = await store.fetch(fetch(node=node, limit=25))
                if not claimed:
                    return got
                got += [c.id for c in claimed]
                assert all(c.attempt == 1 for c in claimed)

        results = await asyncio.gather(
            drain(a, "a1"), drain(a, "a2"), drain(b, "b1"), drain(b, "b2")
        )
        every = [i for r in results for i in r]
        assert len(every) == 5000 and len(set(every)) == 5000
        assert all(len(r) > 0 for r in results)
    finally:
        await a.close()
        await b.close()


def plan_nodes(plan: Any) -> set[tuple[str, str | None]]:
    """Every (node type, relation) of an EXPLAIN (FORMAT JSON) plan."""
    found: set[tuple[str, str | None]] = set()
    stack = [entry["Plan"] for entry in plan]
    while stack:
        node = stack.pop()
        found.add((node["Node Type"], node.get("Relation Name")))
        stack.extend(node.get("Plans", ()))
    return found


async def test_fetch_uses_the_partial_index_with_a_backlog(pg: PostgresStore, admin: Any) -> None:
    table = f'"{pg.schema}".relaybus_jobs'
    for start in range(0, 20000, 1000):
        await pg.insert_many([job(i, queue=("a", "b")[i % 2]) for i in range(start, start + 1000)])
    claimed = await pg.fetch(fetch(queue="a", limit=500))
    await pg.complete_many([Completion(c.id, c.attempt, "completed") for c in claimed])
    await admin.execute(f"ANALYZE {table}")
    fetch_args = {"queue": "a", "limit": 10, "node": "n", "isolate_after": 2, "idle": True,
                  "now": None}  # fmt: skip
    sql, args = query(pg, "fetch", fetch_args)
    async with admin.transaction():
        await admin.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        custom = await admin.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    for plan in (custom, await explain_generic(admin, sql, args)):
        nodes = plan_nodes(json.loads(plan))
        assert "relaybus_jobs_fetch_idx" in plan, plan
        assert ("Seq Scan", "relaybus_jobs") not in nodes, plan
        assert not any(kind == "Sort" for kind, _ in nodes), plan  # the index gives the order
    # The other hot statements never scan the whole table either (generic plans: what a
    # long-lived connection runs).
    ids = [c.id for c in claimed[:10]]
    ends = {
        "now": None, "ids": ids, "attempts": [1] * 10, "states": None, "state": "completed",
        "refunds": None, "refund": 0, "rescued_list": None, "rescued": 0, "delays": None,
        "delay": None, "finalize_list": None, "finalize": True, "errors": None, "error": None,
        "channel": "c", "running": "running",
    }  # fmt: skip
    one = {
        "now": None, "handler": "h", "event": "e", "queue": "q", "priority": 2,
        "max_attempts": 5, "payload": "{}", "meta": "{}", "timeout": None, "delay": None,
        "at": None, "channel": "c",
    }  # fmt: skip
    others: dict[str, dict[str, Any]] = {
        "end_runs": ends,
        "end_runs_and_fetch": {**ends, **fetch_args, "queue": "default", "idle": False},
        "lost_runs": {"node": "n", "ids": ids, "attempts": [1] * 10, "running": "running"},
        "stage": {"now": None, "limit": 1000, "channel": "c"},
        "due_contested": {"now": None, "limit": 1000},
        "rescue_candidates": {"now": None, "grace": 5.0, "limit": 1000},
        "prune": {"now": None, "state": "completed", "keep": 60.0, "limit": 1000},
        "insert_unique": {
            "now": None, "handlers": ["h"] * 2, "events": ["e"] * 2, "queues": ["q"] * 2,
            "priorities": [2] * 2, "max_attempts": [5] * 2, "payloads": ["{}"] * 2,
            "metas": ["{}"] * 2, "timeouts": [None] * 2, "delays": [None] * 2,
            "ats": [None] * 2, "base_keys": [b"k" * 32] * 2, "periods": [None] * 2,
            "unique_states": [15] * 2, "rep_available": [1] * 2, "rep_scheduled": [1] * 2,
            "rep_retryable": [1] * 2, "channel": "c",
        },
        "insert_unique_one": {
            **one, "base_key": b"k" * 32, "period": None, "unique_states": 15,
            "rep_available": 0, "rep_scheduled": 0, "rep_retryable": 0,
        },
    }  # fmt: skip
    for name, named in others.items():
        plan = await explain_generic(admin, *query(pg, name, named))
        nodes = plan_nodes(json.loads(plan))
        assert ("Seq Scan", "relaybus_jobs") not in nodes, (name, plan)
        if name == "end_runs_and_fetch":  # the claim half still walks the fetch index
            assert "relaybus_jobs_fetch_idx" in plan, (name, plan)
            assert not any(kind == "Sort" for kind, _ in nodes), (name, plan)
        if name in ("end_runs", "lost_runs"):  # by primary key, whatever the statistics
            assert "relaybus_jobs_running_idx" not in plan, (name, plan)
            assert "relaybus_jobs_pkey" in plan, (name, plan)


def query(pg: PostgresStore, name: str, args: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """A named query's SQL ($n placeholders) and its binds in placeholder order."""
    q = pg.dialect.queries[name]
    return q.sql, q.positional(args)


async def test_fetch_plan_made_on_an_empty_table_holds_for_a_backlog(pg: PostgresStore) -> None:
    """A worker's connection plans the fetch once, typically on an empty queue, and keeps that
    plan; then a burst of inserts lands before autovacuum analyzes the table. The plan must
    still be the ordered index scan, not a scan plus a sort of the whole backlog per fetch."""
    fetch_query = pg.dialect.queries["fetch"]
    literals = {"queue": "'default'", "limit": "10", "node": "'n'", "isolate_after": "2",
                "idle": "true", "now": "NULL"}  # fmt: skip
    execute = f"EXECUTE early_fetch({', '.join(literals[b] for b in fetch_query.binds)})"
    async with pg.pool.borrow() as conn:
        await conn.execute(f"PREPARE early_fetch AS {fetch_query.sql}")
        await conn.execute(execute)  # cached
        for start in range(0, 30000, 1000):
            await pg.insert_many([job(i) for i in range(start, start + 1000)], conn=conn)
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + execute)
        await conn.execute("DEALLOCATE early_fetch")
    nodes = plan_nodes(json.loads(plan))
    assert "relaybus_jobs_fetch_idx" in plan, plan
    assert not any(kind in ("Sort", "Bitmap Heap Scan", "Seq Scan") for kind, _ in nodes), plan


def sql_literal(value: Any) -> str:
    """A test constant as an SQL literal (EXECUTE takes no bound parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes):
        return f"'\\x{value.hex()}'"
    if isinstance(value, list):
        items = ",".join(
            "NULL"
            if v is None
            else f'"\\\\x{v.hex()}"'
            if isinstance(v, bytes)
            else f'"{v}"'
            if isinstance(v, str)
            else str(v)
            for v in value
        )
        return "'{" + items + "}'"
    assert isinstance(value, str) and "'" not in value
    return f"'{value}'"


async def explain_generic(admin: Any, query: str, args: tuple[Any, ...]) -> str:
    """EXPLAIN the generic plan of ``query`` (the one a prepared statement settles on)."""
    name = f"q_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"PREPARE {name} AS {query}")
    try:
        async with admin.transaction():
            await admin.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            values = ", ".join(sql_literal(arg) for arg in args)
            plan: str = await admin.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({values})")
            return plan
    finally:
        await admin.execute(f"DEALLOCATE {name}")


async def test_stage_survives_a_holder_committed_after_its_snapshot(
    pg: PostgresStore, admin: Any
) -> None:
    """A unique violation from a concurrent holder is retried inside stage, never raised."""
    key = b"e" * 32
    [r] = await pg.insert_many([job(1, key=key, states=NO_RETRYABLE)])
    [c] = await pg.fetch(fetch())
    await pg.complete_many([Completion(c.id, c.attempt, "retry", None, 5)])
    pg.clock.advance(10)  # type: ignore[attr-defined]
    conn = await asyncpg.connect(PG_DSN)
    try:
        tr = conn.transaction()
        await tr.start()
        [holder] = await pg.insert_many([job(2, key=key, states=NO_RETRYABLE)], conn=conn)
        staged = asyncio.create_task(pg.stage(StageParams()))
        await blocked_by(admin, conn)  # stage waits for the uncommitted holder's key
        await tr.commit()
        assert await staged == []
    finally:
        await conn.close()
    got = await pg.get(r.id)
    assert got is not None and got.state is S.DISCARDED
    assert got.errors[-1].message == f"job {holder.id} holds this job's unique key"


# ------------------------------------------------------------------------------ notify


async def test_subscribe_receives_the_queue_and_survives_a_dropped_connection(
    pg: PostgresStore, admin: Any
) -> None:
    got: asyncio.Queue[str] = asyncio.Queue()
    unsubscribe = await pg.subscribe(got.put_nowait)
    assert unsubscribe is not None
    try:
        await pg.insert_many([job(1, queue="mail"), job(2, queue="mail"), job(3, queue="x")])
        async with asyncio.timeout(5):
            seen = {await got.get(), await got.get()}
        assert seen == {"mail", "x"}
        await pg.insert_many([job(4, queue="later", delay=60)])  # scheduled: no notify
        await asyncio.sleep(0.1)
        assert got.empty()
        # Kill the listening backend: the store listens again by itself. Only this store's:
        # the server is shared, other runs' listeners are on it too. Its channel is this
        # test's schema's own; the backend's last statement is asyncpg's LISTEN "<channel>".
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'relaybus-listen' AND query = $1"
            " AND datname = current_database()",
            f'LISTEN "{pg.channel}"',
        )
        assert killed == 1
        async with asyncio.timeout(10):
            while True:
                await pg.insert_many([job(5, queue="again")])
                try:
                    async with asyncio.timeout(0.3):
                        while (await got.get()) != "again":
                            pass
                    break
                except TimeoutError:
                    continue
    finally:
        await unsubscribe()


async def test_notify_is_sent_once_per_queue_and_statement(pg: PostgresStore) -> None:
    conn = await asyncpg.connect(PG_DSN)
    seen: list[str] = []
    try:
        await conn.add_listener(pg.channel, lambda *args: seen.append(args[3]))
        await pg.insert_many([job(i, queue=("a", "b")[i % 2]) for i in range(100)])
        await asyncio.sleep(0.3)
        assert sorted(seen) == ["a", "b"]
    finally:
        await conn.close()


# -------------------------------------------------------------------------- migrations


async def test_migrations_are_idempotent_and_safe_concurrently(schema: str, admin: Any) -> None:
    stores = [PostgresStore(PG_DSN, schema=schema, prefix="mig_") for _ in range(3)]
    await asyncio.gather(*(s.migrate() for s in stores))  # unopened, at once
    await stores[0].migrate()
    versions = await admin.fetch(f'SELECT version FROM "{schema}".mig_migrations')
    assert [v[0] for v in versions] == [1, 2]
    await stores[0].open()
    try:
        assert (await stores[0].insert_many([job(1)]))[0].outcome == "inserted"
        await stores[0].migrate()  # open, too
    finally:
        await stores[0].close()


async def test_root_schema_file_is_identical() -> None:
    on_disk = (ROOT / "migrations" / "postgres.sql").read_text(encoding="utf-8")
    assert on_disk == full_schema("postgres")


async def test_open_runs_no_ddl_and_missing_tables_give_a_clear_error(
    schema: str, admin: Any
) -> None:
    store = PostgresStore(PG_DSN, schema=schema)
    await store.open()
    try:
        exists = await admin.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema
        )
        assert exists == 0
        with pytest.raises(StoreError, match="migrate"):
            await store.insert_many([job(1)])
    finally:
        await store.close()
    with pytest.raises(StoreClosed):
        await store.fetch(fetch())


async def test_conn_transaction_rollback_and_commit(pg: PostgresStore) -> None:
    key = b"x" * 32
    conn = await asyncpg.connect(PG_DSN)
    try:
        tr = conn.transaction()
        await tr.start()
        result = await pg.insert_many([job(1, key=key), job(2, key=key), job(3)], conn=conn)
        assert [r.outcome for r in result] == ["inserted", "duplicate", "inserted"]
        assert await pg.get(result[0].id) is None  # not visible outside the transaction
        await tr.rollback()
        assert await pg.stats() == {}
        async with conn.transaction():
            result = await pg.insert_many([job(4, key=key), job(5)], conn=conn)
            assert await pg.get(result[0].id) is None  # not committed yet
        for r in result:
            got = await pg.get(r.id)
            assert got is not None and got.state is S.AVAILABLE
    finally:
        await conn.close()


async def test_repr_and_errors_mask_the_password(schema: str) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    dsn = f"postgresql://postgres:{canary}@127.0.0.1:1/test"
    store = PostgresStore(dsn, schema=schema)
    assert canary not in repr(store) and "***" in repr(store)
    with pytest.raises(StoreError) as info:
        await store.open()
    assert canary not in str(info.value)
    with pytest.raises(StoreError) as info:
        await store.migrate()
    assert canary not in str(info.value)


def test_bad_prefix_and_schema_are_rejected() -> None:
    with pytest.raises(ValueError):
        PostgresStore(PG_DSN, prefix="x; DROP TABLE jobs")
    with pytest.raises(ValueError):
        PostgresStore(PG_DSN, schema='public"')


# ------------------------------------------------------------------- connection loss


async def test_terminated_backends_raise_clearly_then_are_replaced(
    pg: PostgresStore, admin: Any
) -> None:
    await pg.insert_many([job(1)])
    # This store's own backends only (the server is shared: other runs' stores are on it
    # too). Its pool holds one connection (min_size=1, one statement at a time).
    own = await pg.pool.fetchval("SELECT pg_backend_pid()")
    killed = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE pid = $1 AND application_name = 'relaybus'",
        own,
    )
    assert killed == 1
    await asyncio.sleep(0.1)
    ok = 0
    for _ in range(3):  # at most one failure per dropped connection, then fresh ones
        try:
            await pg.insert_many([job(2)])
            ok += 1
        except StoreError as exc:
            assert "unavailable" in str(exc)
    assert ok >= 1
    assert (await pg.insert_many([job(3)]))[0].outcome == "inserted"


async def test_own_pool_respects_max_size_and_hands_over(schema: str, clock: FakeClock) -> None:
    store = PostgresStore(
        PG_DSN, schema=schema, clock=clock, auto_migrate=True, min_size=0, max_size=2
    )
    await store.open()
    try:
        await asyncio.gather(*(store.insert_many([job(i)]) for i in range(50)))
        assert store.pool._size <= 2
        held = await store.pool.acquire_connection()
        try:
            waiting = asyncio.create_task(store.get(1))
            other = await store.pool.acquire_connection()  # the second and last slot
            await asyncio.sleep(0.05)
            assert not waiting.done()
            store.pool.release(other)
            assert (await waiting) is not None
            cancelled = asyncio.create_task(store.pool.acquire_connection())
            other = await store.pool.acquire_connection()
            await asyncio.sleep(0)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            store.pool.release(other)
        finally:
            store.pool.release(held)
        assert store.pool._size <= 2
        assert len(await store.list(ListParams())) == 50
    finally:
        await store.close()


async def test_user_pool_is_used_and_not_closed(schema: str, clock: FakeClock) -> None:
    pool = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=3)
    try:
        store = PostgresStore(pool, schema=schema, clock=clock, auto_migrate=True)
        assert "<asyncpg.Pool>" in repr(store)
        await store.open()
        got: asyncio.Queue[str] = asyncio.Queue()
        unsubscribe = await store.subscribe(got.put_nowait)
        assert unsubscribe is not None
        await store.insert_many([job(1, queue="q")])
        async with asyncio.timeout(5):
            assert await got.get() == "q"
        await unsubscribe()
        await store.close()
        assert not pool._closed
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_the_database_clock_drives_time(pgdb: PostgresStore, admin: Any) -> None:
    """No injected clock: every statement reads now() on the server."""
    later, due, past = await pgdb.insert_many(
        [job(1, delay=3600), job(2), job(3, at=datetime(2000, 1, 1, tzinfo=UTC))]
    )
    db_now = await admin.fetchval("SELECT now()")
    got = await pgdb.get(later.id)
    assert got is not None and got.state is S.SCHEDULED
    assert abs((got.scheduled_at - got.inserted_at).total_seconds() - 3600) < 1e-6
    assert abs((got.inserted_at - db_now).total_seconds()) < 60
    claimed = await pgdb.fetch(fetch(node="n", limit=10))
    assert {c.id for c in claimed} == {due.id, past.id}
    first, second = sorted(claimed, key=lambda c: c.id)
    assert await pgdb.complete_many(
        [
            Completion(first.id, first.attempt, "retry", None, 0),
            Completion(second.id, second.attempt, "snooze", None, 3600),
        ]
    ) == [first.id, second.id]
    # The node's lease is already over (ttl 0): the rescuer takes the job back at once.
    [again] = await pgdb.fetch(fetch(node="n"))
    assert await pgdb.heartbeat(HeartbeatParams("n", 0, [(again.id, again.attempt)])) == []
    [rescued] = await pgdb.rescue(RescueParams(grace=0, max_rescues=3))
    assert (rescued.id, rescued.handler, rescued.state) == (again.id, again.handler, "retryable")
    assert await pgdb.stage(StageParams()) == ["default"]
    assert (await pgdb.fetch(fetch(node="m")))[0].id == again.id


async def test_application_use_of_the_pool_is_reset(pg: PostgresStore) -> None:
    """``store.pool.acquire()`` lends a connection to the application; its session settings
    are reset before the store's own statements run on it again."""
    for _ in range(3):
        async with pg.pool.acquire() as conn:
            await conn.execute("SET statement_timeout = 1")
            await conn.execute("SET search_path = nowhere")
    with pytest.raises(ZeroDivisionError):
        async with pg.pool.acquire() as conn:
            await conn.execute("SET statement_timeout = 1")
            raise ZeroDivisionError
    for _ in range(3):
        async with pg.pool.borrow() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "0"
    assert (await pg.insert_many([job(i) for i in range(50)]))[0].outcome == "inserted"


@pytest.mark.parametrize("batch", [False, True])
async def test_unique_insert_racing_an_uncommitted_holder(
    pg: PostgresStore, admin: Any, batch: bool
) -> None:
    """The holder is not in the statement's snapshot: the insert waits for it, loses the
    ON CONFLICT, runs again and reports the duplicate (never an error, never two holders)."""
    key = b"z" * 32
    conn = await asyncpg.connect(PG_DSN)
    try:
        tr = conn.transaction()
        await tr.start()
        [holder] = await pg.insert_many([job(1, key=key)], conn=conn)
        jobs = [job(2, key=key)] + ([job(3)] if batch else [])
        racing = asyncio.create_task(pg.insert_many(jobs))
        await blocked_by(admin, conn)  # waiting on the holder's transaction
        assert not racing.done()
        await tr.commit()
        result = await racing
    finally:
        await conn.close()
    assert (result[0].id, result[0].outcome) == (holder.id, "duplicate")
    if batch:
        assert result[1].outcome == "inserted"


async def test_unique_insert_after_an_uncommitted_holder_rolls_back(
    pg: PostgresStore, admin: Any
) -> None:
    key = b"y" * 32
    conn = await asyncpg.connect(PG_DSN)
    try:
        tr = conn.transaction()
        await tr.start()
        await pg.insert_many([job(1, key=key)], conn=conn)
        racing = asyncio.create_task(pg.insert_many([job(2, key=key)]))
        await blocked_by(admin, conn)
        await tr.rollback()
        [result] = await racing
    finally:
        await conn.close()
    assert result.outcome == "inserted"
    got = await pg.get(result.id)
    assert got is not None and got.payload == {"n": 2}


@pytest.mark.parametrize("then", ["fetch", "heartbeat"])
async def test_a_claim_whose_answer_was_lost_is_given_back(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    """The claim committed but the connection dropped before the answer arrived: the jobs are
    running on a live node that never got them. The store gives them back (attempt refunded)
    before the node's next fetch or heartbeat, and leaves the jobs it did hand out alone."""
    ids = [r.id for r in await pg.insert_many([job(1), job(2), job(3)])]
    [kept] = await pg.fetch(fetch(node="n", limit=1))
    real = pg.pool.fetch

    async def answer_lost(query: str, *args: Any) -> Any:
        await real(query, *args)
        raise asyncpg.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        )

    monkeypatch.setattr(pg.pool, "fetch", answer_lost)
    with pytest.raises(StoreError):
        await pg.fetch(fetch(node="n", limit=10))
    monkeypatch.undo()
    assert (await pg.get(ids[1])).state is S.RUNNING  # type: ignore[union-attr]
    if then == "heartbeat":
        assert await pg.heartbeat(HeartbeatParams("n", 30, [(kept.id, kept.attempt)])) == []
        for job_id in ids[1:]:
            got = await pg.get(job_id)
            assert got is not None and got.state is S.AVAILABLE and got.attempt == 0
    again = await pg.fetch(fetch(node="n", limit=10))
    assert sorted(c.id for c in again) == ids[1:]
    assert all(c.attempt == 1 for c in again)
    got = await pg.get(kept.id)
    assert got is not None and got.state is S.RUNNING and got.attempt == 1


# -- where PostgresStore differs from MemoryStore and SQLiteStore today. Each test pins today's
# behaviour so that a change is deliberate; the agreed part of each is in tests/driver/.




async def test_a_release_of_orphans_never_returns_a_claim_made_meanwhile(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch lost its answer, so the node is suspect. The heartbeat starts releasing the
    orphans and is delayed right after taking its snapshot of the jobs handed to the node;
    meanwhile the producer fetches. The fetch must not claim jobs the delayed release then
    gives back (they would run twice at the same attempt): release and fetch never overlap."""
    ids = [r.id for r in await pg.insert_many([job(i) for i in range(4)])]
    real_fetch = pg.pool.fetch

    async def answer_lost(query: str, *args: Any) -> Any:
        await real_fetch(query, *args)
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")

    monkeypatch.setattr(pg.pool, "fetch", answer_lost)
    with pytest.raises(StoreError):
        await pg.fetch(fetch(node="n", limit=2))  # claims ids[0:2], answer lost
    monkeypatch.undo()

    release_sql = pg.dialect.queries["release_orphans"].sql
    real_fetchrow = pg.pool.fetchrow
    entered, gate = asyncio.Event(), asyncio.Event()

    async def delayed_release(query: str, *args: Any) -> Any:
        if query == release_sql and not entered.is_set():
            entered.set()
            await gate.wait()  # the racy point: snapshot taken, statement not run yet
        return await real_fetchrow(query, *args)

    monkeypatch.setattr(pg.pool, "fetchrow", delayed_release)
    beat = asyncio.create_task(pg.heartbeat(HeartbeatParams("n", 30)))
    await entered.wait()
    producer = asyncio.create_task(pg.fetch(fetch(node="n", limit=2)))
    for _ in range(50):  # let the fetch go as far as it can while the release waits
        await asyncio.sleep(0)
    gate.set()
    assert await beat == []
    claimed = await producer
    monkeypatch.undo()
    assert len(claimed) == 2
    for c in claimed:  # every job the node holds is running there at the attempt it was given
        got = await pg.get(c.id)
        assert got is not None and (got.state, got.attempt) == (S.RUNNING, c.attempt), got
    assert await pg.heartbeat(HeartbeatParams("n", 30, [(c.id, c.attempt) for c in claimed])) == []
    states = {i: (await pg.get(i)).state for i in ids}  # type: ignore[union-attr]
    assert sorted(states.values()) == sorted([S.RUNNING, S.RUNNING, S.AVAILABLE, S.AVAILABLE])


async def test_a_dsn_application_name_is_kept(schema: str, admin: Any) -> None:
    name = f"app_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(
        f"{PG_DSN}?application_name={name}", schema=schema, auto_migrate=True, min_size=1
    )
    await store.open()
    try:
        async with store.pool.borrow() as conn:
            pid = conn.get_server_pid()
        query = "SELECT application_name FROM pg_stat_activity WHERE pid = $1"
        assert await admin.fetchval(query, pid) == name
    finally:
        await store.close()
