"""The admin operations: get, list, retry, cancel, stats; JobNotFound and UniqueConflict with
their user-visible messages."""

from __future__ import annotations

from typing import Any

import pytest

from relaybus._driver import ListParams
from relaybus._errors import JobNotFound, UniqueConflict
from relaybus.testing import FakeClock

from ._support import (
    HANDLER,
    NO_RETRYABLE,
    S,
    claim,
    ended,
    errors_of,
    failure,
    get,
    insert,
    new_job,
    state_of,
)


async def test_admin_unknown_ids(store: Any) -> None:
    assert await store.get(12345) is None
    with pytest.raises(JobNotFound, match=r"^no job with id 12345$") as raised:
        await store.retry(12345)
    assert raised.value.job_id == 12345
    with pytest.raises(JobNotFound, match=r"^no job with id 12346$"):
        await store.cancel(12346)


async def test_get_is_a_snapshot_equal_to_the_listed_job(store: Any) -> None:
    (job_id,) = await insert(store, new_job({"k": "v"}, meta={"m": [1]}))
    found = await get(store, job_id)
    assert await store.list(ListParams()) == [found]
    assert await get(store, job_id) == found


# -- retry


async def test_admin_retry_of_a_discarded_job_makes_it_due_now(
    store: Any, clock: FakeClock
) -> None:
    (job_id,) = await insert(store, new_job(max_attempts=1))
    await claim(store)
    await store.complete_many([ended((job_id, 1), "discard", error=failure(clock, 1))])
    clock.advance(5)
    retried = await store.retry(job_id)
    assert retried.state is S.AVAILABLE
    assert (retried.attempt, retried.max_attempts) == (1, 2)
    assert retried.scheduled_at == clock.now()
    assert retried.finalized_at is None
    assert errors_of(retried) == [("ValueError", "boom", 1)]  # the history is kept
    assert await get(store, job_id) == retried
    assert await store.retry(job_id) == retried  # available: keeps its place
    assert [j.attempt for j in await claim(store)] == [2]


async def test_admin_retry_of_a_job_with_attempts_left_keeps_max_attempts(
    store: Any, clock: FakeClock
) -> None:
    completed, cancelled = await insert(store, new_job(max_attempts=3), new_job(max_attempts=3))
    await claim(store)
    await store.complete_many([ended((completed, 1)), ended((cancelled, 1), "cancel")])
    clock.advance(1)
    for job_id in (completed, cancelled):
        retried = await store.retry(job_id)
        assert (retried.state, retried.attempt, retried.max_attempts) == (S.AVAILABLE, 1, 3)
        assert (retried.scheduled_at, retried.finalized_at) == (clock.now(), None)


async def test_admin_retry_of_scheduled_and_retryable_jobs_makes_them_due_now(
    store: Any, clock: FakeClock
) -> None:
    scheduled, retryable = await insert(store, new_job(delay=3600), new_job())
    [run] = await claim(store)
    await store.complete_many([ended(run, "retry", error=failure(clock, 1), delay=600)])
    for job_id, attempt in ((scheduled, 0), (retryable, 1)):
        retried = await store.retry(job_id)
        assert (retried.state, retried.attempt, retried.scheduled_at) == (
            S.AVAILABLE,
            attempt,
            clock.now(),
        )
    assert sorted(c.id for c in await claim(store)) == [scheduled, retryable]


async def test_admin_retry_of_a_running_job_changes_nothing(store: Any) -> None:
    (job_id,) = await insert(store, new_job())
    [run] = await claim(store)
    before = await get(store, job_id)
    assert await store.retry(job_id) == before
    assert await store.complete_many([ended(run)]) == [job_id]


async def test_admin_retry_blocked_by_a_unique_holder_changes_nothing(
    store: Any, clock: FakeClock
) -> None:
    (first,) = await insert(store, new_job(key=b"k"))
    [run] = await claim(store)
    await store.complete_many([ended(run)])
    (holder,) = await insert(store, new_job(key=b"k"))
    before = await get(store, first)
    clock.advance(30)  # a retry would move scheduled_at to now
    with pytest.raises(UniqueConflict) as raised:
        await store.retry(first)
    assert (raised.value.job_id, raised.value.holder_id) == (first, holder)
    assert str(raised.value) == (
        f"job {first} conflicts with job {holder}, which holds its unique key"
    )
    assert await get(store, first) == before
    assert await state_of(store, holder) is S.AVAILABLE


async def test_admin_retry_of_a_cancelled_job_conflicts_with_its_holder(store: Any) -> None:
    key = b"r" * 32
    [a] = await store.insert_many([new_job({"n": 1}, key=key)])
    await store.cancel(a.id)
    [b] = await store.insert_many([new_job({"n": 2}, key=key)])
    with pytest.raises(UniqueConflict) as info:
        await store.retry(a.id)
    assert (info.value.job_id, info.value.holder_id) == (a.id, b.id)
    got = await get(store, a.id)
    assert got.state is S.CANCELLED
    assert await store.list(ListParams(state=S.CANCELLED)) == [got]


async def test_admin_retry_takes_the_key_back_when_it_is_free(store: Any) -> None:
    (first,) = await insert(store, new_job(key=b"k"))
    await store.cancel(first)
    assert (await store.retry(first)).state is S.AVAILABLE
    [dup] = await store.insert_many([new_job(key=b"k")])
    assert (dup.id, dup.outcome) == (first, "duplicate")


# -- cancel


async def test_admin_cancel(store: Any, clock: FakeClock) -> None:
    running, waiting = await insert(store, new_job(), new_job(delay=60))
    await claim(store)
    cancelled = await store.cancel(running)
    assert cancelled.state is S.CANCELLED
    assert cancelled.finalized_at == clock.now()
    assert errors_of(cancelled) == [("cancelled", "cancelled through the admin API", 1)]
    assert cancelled.errors[0].at == clock.now()
    assert cancelled.errors[0].traceback is None
    assert await store.complete_many([ended((running, 1))]) == []
    assert (await store.cancel(waiting)).state is S.CANCELLED
    assert await store.cancel(running) == cancelled  # terminal: unchanged
    assert await store.stats() == {"default": {"cancelled": 2}}


async def test_admin_cancel_of_each_pending_state(store: Any, clock: FakeClock) -> None:
    available, scheduled, retryable = await insert(
        store, new_job(), new_job(delay=60), new_job(priority=0)
    )
    [run] = await claim(store, limit=1)
    assert run.id == retryable
    await store.complete_many([ended(run, "retry", error=failure(clock, 1), delay=60)])
    clock.advance(1)
    for job_id, attempt in ((available, 0), (scheduled, 0), (retryable, 1)):
        cancelled = await store.cancel(job_id)
        assert (cancelled.state, cancelled.finalized_at) == (S.CANCELLED, clock.now())
        assert errors_of(cancelled)[-1] == ("cancelled", "cancelled through the admin API", attempt)
    assert await claim(store) == []


async def test_admin_cancel_of_a_finished_job_changes_nothing(store: Any, clock: FakeClock) -> None:
    completed, discarded = await insert(store, new_job(), new_job())
    await claim(store)
    await store.complete_many(
        [ended((completed, 1)), ended((discarded, 1), "discard", error=failure(clock, 1))]
    )
    clock.advance(10)
    for job_id in (completed, discarded):
        before = await get(store, job_id)
        assert await store.cancel(job_id) == before
        assert await get(store, job_id) == before


async def test_admin_cancel_frees_the_unique_key(store: Any) -> None:
    (first,) = await insert(store, new_job(key=b"k"))
    await store.cancel(first)
    [again] = await store.insert_many([new_job(key=b"k")])
    assert again.outcome == "inserted" and again.id != first


async def test_admin_cancel_while_another_job_holds_the_key(store: Any) -> None:
    """What every store agrees on; the final state differs (see test_sqlite_store.py)."""
    ever = NO_RETRYABLE | S.CANCELLED.bit
    [a] = await store.insert_many([new_job({"n": 1}, key=b"k", states=ever)])
    [run] = await claim(store)
    await store.complete_many([ended(run, "retry", delay=10)])
    [holder] = await store.insert_many([new_job({"n": 2}, key=b"k", states=ever)])
    assert holder.outcome == "inserted"
    cancelled = await store.cancel(a.id)
    assert errors_of(cancelled) == [("cancelled", "cancelled through the admin API", 1)]
    [again] = await store.insert_many([new_job({"n": 3}, key=b"k", states=ever)])
    assert (again.id, again.outcome) == (holder.id, "duplicate")  # never two holders


async def test_admin_cancel_while_another_job_holds_the_key_ends_cancelled(store: Any) -> None:
    """cancelled is in Unique.states, another job holds the key: the job ends cancelled and
    drops that state from its mask (every store: the rule is relaybus._jobrules.finish_keep_mask;
    SQLite kept the job's state before the shared SQL core)."""
    ever = NO_RETRYABLE | S.CANCELLED.bit
    [a] = await store.insert_many([new_job({"n": 1}, key=b"k", states=ever)])
    [run] = await claim(store)
    await store.complete_many([ended(run, "retry", delay=10)])
    [holder] = await store.insert_many([new_job({"n": 2}, key=b"k", states=ever)])
    cancelled = await store.cancel(a.id)
    assert (cancelled.state, cancelled.attempt) == (S.CANCELLED, 1)
    [run] = await claim(store)
    assert run.id == holder.id
    await store.complete_many([ended(run)])  # completed does not block: the key is free
    [fresh] = await store.insert_many([new_job({"n": 4}, key=b"k", states=ever)])
    assert fresh.outcome == "inserted"


# -- list and stats


async def test_list_filters_and_stats(store: Any) -> None:
    a, b, c = await insert(store, new_job(queue="mail"), new_job(), new_job(queue="mail"))
    await claim(store)
    mail = await store.list(ListParams(queue="mail"))
    assert [j.id for j in mail] == [a, c]
    assert [j.id for j in await store.list(ListParams(state=S.RUNNING))] == [b]
    assert [j.id for j in await store.list(ListParams(limit=2))] == [a, b]
    assert await store.list(ListParams(handler="nope")) == []
    assert await store.stats() == {"mail": {"available": 2}, "default": {"running": 1}}


async def test_list_combines_its_filters(store: Any) -> None:
    ids = await insert(
        store,
        new_job(queue="q"),
        new_job(queue="q", handler="other.handler"),
        new_job(queue="r"),
        new_job(queue="q"),
        new_job(queue="q", delay=60),
    )
    listed = await store.list(ListParams(state=S.AVAILABLE, queue="q", handler=HANDLER))
    assert [j.id for j in listed] == [ids[0], ids[3]]
    assert [j.handler for j in await store.list(ListParams(handler="other.handler"))] == [
        "other.handler"
    ]
    assert [j.id for j in await store.list(ListParams(queue="q", limit=1))] == [ids[0]]
    assert [j.id for j in await store.list(ListParams(state=S.SCHEDULED))] == [ids[4]]


async def test_stats_count_every_state_per_queue(store: Any, clock: FakeClock) -> None:
    await insert(store, *(new_job(queue="a") for _ in range(4)), new_job(queue="b", delay=9))
    runs = await claim(store, queue="a", limit=3)
    await store.complete_many(
        [ended(runs[0]), ended(runs[1], "retry", error=failure(clock, 1), delay=5)]
    )
    assert await store.stats() == {
        "a": {"available": 1, "running": 1, "completed": 1, "retryable": 1},
        "b": {"scheduled": 1},
    }


async def test_list_with_limit_zero_lists_nothing(store: Any) -> None:
    await insert(store, new_job(), new_job())
    assert await store.list(ListParams(limit=0)) == []
