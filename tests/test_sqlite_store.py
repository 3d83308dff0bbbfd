"""What only SQLiteStore has: migrations, the schema file at the repository root, query plans,
corrupted rows, a cancelled fetch, several connections on one file. The Driver operations
themselves are specified, for every store, by tests/driver/."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from relaybus._driver import Completion, FetchParams, ListParams, NewJob
from relaybus._errors import ConfigurationError, StoreClosed, StoreError
from relaybus._types import PENDING_STATES, JobError, JobState, state_mask
from relaybus.cli import full_schema
from relaybus.stores._sql.queries import load_migrations, load_queries, render
from relaybus.stores.sqlite import SQLiteStore
from relaybus.testing import FakeClock

S = JobState
ROOT = Path(__file__).resolve().parent.parent
PENDING = state_mask(PENDING_STATES)


def job(
    payload: bytes = b"{}",
    *,
    meta: bytes = b"{}",
    priority: int = 2,
    queue: str = "default",
    max_attempts: int = 3,
    key: bytes | None = None,
    states: int = PENDING,
    replace: dict[JobState, tuple[str, ...]] | None = None,
    **extra: Any,
) -> NewJob:
    return NewJob(
        handler="tests.handler",
        event="tests.event",
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        payload=payload,
        meta=meta,
        timeout=60.0,
        unique_key=key,
        unique_states=states if key is not None else 0,
        replace=replace or {},
        **extra,
    )


@asynccontextmanager
async def opened(store: Any) -> AsyncIterator[Any]:
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def insert(store: Any, *jobs: NewJob) -> list[int]:
    return [r.id for r in await store.insert_many(jobs)]


async def claim(
    store: Any, node: str = "node-a", *, limit: int = 10, idle: bool = True, isolate: int = 2
) -> list[Any]:
    return list(
        await store.fetch(
            FetchParams(queue="default", limit=limit, node=node, isolate_after=isolate, idle=idle)
        )
    )


@pytest.fixture
def db(tmp_path: Path, clock: FakeClock) -> SQLiteStore:
    return SQLiteStore(tmp_path / "jobs.db", clock=clock)


@contextmanager
def raw(path: str) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def test_constructor_validates_and_repr_shows_the_path(tmp_path: Path) -> None:
    assert repr(SQLiteStore("jobs.db")) == "SQLiteStore('jobs.db')"
    assert "prefix='app_'" in repr(SQLiteStore(tmp_path / "x.db", prefix="app_"))
    with pytest.raises(ConfigurationError):
        SQLiteStore("jobs.db", prefix="bad-prefix; DROP")
    with pytest.raises(ValueError):
        SQLiteStore("jobs.db", busy_timeout=-1)


async def test_migrate_is_idempotent_and_works_closed(db: SQLiteStore) -> None:
    await db.migrate()  # closed: uses a connection of its own
    await db.migrate()
    async with opened(db):
        await db.migrate()
        await db.insert_many([job()])
    await asyncio.gather(db.migrate(), SQLiteStore(db.path).migrate())
    with raw(db.path) as conn:
        versions = conn.execute("SELECT version FROM relaybus_migrations").fetchall()
        assert versions == [(v,) for v, _, _ in load_migrations("relaybus.stores.sqlite")]
        assert conn.execute("SELECT count(*) FROM relaybus_jobs").fetchone() == (1,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_root_schema_file_matches_the_package_migrations() -> None:
    migrations = load_migrations("relaybus.stores.sqlite")
    assert [v for v, _, _ in migrations] == list(range(1, len(migrations) + 1))
    on_disk = (ROOT / "migrations" / "sqlite.sql").read_text(encoding="utf-8")
    assert on_disk == full_schema("sqlite")  # regenerate: relaybus sql --dialect sqlite
    rendered = [render(sql, prefix="relaybus_").strip() for _, _, sql in migrations]
    assert all(part in on_disk for part in rendered)


async def test_root_schema_file_applies_and_the_store_adopts_it(tmp_path: Path) -> None:
    path = str(tmp_path / "own-tool.db")
    with raw(path) as conn:
        conn.executescript((ROOT / "migrations" / "sqlite.sql").read_text(encoding="utf-8"))
    async with opened(SQLiteStore(path)) as store:
        assert [r.outcome for r in await store.insert_many([job()])] == ["inserted"]


async def test_prefix_names_the_tables(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    async with opened(SQLiteStore(path, prefix="app_")) as store:
        await store.insert_many([job()])
    with raw(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"app_jobs", "app_nodes", "app_leader", "app_migrations"} <= names
    assert not any(name.startswith("relaybus_") for name in names)


HOT_QUERIES = [
    "first_available",
    "claim",
    "claim_one",
    "complete_runs",
    "end_run",
    "find_holder",
    "stage",
    "due_contested",
    "key_holder",
    "lost_runs",
    "rescue_candidates",
    "prune",
]


@pytest.mark.parametrize("name", HOT_QUERIES)
async def test_hot_queries_use_an_index_and_need_no_sort(db: SQLiteStore, name: str) -> None:
    await db.migrate()
    sql = render(load_queries("relaybus.stores.sqlite")[name], prefix="relaybus_")
    args = {
        "queue": "q", "node": "n", "now": 0.0, "limit": 10, "isolate_after": 2, "id": 1,
        "attempt": 1, "grace": 0.0, "state": "completed", "horizon": 0.0, "unique_key": b"k",
        "runs": "[]", "refund": 0, "rescued": 0, "delay": None, "finalize": False,
        "error": None, "keep": 0.0, "running": "running",
    }  # fmt: skip
    with raw(db.path) as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
    scans = [step for step in plan if step in ("SCAN relaybus_jobs", "SCAN j")]
    assert scans == [], plan
    if name != "rescue_candidates":  # sorts only the few running jobs it picked
        assert not any("TEMP B-TREE" in step for step in plan), plan


async def test_unique_holder_bits_match_jobstate_bit(db: SQLiteStore) -> None:
    await db.migrate()
    with raw(db.path) as conn:
        for i, state in enumerate(JobState):
            for mask in (state.bit, 127 & ~state.bit):
                conn.execute(
                    "INSERT INTO relaybus_jobs (handler, event, queue, state, payload, "
                    "inserted_at, scheduled_at, unique_key, unique_states) "
                    "VALUES ('h', 'e', 'q', ?, '{}', 0, 0, ?, ?)",
                    (state.value, f"{i}:{mask}".encode(), mask),
                )
        rows = conn.execute(
            "SELECT state, unique_states, unique_holder IS NOT NULL FROM relaybus_jobs"
        ).fetchall()
    assert len(rows) == 2 * len(JobState)
    for state, mask, holds in rows:
        assert bool(holds) == bool(mask & JobState(state).bit), (state, mask)


async def test_a_corrupted_row_does_not_crash_reads_or_fetch(db: SQLiteStore) -> None:
    async with opened(db):
        bad_json, bad_bytes, bad_meta = await insert(db, job(), job(), job())
        with raw(db.path) as conn:
            conn.execute("UPDATE relaybus_jobs SET payload = 'not json{' WHERE id = ?", (bad_json,))
            conn.execute(
                "UPDATE relaybus_jobs SET payload = CAST(x'ff00fe' AS TEXT), errors = 'oops' "
                "WHERE id = ?",
                (bad_bytes,),
            )
            conn.execute("UPDATE relaybus_jobs SET meta = '[1, 2' WHERE id = ?", (bad_meta,))
        first = await db.get(bad_json)
        assert first.payload == "not json{"
        second = await db.get(bad_bytes)
        assert isinstance(second.payload, str)
        assert second.errors == ()
        assert (await db.get(bad_meta)).meta == {}
        assert len(await db.list(ListParams())) == 3
        claimed = {j.id: j for j in await claim(db)}
        assert claimed[bad_json].payload == b"not json{"
        assert claimed[bad_bytes].payload == b"\xff\x00\xfe"
        assert claimed[bad_meta].meta == {}
        # an error can still be appended to a corrupted error list
        error = JobError(db.clock.now(), 1, "DecodeError", "bad payload", None)
        await db.complete_many([Completion(bad_bytes, 1, "discard", error=error)])
        assert (await db.get(bad_bytes)).errors == (error,)


async def test_a_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "no-such-dir" / "jobs.db")
    with pytest.raises(StoreError, match="unable to open"):
        await store.open()
    with pytest.raises(StoreClosed):
        await store.get(1)


async def test_memory_path_works_in_one_process() -> None:
    async with opened(SQLiteStore(":memory:")) as store:
        (job_id,) = await insert(store, job(b'{"x": 1}'))
        assert (await store.get(job_id)).payload == {"x": 1}


async def test_a_cancelled_fetch_puts_its_claimed_jobs_back(db: SQLiteStore) -> None:
    async with opened(db):
        ids = await insert(db, job(), job())
        task = asyncio.create_task(claim(db))
        await asyncio.sleep(0)  # the claim is queued on the connection thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Results come back in order: by the time stats returns, the claim's result has been
        # seen (and an undo queued); the next call runs after the undo.
        await db.stats()
        assert await db.stats() == {"default": {"available": 2}}
        again = await claim(db)
        assert sorted((j.id, j.attempt) for j in again) == [(i, 1) for i in ids]


def test_two_stores_on_one_file_claim_every_job_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    total = 2000

    async def setup() -> None:
        async with opened(SQLiteStore(path)) as store:
            for _ in range(total // 500):
                await store.insert_many([job() for _ in range(500)])

    asyncio.run(setup())
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(node: str) -> None:
        async def run() -> None:
            mine = claimed.setdefault(node, [])
            async with opened(SQLiteStore(path, busy_timeout=30)) as store:
                start.wait()
                while got := await claim(store, node, limit=25):
                    mine.extend(j.id for j in got)
                    done = [Completion(j.id, j.attempt, "completed") for j in got]
                    assert await store.complete_many(done) == [j.id for j in got]

        try:
            asyncio.run(run())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"node-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    every = claimed["node-0"] + claimed["node-1"]
    assert len(every) == total
    assert len(set(every)) == total

    async def check() -> dict[str, dict[str, int]]:
        async with opened(SQLiteStore(path)) as store:
            return await store.stats()

    assert asyncio.run(check()) == {"default": {"completed": total}}


# -- where SQLiteStore differs from MemoryStore and PostgresStore today. Each test pins today's
# behaviour so that a change is deliberate; the agreed part of each is in tests/driver/.


