"""stage: due scheduled and retryable jobs become available; a job coming back into a blocking
state while another holds its unique key is discarded with a ``unique_conflict`` error."""

from __future__ import annotations

from typing import Any

from relaybus._driver import StageParams
from relaybus.testing import FakeClock

from ._support import (
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


async def test_stage_makes_due_jobs_available(store: Any, clock: FakeClock) -> None:
    soon, later = await insert(store, new_job(queue="mail", delay=10), new_job(delay=100))
    assert await store.stage(StageParams()) == []
    clock.advance(9)
    assert await store.stage(StageParams()) == []
    clock.advance(1)
    assert await store.stage(StageParams()) == ["mail"]
    assert await state_of(store, soon) is S.AVAILABLE
    assert await state_of(store, later) is S.SCHEDULED
    assert await store.stage(StageParams()) == []  # nothing more is due


async def test_stage_makes_due_retryable_jobs_available_and_keeps_their_attempt(
    store: Any, clock: FakeClock
) -> None:
    (job_id,) = await insert(store, new_job(queue="b"))
    [run] = await claim(store, queue="b")
    await store.complete_many([ended(run, "retry", error=failure(clock, 1), delay=30)])
    (snoozed,) = await insert(store, new_job(queue="a"))
    [run] = await claim(store, queue="a")
    await store.complete_many([ended(run, "snooze", delay=30)])
    await insert(store, new_job(queue="c", delay=31))
    clock.advance(30)
    assert await store.stage(StageParams()) == ["a", "b"]  # sorted, each queue once
    found = await get(store, job_id)
    assert (found.state, found.attempt, found.scheduled_at) == (
        S.AVAILABLE,
        1,
        clock.now(),
    )
    assert errors_of(found) == [("ValueError", "boom", 1)]
    assert [c.attempt for c in await claim(store, queue="b")] == [2]
    assert [(c.id, c.attempt) for c in await claim(store, queue="a")] == [(snoozed, 1)]


async def test_stage_returns_each_queue_once(store: Any, clock: FakeClock) -> None:
    await insert(store, *(new_job(queue=q, delay=5) for q in ("z", "a", "z", "m", "a")))
    clock.advance(5)
    assert await store.stage(StageParams()) == ["a", "m", "z"]


async def test_stage_limit_bounds_a_round(store: Any, clock: FakeClock) -> None:
    ids = await insert(store, *(new_job(delay=5) for _ in range(5)))
    clock.advance(5)
    assert await store.stage(StageParams(limit=2)) == ["default"]
    states = [await state_of(store, i) for i in ids]
    assert states.count(S.AVAILABLE) == 2 and states.count(S.SCHEDULED) == 3
    assert await store.stage(StageParams(limit=2)) == ["default"]
    assert await store.stage(StageParams(limit=2)) == ["default"]
    assert await store.stage(StageParams(limit=2)) == []
    assert await store.stats() == {"default": {"available": 5}}


async def test_stage_discards_a_job_whose_unique_key_was_taken(
    store: Any, clock: FakeClock
) -> None:
    (first,) = await insert(store, new_job(key=b"k", states=NO_RETRYABLE))
    [run] = await claim(store)
    retry = ended(run, "retry", error=failure(clock, 1), delay=10)
    assert await store.complete_many([retry]) == [first]
    # retryable does not hold the key here, so a new job takes it
    [second] = await store.insert_many([new_job(key=b"k", states=NO_RETRYABLE)])
    assert second.outcome == "inserted"
    (plain,) = await insert(store, new_job(delay=10))
    clock.advance(10)
    assert await store.stage(StageParams()) == ["default"]
    lost = await get(store, first)
    assert lost.state is S.DISCARDED
    assert lost.finalized_at == clock.now()
    assert errors_of(lost) == [
        ("ValueError", "boom", 1),
        ("unique_conflict", f"job {second.id} holds this job's unique key", 1),
    ]
    assert lost.errors[-1].at == clock.now()
    assert await state_of(store, second.id) is S.AVAILABLE
    assert await state_of(store, plain) is S.AVAILABLE


async def test_stage_discards_retryable_jobs_whose_key_is_held(
    store: Any, clock: FakeClock
) -> None:
    key = b"c" * 32
    # Two jobs with the key, retryable outside their unique states (they hold nothing).
    [a] = await store.insert_many([new_job({"n": 1}, key=key, states=NO_RETRYABLE)])
    [c] = await claim(store)
    await store.complete_many([ended(c, "retry", delay=10)])
    [b] = await store.insert_many([new_job({"n": 2}, key=key, states=NO_RETRYABLE)])
    [c] = await claim(store)
    await store.complete_many([ended(c, "retry", delay=20)])
    [holder] = await store.insert_many([new_job({"n": 3}, key=key, states=NO_RETRYABLE)])
    assert holder.outcome == "inserted"
    clock.advance(30)
    assert await store.stage(StageParams()) == []  # nothing became available
    for job_id in (a.id, b.id):
        got = await get(store, job_id)
        assert got.state is S.DISCARDED
        assert errors_of(got) == [
            ("unique_conflict", f"job {holder.id} holds this job's unique key", 1)
        ]
    assert await state_of(store, holder.id) is S.AVAILABLE


async def test_stage_within_one_round_keeps_the_first_and_discards_the_rest(
    store: Any, clock: FakeClock
) -> None:
    key = b"d" * 32
    ids = []
    for n, delay in ((1, 10), (2, 20)):
        [r] = await store.insert_many([new_job({"n": n}, key=key, states=NO_RETRYABLE)])
        [c] = await claim(store)
        await store.complete_many([ended(c, "retry", delay=delay)])
        ids.append(r.id)
    clock.advance(30)
    assert await store.stage(StageParams()) == ["default"]
    first, second = await get(store, ids[0]), await get(store, ids[1])
    assert first.state is S.AVAILABLE
    assert second.state is S.DISCARDED
    assert errors_of(second) == [
        ("unique_conflict", f"job {ids[0]} holds this job's unique key", 1)
    ]


async def test_a_terminal_state_in_unique_states_never_makes_a_second_holder(
    store: Any, clock: FakeClock
) -> None:
    """discarded blocks here, yet a job discarded by stage for a conflict must not hold the
    key next to the holder: once the holder completes (completed does not block), the key is
    free again."""
    states = NO_RETRYABLE | S.DISCARDED.bit
    [lost] = await store.insert_many([new_job({"n": 1}, key=b"k", states=states)])
    [run] = await claim(store)
    await store.complete_many([ended(run, "retry", delay=10)])
    [holder] = await store.insert_many([new_job({"n": 2}, key=b"k", states=states)])
    assert holder.outcome == "inserted"
    clock.advance(10)
    assert await store.stage(StageParams()) == []
    assert await state_of(store, lost.id) is S.DISCARDED
    [dup] = await store.insert_many([new_job({"n": 3}, key=b"k", states=states)])
    assert (dup.id, dup.outcome) == (holder.id, "duplicate")
    [run] = await claim(store)
    assert run.id == holder.id
    await store.complete_many([ended(run)])
    [fresh] = await store.insert_many([new_job({"n": 4}, key=b"k", states=states)])
    assert fresh.outcome == "inserted"
    assert fresh.id not in (lost.id, holder.id)
