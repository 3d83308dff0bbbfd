"""rescue: running jobs of expired nodes, and jobs past their timeout + grace, go back to
retryable (due now) with a ``rescued`` error; discarded when attempts are exhausted, or as
``worker_lost`` once rescued max_rescues times. Fenced: a job that just completed is left."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from relaybus._driver import RescueParams, StageParams
from relaybus.testing import FakeClock

from ._support import (
    S,
    beat,
    claim,
    ended,
    errors_of,
    get,
    insert,
    new_job,
    rescue,
    state_of,
)


async def test_rescue_returns_jobs_of_a_node_that_never_heartbeats(
    store: Any, clock: FakeClock
) -> None:
    alive_job, ghost_job = await insert(store, new_job(), new_job())
    await claim(store, "alive", limit=1)
    await claim(store, "ghost", limit=1)
    assert await beat(store, "alive", [(alive_job, 1)]) == []
    assert await rescue(store) == 1
    rescued = await get(store, ghost_job)
    assert rescued.state is S.RETRYABLE
    assert rescued.scheduled_at == clock.now()
    assert rescued.finalized_at is None
    assert errors_of(rescued) == [
        ("rescued", "the lease of node ghost expired while it ran attempt 1", 1)
    ]
    assert rescued.errors[-1].at == clock.now()
    assert rescued.errors[-1].traceback is None
    assert await state_of(store, alive_job) is S.RUNNING
    # the ghost's late completion is stale
    assert await store.complete_many([ended((ghost_job, 1))]) == []
    clock.advance(31)  # the live node's heartbeat expires too
    assert await rescue(store) == 1
    assert await state_of(store, alive_job) is S.RETRYABLE
    assert await store.stage(StageParams()) == ["default"]
    again = await claim(store, "alive")
    assert sorted((j.id, j.attempt, j.rescues) for j in again) == [
        (alive_job, 2, 1),
        (ghost_job, 2, 1),
    ]


async def test_rescue_expired_node_and_fencing(store: Any, clock: FakeClock) -> None:
    await insert(store, new_job(max_attempts=1), new_job(), new_job())
    claimed = await claim(store, "dead")
    assert await beat(store, "dead", [(c.id, 1) for c in claimed]) == []
    await beat(store, "live")
    assert await rescue(store) == 0
    clock.advance(31)
    await beat(store, "live")
    done = claimed[2]
    assert await store.complete_many([ended(done)]) == [done.id]
    assert await rescue(store) == 2
    exhausted, retried, completed = [await get(store, c.id) for c in claimed]
    assert exhausted.state is S.DISCARDED
    assert exhausted.finalized_at == clock.now()
    assert errors_of(exhausted) == [
        ("rescued", "the lease of node dead expired while it ran attempt 1; attempts exhausted", 1)
    ]
    assert retried.state is S.RETRYABLE
    assert retried.scheduled_at == clock.now()
    assert errors_of(retried) == [
        ("rescued", "the lease of node dead expired while it ran attempt 1", 1)
    ]
    assert completed.state is S.COMPLETED  # fenced: not touched
    assert completed.errors == ()
    lost = await beat(store, "dead", [(c.id, 1) for c in claimed])
    assert sorted(lost) == sorted(c.id for c in claimed)
    assert await rescue(store) == 0  # nothing is running any more


async def test_rescue_of_a_job_past_its_timeout_plus_grace(store: Any, clock: FakeClock) -> None:
    slow, last, patient = await insert(
        store, new_job(), new_job(max_attempts=1), new_job(timeout=None)
    )
    await claim(store, "busy")
    await beat(store, "busy", ttl=1000)
    clock.advance(60 + 5)  # timeout 60 + grace 5: not past it yet
    assert await rescue(store, grace=5) == 0
    clock.advance(1)
    assert await rescue(store, grace=5) == 2
    timed_out, exhausted = await get(store, slow), await get(store, last)
    assert (timed_out.state, timed_out.scheduled_at) == (S.RETRYABLE, clock.now())
    assert errors_of(timed_out) == [("rescued", "attempt 1 ran past its timeout plus grace", 1)]
    assert exhausted.state is S.DISCARDED
    assert errors_of(exhausted) == [
        ("rescued", "attempt 1 ran past its timeout plus grace; attempts exhausted", 1)
    ]
    # no timeout: only a lost node brings it back
    clock.advance(900)
    assert await rescue(store, grace=5) == 0
    assert await state_of(store, patient) is S.RUNNING


async def test_rescue_timeouts_then_worker_lost(store: Any, clock: FakeClock) -> None:
    (job_id,) = await insert(store, new_job(max_attempts=5, timeout=30))
    for rescues in range(1, 4):
        [c] = await claim(store, "n", idle=True, isolate_after=10)
        assert (c.id, c.attempt, c.rescues) == (job_id, rescues, rescues - 1)
        await beat(store, "n", ttl=3600)
        clock.advance(36)  # timeout 30 + grace 5 passed
        assert await rescue(store, grace=5, max_rescues=3) == 1
        got = await get(store, job_id)
        message = f"attempt {rescues} ran past its timeout plus grace"
        if rescues < 3:
            assert got.state is S.RETRYABLE
            assert errors_of(got)[-1] == ("rescued", message, rescues)
            assert await store.stage(StageParams()) == ["default"]
        else:
            assert got.state is S.DISCARDED
            assert got.finalized_at == clock.now()
            assert errors_of(got)[-1] == ("worker_lost", f"{message}; rescued 3 times", 3)
    assert [kind for kind, _, _ in errors_of(got)] == ["rescued", "rescued", "worker_lost"]


async def test_a_job_rescued_max_rescues_times_is_discarded_as_worker_lost(
    store: Any,
) -> None:
    (poison,) = await insert(store, new_job(max_attempts=10))
    for _ in range(2):
        await claim(store, "ghost")
        assert await rescue(store, grace=0, max_rescues=2) == 1
        await store.stage(StageParams())
    found = await get(store, poison)
    assert found.state is S.DISCARDED
    assert errors_of(found) == [
        ("rescued", "the lease of node ghost expired while it ran attempt 1", 1),
        (
            "worker_lost",
            "the lease of node ghost expired while it ran attempt 2; rescued 2 times",
            2,
        ),
    ]


async def test_worker_lost_wins_over_exhausted_attempts(store: Any) -> None:
    (job_id,) = await insert(store, new_job(max_attempts=1))
    await claim(store, "ghost")
    assert await rescue(store, max_rescues=1) == 1
    found = await get(store, job_id)
    assert found.state is S.DISCARDED
    assert errors_of(found) == [
        (
            "worker_lost",
            "the lease of node ghost expired while it ran attempt 1; rescued 1 times",
            1,
        )
    ]


async def test_rescues_are_counted_across_runs(store: Any, clock: FakeClock) -> None:
    (job_id,) = await insert(store, new_job(max_attempts=10))
    await claim(store, "ghost")
    assert await rescue(store) == 1
    await store.stage(StageParams())
    [run] = await claim(store, "n1")
    assert (run.id, run.attempt, run.rescues) == (job_id, 2, 1)
    # a run that ends normally does not reset the count
    await store.complete_many([ended(run, "retry", delay=0)])
    [run] = await claim(store, "ghost-2")
    assert (run.attempt, run.rescues) == (3, 1)
    assert await rescue(store) == 1
    await store.stage(StageParams())
    [run] = await claim(store, "n1", isolate_after=3)
    assert (run.attempt, run.rescues) == (4, 2)


async def test_rescue_limit_bounds_a_round(store: Any) -> None:
    ids = await insert(store, *(new_job() for _ in range(5)))
    await claim(store, "ghost")
    assert await rescue(store, limit=2) == 2
    assert await rescue(store, limit=2) == 2
    assert await rescue(store, limit=2) == 1
    assert await rescue(store, limit=2) == 0
    assert [await state_of(store, i) for i in ids] == [S.RETRYABLE] * 5


async def test_a_rescued_job_is_due_at_once_for_every_node(store: Any, clock: FakeClock) -> None:
    (job_id,) = await insert(store, new_job(at=clock.now() - timedelta(hours=1)))
    await claim(store, "ghost")
    clock.advance(5)
    assert await rescue(store) == 1
    found = await get(store, job_id)
    assert found.scheduled_at == clock.now()
    assert await store.stage(StageParams()) == ["default"]
    assert [c.id for c in await claim(store, "n2")] == [job_id]


async def test_rescue_returns_what_it_ended(store: Any, clock: FakeClock) -> None:
    kept, last = await insert(
        store, new_job(handler="h.kept", queue="q1"), new_job(handler="h.last", max_attempts=1)
    )
    await claim(store, "dead", queue="q1")
    await claim(store, "dead")
    rescued = await store.rescue(RescueParams(grace=5, max_rescues=3))
    assert sorted((r.id, r.handler, r.queue, r.attempt, r.state) for r in rescued) == [
        (kept, "h.kept", "q1", 1, S.RETRYABLE),
        (last, "h.last", "default", 1, S.DISCARDED),
    ]
    assert await store.rescue(RescueParams(grace=5, max_rescues=3)) == []
