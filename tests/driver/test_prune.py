"""prune: finished jobs older than their state's retention are deleted, at most ``limit``."""

from __future__ import annotations

from typing import Any

from relaybus._driver import PruneParams
from relaybus.testing import FakeClock

from ._support import S, claim, ended, failure, get, insert, new_job, state_of


async def test_prune_deletes_finished_jobs_past_their_retention(
    store: Any, clock: FakeClock
) -> None:
    retention = {S.COMPLETED: 50.0, S.CANCELLED: 200.0, S.DISCARDED: 50.0}
    pending, done, gone, kept = await insert(
        store, new_job(delay=1000), new_job(), new_job(), new_job()
    )
    await claim(store, limit=2)
    await store.complete_many([ended((done, 1)), ended((gone, 1), "discard")])
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
    # ids are never reused (they may skip: MySQL reserves auto-increment values in blocks)
    (fresh,) = await insert(store, new_job())
    assert fresh > kept


async def test_prune_in_bounded_batches(store: Any, clock: FakeClock) -> None:
    await insert(store, *(new_job({"n": i}) for i in range(25)))
    claimed = await claim(store, limit=25)
    await store.complete_many([ended(c) for c in claimed])
    retention = {S.COMPLETED: 60.0, S.CANCELLED: 60.0, S.DISCARDED: 60.0}
    assert await store.prune(PruneParams(retention, limit=10)) == 0
    clock.advance(60)
    assert [await store.prune(PruneParams(retention, limit=10)) for _ in range(4)] == [
        10,
        10,
        5,
        0,
    ]
    assert await store.stats() == {}


async def test_prune_touches_only_the_states_it_is_given(store: Any, clock: FakeClock) -> None:
    done, discarded, cancelled, running, retryable = await insert(
        store, new_job(), new_job(), new_job(), new_job(), new_job()
    )
    await claim(store)
    await store.complete_many(
        [
            ended((done, 1)),
            ended((discarded, 1), "discard"),
            ended((cancelled, 1), "cancel"),
            ended((retryable, 1), "retry", error=failure(clock, 1), delay=10),
        ]
    )
    clock.advance(10_000)
    assert await store.prune(PruneParams({S.DISCARDED: 0.0})) == 1
    assert await store.get(discarded) is None
    for job_id, state in (
        (done, S.COMPLETED),
        (cancelled, S.CANCELLED),
        (running, S.RUNNING),
        (retryable, S.RETRYABLE),
    ):
        assert (await get(store, job_id)).state is state
    assert await store.prune(PruneParams({})) == 0


async def test_retention_runs_from_when_the_job_finished(store: Any, clock: FakeClock) -> None:
    (job_id,) = await insert(store, new_job())
    clock.advance(1000)  # an old insert...
    [run] = await claim(store)
    clock.advance(1000)  # ...and an old start do not count
    await store.complete_many([ended(run)])
    clock.advance(59)
    assert await store.prune(PruneParams({S.COMPLETED: 60.0})) == 0
    clock.advance(1)
    assert await store.prune(PruneParams({S.COMPLETED: 60.0})) == 1
    assert await store.get(job_id) is None
