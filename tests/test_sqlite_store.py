"""Store-level tests of the Driver operations, on MemoryStore and SQLiteStore alike, plus what only
SQLite has: migrations, the schema file at the repository root, corrupted rows, several
connections on one file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from relaybus._driver import (
    Completion,
    FetchParams,
    HeartbeatParams,
    ListParams,
    NewJob,
    PruneParams,
    RescueParams,
    StageParams,
)
from relaybus._errors import (
    ConfigurationError,
    JobNotFound,
    StoreClosed,
    StoreError,
    UniqueConflict,
)
from relaybus._types import PENDING_STATES, JobError, JobState, state_mask
from relaybus.cli import full_schema
from relaybus.stores._sql.queries import load_migrations, load_queries, render
from relaybus.stores.sqlite import SQLiteStore
from relaybus.testing import FakeClock

S = JobState
ROOT = Path(__file__).resolve().parent.parent
PENDING = state_mask(PENDING_STATES)
NO_RETRYABLE = state_mask({S.SCHEDULED, S.AVAILABLE, S.RUNNING})


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


async def state_of(store: Any, job_id: int) -> JobState:
    found = await store.get(job_id)
    assert found is not None
    return JobState(found.state)


def failure(clock: FakeClock, attempt: int, message: str = "boom") -> JobError:
    return JobError(clock.now(), attempt, "ValueError", message, "Traceback ...")


# -- producing and fetching


async def test_fetch_order_is_priority_then_scheduled_at_then_id(store, clock) -> None:
    now = clock.now()
    async with opened(store):
        a, b, c, d, e = await insert(
            store,
            job(b'"a"', priority=2, at=now - timedelta(seconds=10)),
            job(b'"b"', priority=1, at=now),
            job(b'"c"', priority=2, at=now - timedelta(seconds=20)),
            job(b'"d"', priority=2, at=now - timedelta(seconds=10)),
            job(b'"e"', priority=1, at=now - timedelta(seconds=5)),
        )
        assert a < b < c < d < e
        first = await claim(store, limit=2)
        rest = await claim(store, limit=10)
        assert [j.id for j in first] == [e, b]
        assert [j.id for j in rest] == [c, a, d]
        assert [j.payload for j in first + rest] == [b'"e"', b'"b"', b'"c"', b'"a"', b'"d"']
        assert all(j.attempt == 1 for j in first + rest)
        assert await claim(store) == []
        found = await store.get(c)
        assert found.state is S.RUNNING
        assert found.attempted_by == "node-a"
        assert found.attempted_at == clock.now()
        assert found.scheduled_at == now - timedelta(seconds=20)


async def test_fetch_takes_only_its_queue_and_due_jobs(store, clock) -> None:
    async with opened(store):
        mail, later, default = await insert(
            store, job(queue="mail"), job(delay=30), job(meta=b'{"m": 1}')
        )
        got = await claim(store)
        assert [j.id for j in got] == [default]
        assert got[0].meta == {"m": 1}
        assert await state_of(store, later) is S.SCHEDULED
        assert await state_of(store, mail) is S.AVAILABLE


async def test_batch_insert_keeps_input_order_and_applies_unique_entries_in_order(store) -> None:
    replace = {S.AVAILABLE: ("payload",)}
    async with opened(store):
        results = await store.insert_many(
            [
                job(b'{"n": 1}'),
                job(b'{"v": 1}', key=b"k", replace=replace),
                job(b'{"n": 2}'),
                job(b'{"v": 2}', key=b"k", replace=replace),  # replaces the entry above
                job(b'{"v": 3}', key=b"k"),  # no Replace: a duplicate
                job(b'{"v": 4}', key=b"other"),
                job(b'{"n": 3}'),
            ]
        )
        outcomes = [r.outcome for r in results]
        assert outcomes == [
            "inserted",
            "inserted",
            "inserted",
            "replaced",
            "duplicate",
            "inserted",
            "inserted",
        ]
        ids = [r.id for r in results]
        assert ids[3] == ids[4] == ids[1]
        inserted = [ids[i] for i in (0, 1, 2, 5, 6)]
        assert inserted == sorted(inserted)
        assert len(set(inserted)) == 5
        unique = await store.get(ids[1])
        assert unique.payload == {"v": 2}
        listed = await store.list(ListParams())
        assert [j.id for j in listed] == inserted


async def test_replace_scheduled_at_moves_an_available_job_to_scheduled(store, clock) -> None:
    replace = {S.AVAILABLE: ("scheduled_at", "priority")}
    async with opened(store):
        (first,) = await insert(store, job(key=b"k", replace=replace))
        [result] = await store.insert_many([job(key=b"k", replace=replace, priority=0, delay=60)])
        assert (result.id, result.outcome) == (first, "replaced")
        found = await store.get(first)
        assert found.state is S.SCHEDULED
        assert found.priority == 0
        assert found.scheduled_at == clock.now() + timedelta(seconds=60)


async def test_a_running_job_is_never_replaced(store) -> None:
    replace = {S.AVAILABLE: ("payload",)}
    async with opened(store):
        (first,) = await insert(store, job(b"1", key=b"k", replace=replace))
        await claim(store)
        [result] = await store.insert_many([job(b"2", key=b"k", replace=replace)])
        assert (result.id, result.outcome) == (first, "duplicate")
        assert (await store.get(first)).payload == 1


async def test_conn_is_refused_and_a_closed_store_raises(store) -> None:
    with pytest.raises(StoreClosed):
        await store.insert_many([job()])
    async with opened(store):
        with pytest.raises(StoreError):
            await store.insert_many([job()], conn=object())
    with pytest.raises(StoreClosed):
        await store.get(1)


# -- completing


async def test_complete_many_is_a_compare_and_set_on_id_state_and_attempt(store, clock) -> None:
    async with opened(store):
        a, b = await insert(store, job(), job())
        await claim(store)
        stale = [Completion(a, attempt=2, kind="completed"), Completion(999, 1, "completed")]
        assert await store.complete_many(stale) == []
        assert await state_of(store, a) is S.RUNNING
        done = [
            Completion(a, 1, "completed"),
            Completion(b, 1, "retry", error=failure(clock, 1), delay=30),
        ]
        assert await store.complete_many(done) == [a, b]
        assert await store.complete_many(done) == []  # applied once only
        completed, retried = await store.get(a), await store.get(b)
        assert completed.state is S.COMPLETED
        assert completed.finalized_at == clock.now()
        assert retried.state is S.RETRYABLE
        assert retried.scheduled_at == clock.now() + timedelta(seconds=30)
        assert retried.finalized_at is None
        assert [(e.kind, e.message, e.attempt) for e in retried.errors] == [
            ("ValueError", "boom", 1)
        ]


async def test_snooze_and_return_refund_the_attempt(store, clock) -> None:
    async with opened(store):
        a, b = await insert(store, job(), job())
        await claim(store)
        applied = await store.complete_many(
            [Completion(a, 1, "snooze", delay=10), Completion(b, 1, "return")]
        )
        assert applied == [a, b]
        snoozed, returned = await store.get(a), await store.get(b)
        assert (snoozed.state, snoozed.attempt, snoozed.errors) == (S.SCHEDULED, 0, ())
        assert (returned.state, returned.attempt, returned.errors) == (S.AVAILABLE, 0, ())
        assert [j.attempt for j in await claim(store)] == [1]


async def test_cancel_and_discard_completions_record_the_reason(store, clock) -> None:
    async with opened(store):
        a, b = await insert(store, job(), job())
        await claim(store)
        reason = JobError(clock.now(), 1, "Cancel", "no longer wanted", None)
        await store.complete_many(
            [Completion(a, 1, "cancel", error=reason), Completion(b, 1, "discard", error=reason)]
        )
        cancelled, discarded = await store.get(a), await store.get(b)
        assert cancelled.state is S.CANCELLED
        assert discarded.state is S.DISCARDED
        assert cancelled.errors == discarded.errors == (reason,)


# -- staging and unique keys on transitions


async def test_stage_makes_due_jobs_available(store, clock) -> None:
    async with opened(store):
        soon, later = await insert(store, job(queue="mail", delay=10), job(delay=100))
        assert await store.stage(StageParams()) == []
        clock.advance(10)
        assert await store.stage(StageParams()) == ["mail"]
        assert await state_of(store, soon) is S.AVAILABLE
        assert await state_of(store, later) is S.SCHEDULED


async def test_stage_discards_a_job_whose_unique_key_was_taken(store, clock) -> None:
    async with opened(store):
        (first,) = await insert(store, job(key=b"k", states=NO_RETRYABLE))
        await claim(store)
        retry = Completion(first, 1, "retry", error=failure(clock, 1), delay=10)
        assert await store.complete_many([retry]) == [first]
        # retryable does not hold the key here, so a new job takes it
        [second] = await store.insert_many([job(key=b"k", states=NO_RETRYABLE)])
        assert second.outcome == "inserted"
        (plain,) = await insert(store, job(delay=10))
        clock.advance(10)
        assert await store.stage(StageParams()) == ["default"]
        lost = await store.get(first)
        assert lost.state is S.DISCARDED
        assert lost.finalized_at == clock.now()
        assert lost.errors[-1].kind == "unique_conflict"
        assert str(second.id) in lost.errors[-1].message
        assert await state_of(store, second.id) is S.AVAILABLE
        assert await state_of(store, plain) is S.AVAILABLE


async def test_a_finished_job_frees_its_unique_key(store) -> None:
    async with opened(store):
        (first,) = await insert(store, job(key=b"k"))
        await claim(store)
        await store.complete_many([Completion(first, 1, "completed")])
        [again] = await store.insert_many([job(key=b"k")])
        assert again.outcome == "inserted"
        assert again.id != first


# -- nodes, rescue and isolation


async def test_rescue_returns_jobs_of_a_node_that_never_heartbeats(store, clock) -> None:
    rescue = RescueParams(grace=5, max_rescues=3)
    async with opened(store):
        alive_job, ghost_job = await insert(store, job(), job())
        await claim(store, "alive", limit=1)
        await claim(store, "ghost", limit=1)
        assert (
            await store.heartbeat(HeartbeatParams("alive", ttl=30, running=[(alive_job, 1)])) == []
        )
        assert await store.rescue(rescue) == 1
        rescued = await store.get(ghost_job)
        assert rescued.state is S.RETRYABLE
        assert rescued.scheduled_at == clock.now()
        assert rescued.errors[-1].kind == "rescued"
        assert "ghost" in rescued.errors[-1].message
        assert await state_of(store, alive_job) is S.RUNNING
        # the ghost's late completion is stale
        assert await store.complete_many([Completion(ghost_job, 1, "completed")]) == []
        clock.advance(31)  # the live node's heartbeat expires too
        assert await store.rescue(rescue) == 1
        assert await state_of(store, alive_job) is S.RETRYABLE
        assert await store.stage(StageParams()) == ["default"]
        again = await claim(store, "alive")
        assert sorted((j.id, j.attempt, j.rescues) for j in again) == [
            (alive_job, 2, 1),
            (ghost_job, 2, 1),
        ]


async def test_rescue_of_a_job_past_its_timeout_and_of_exhausted_attempts(store, clock) -> None:
    async with opened(store):
        slow, last = await insert(store, job(), job(max_attempts=1))
        await claim(store, "busy")
        await store.heartbeat(HeartbeatParams("busy", ttl=1000))
        clock.advance(60 + 5)
        assert await store.rescue(RescueParams(grace=5, max_rescues=3)) == 0
        clock.advance(1)
        assert await store.rescue(RescueParams(grace=5, max_rescues=3)) == 2
        timed_out, exhausted = await store.get(slow), await store.get(last)
        assert timed_out.state is S.RETRYABLE
        assert "timeout" in timed_out.errors[-1].message
        assert exhausted.state is S.DISCARDED
        assert "attempts exhausted" in exhausted.errors[-1].message


async def test_a_job_rescued_max_rescues_times_is_discarded_as_worker_lost(store) -> None:
    async with opened(store):
        (poison,) = await insert(store, job(max_attempts=10))
        for _ in range(2):
            await claim(store, "ghost")
            assert await store.rescue(RescueParams(grace=0, max_rescues=2)) == 1
            await store.stage(StageParams())
        found = await store.get(poison)
        assert found.state is S.DISCARDED
        assert found.errors[-1].kind == "worker_lost"


async def test_isolated_jobs_run_alone_and_only_when_idle(store) -> None:
    rescue = RescueParams(grace=0, max_rescues=5)
    async with opened(store):
        iso1, iso2 = await insert(store, job(priority=1), job(priority=1))
        for _ in range(2):
            assert len(await claim(store, "ghost")) == 2
            assert await store.rescue(rescue) == 2
            await store.stage(StageParams())
        (normal,) = await insert(store, job(priority=3))
        assert [j.id for j in await claim(store, idle=False, isolate=2)] == [normal]
        assert [j.id for j in await claim(store, idle=False, isolate=2)] == []
        alone = await claim(store, idle=True, isolate=2)
        assert [(j.id, j.rescues) for j in alone] == [(iso1, 2)]
        assert [j.id for j in await claim(store, idle=True, isolate=2)] == [iso2]


async def test_isolated_job_behind_a_normal_one_waits(store) -> None:
    async with opened(store):
        (suspect,) = await insert(store, job(priority=3))
        await claim(store, "ghost")
        await store.rescue(RescueParams(grace=0, max_rescues=5))
        await store.stage(StageParams())
        (normal,) = await insert(store, job(priority=1))
        # idle, but the first job in line is a normal one: take it, not the suspect
        assert [j.id for j in await claim(store, idle=True, isolate=1)] == [normal]
        assert [j.id for j in await claim(store, idle=True, isolate=1)] == [suspect]


async def test_heartbeat_reports_jobs_no_longer_running_there(store) -> None:
    async with opened(store):
        a, b, c = await insert(store, job(), job(), job())
        await claim(store, "n1", limit=2)
        await claim(store, "n2", limit=1)
        await store.cancel(b)
        running = [(a, 1), (b, 1), (c, 1), (a, 2)]
        lost = await store.heartbeat(HeartbeatParams("n1", ttl=30, running=running))
        assert lost == [b, c, a]


async def test_elect_resign_and_release(store, clock) -> None:
    from relaybus._driver import ElectParams

    async with opened(store):
        assert await store.elect(ElectParams("n1", ttl=10))
        assert not await store.elect(ElectParams("n2", ttl=10))
        assert await store.elect(ElectParams("n1", ttl=10))  # renews
        clock.advance(10)
        assert await store.elect(ElectParams("n2", ttl=10))  # the lease ran out
        await store.resign("n1")  # not the leader: nothing happens
        assert not await store.elect(ElectParams("n1", ttl=10))
        await store.release_node("n2")
        assert await store.elect(ElectParams("n1", ttl=10))


# -- pruning


async def test_prune_deletes_finished_jobs_past_their_retention(store, clock) -> None:
    retention = {S.COMPLETED: 50.0, S.CANCELLED: 200.0, S.DISCARDED: 50.0}
    async with opened(store):
        pending, done, gone, kept = await insert(store, job(delay=1000), job(), job(), job())
        await claim(store, limit=2)
        await store.complete_many(
            [Completion(done, 1, "completed"), Completion(gone, 1, "discard")]
        )
        await store.cancel(kept)
        clock.advance(49)
        assert await store.prune(PruneParams(retention)) == 0
        clock.advance(1)
        assert await store.prune(PruneParams(retention, limit=1)) == 1
        assert await store.prune(PruneParams(retention)) == 1
        assert await store.get(done) is None
        assert await store.get(gone) is None
        assert await state_of(store, kept) is S.CANCELLED
        clock.advance(150)
        assert await store.prune(PruneParams(retention)) == 1
        assert await store.get(kept) is None
        assert await state_of(store, pending) is S.SCHEDULED
        assert await insert(store, job()) == [kept + 1]  # ids are never reused


# -- admin


async def test_admin_unknown_ids(store) -> None:
    async with opened(store):
        assert await store.get(12345) is None
        with pytest.raises(JobNotFound):
            await store.retry(12345)
        with pytest.raises(JobNotFound):
            await store.cancel(12345)


async def test_admin_retry_of_a_discarded_job_makes_it_due_now(store, clock) -> None:
    async with opened(store):
        (job_id,) = await insert(store, job(max_attempts=1))
        await claim(store)
        await store.complete_many([Completion(job_id, 1, "discard", error=failure(clock, 1))])
        clock.advance(5)
        retried = await store.retry(job_id)
        assert retried.state is S.AVAILABLE
        assert (retried.attempt, retried.max_attempts) == (1, 2)
        assert retried.scheduled_at == clock.now()
        assert retried.finalized_at is None
        assert len(retried.errors) == 1
        assert await store.retry(job_id) == retried  # available: keeps its place
        assert [j.attempt for j in await claim(store)] == [2]


async def test_admin_retry_blocked_by_a_unique_holder_changes_nothing(store) -> None:
    async with opened(store):
        (first,) = await insert(store, job(key=b"k"))
        await claim(store)
        await store.complete_many([Completion(first, 1, "completed")])
        (holder,) = await insert(store, job(key=b"k"))
        before = await store.get(first)
        with pytest.raises(UniqueConflict) as raised:
            await store.retry(first)
        assert (raised.value.job_id, raised.value.holder_id) == (first, holder)
        assert await store.get(first) == before


async def test_admin_cancel(store, clock) -> None:
    async with opened(store):
        running, waiting = await insert(store, job(), job(delay=60))
        await claim(store)
        cancelled = await store.cancel(running)
        assert cancelled.state is S.CANCELLED
        assert cancelled.finalized_at == clock.now()
        assert [(e.kind, e.attempt) for e in cancelled.errors] == [("cancelled", 1)]
        assert await store.complete_many([Completion(running, 1, "completed")]) == []
        assert (await store.cancel(waiting)).state is S.CANCELLED
        assert await store.cancel(running) == cancelled  # terminal: unchanged
        assert await store.stats() == {"default": {"cancelled": 2}}


async def test_list_filters_and_stats(store) -> None:
    async with opened(store):
        a, b, c = await insert(store, job(queue="mail"), job(), job(queue="mail"))
        await claim(store)
        mail = await store.list(ListParams(queue="mail"))
        assert [j.id for j in mail] == [a, c]
        assert [j.id for j in await store.list(ListParams(state=S.RUNNING))] == [b]
        assert [j.id for j in await store.list(ListParams(limit=2))] == [a, b]
        assert await store.list(ListParams(handler="nope")) == []
        assert await store.stats() == {"mail": {"available": 2}, "default": {"running": 1}}


# -- SQLite only


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
