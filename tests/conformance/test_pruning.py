"""§2 Pruning: finished jobs are deleted after their state's retention, in bounded batches;
pending and running jobs are never pruned."""

from __future__ import annotations

import relaybus as rb
from relaybus._driver import PruneParams
from relaybus.testing import drain

from ._support import Ping, claim, job_of, one_id, wait_for

S = rb.JobState
DAY = 86400


async def _finish_one_of_each(bus: rb.Bus) -> dict[str, int]:
    ids = {
        "completed": one_id(await bus.dispatch(Ping(0))),
        "cancelled": one_id(await bus.dispatch(Ping(1))),
        "discarded": one_id(await bus.dispatch(Ping(2))),
    }
    assert await drain(bus) == 3
    for state, job_id in ids.items():
        assert (await job_of(bus, job_id)).state == state
    return ids


def _register(bus: rb.Bus) -> None:
    @bus.job(Ping, name="conf.prune.h", max_attempts=1)
    async def h(event: Ping, ctx: rb.Context) -> None:
        if event.n == 1:
            raise rb.Cancel("c")
        if event.n == 2:
            raise rb.Discard("d")


async def test_finished_jobs_are_pruned_after_their_retention(store, clock) -> None:
    bus = rb.Bus(store=store)
    _register(bus)

    async with bus:
        ids = await _finish_one_of_each(bus)
        w = bus.worker(
            queues={"default": 1},
            retention=rb.Retention(completed=100, cancelled=200, discarded=300),
        )

        async def present() -> set[str]:
            return {s for s, i in ids.items() if await bus.jobs.get(i) is not None}

        clock.advance(99)
        await w.pruner.run_once()
        assert await present() == {"completed", "cancelled", "discarded"}
        clock.advance(2)  # 101
        await w.pruner.run_once()
        assert await present() == {"cancelled", "discarded"}
        clock.advance(100)  # 201
        await w.pruner.run_once()
        assert await present() == {"discarded"}
        clock.advance(100)  # 301
        await w.pruner.run_once()
        assert await present() == set()
        assert await bus.jobs.list() == []


async def test_default_retention_one_day_and_seven_days(store, clock) -> None:
    bus = rb.Bus(store=store)
    _register(bus)

    async with bus:
        ids = await _finish_one_of_each(bus)
        w = bus.worker(queues={"default": 1})
        clock.advance(DAY - 1)
        await w.pruner.run_once()
        assert await bus.jobs.get(ids["completed"]) is not None
        clock.advance(2)
        await w.pruner.run_once()
        assert await bus.jobs.get(ids["completed"]) is None
        assert await bus.jobs.get(ids["cancelled"]) is not None
        clock.advance(6 * DAY - 2)  # 7 days - 1 s
        await w.pruner.run_once()
        assert await bus.jobs.get(ids["cancelled"]) is not None
        assert await bus.jobs.get(ids["discarded"]) is not None
        clock.advance(2)
        await w.pruner.run_once()
        assert await bus.jobs.get(ids["cancelled"]) is None
        assert await bus.jobs.get(ids["discarded"]) is None


async def test_pending_and_running_jobs_are_never_pruned(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.prune.pending", backoff=rb.Constant(10 * DAY))
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise ValueError("retry much later")

    async with bus:
        retryable = one_id(await bus.dispatch(Ping(1)))
        await drain(bus)
        scheduled = one_id(await bus.dispatch(Ping(2), delay=10 * DAY))
        running = one_id(await bus.dispatch(Ping(3)))
        await claim(store, "some-node")
        available = one_id(await bus.dispatch(Ping(4)))
        w = bus.worker(queues={"default": 1}, retention=rb.Retention(0, 0, 0))
        clock.advance(5 * DAY)
        await w.pruner.run_once()
        states = {
            job_id: (await job_of(bus, job_id)).state
            for job_id in (retryable, scheduled, running, available)
        }
        assert states == {
            retryable: S.RETRYABLE,
            scheduled: S.SCHEDULED,
            running: S.RUNNING,
            available: S.AVAILABLE,
        }


async def test_pruning_is_bounded(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.prune.many")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        await bus.dispatch_many([Ping(n) for n in range(25)])
        assert await drain(bus) == 25
        clock.advance(10)
        params = PruneParams(retention={S.COMPLETED: 5, S.CANCELLED: 5, S.DISCARDED: 5}, limit=10)
        assert [await store.prune(params) for _ in range(4)] == [10, 10, 5, 0]
        assert await bus.jobs.list() == []


async def test_a_pruned_unique_holder_frees_its_key(store, clock) -> None:
    bus = rb.Bus(store=store)
    forever = frozenset(rb.JobState)

    @bus.job(Ping, name="conf.prune.unique", unique=rb.Unique(states=forever))
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        first = one_id(await bus.dispatch(Ping(1)))
        await drain(bus)
        r = await bus.dispatch(Ping(1))
        assert (r.jobs[0].outcome, r.jobs[0].id) == ("duplicate", first)
        w = bus.worker(queues={"default": 1}, retention=rb.Retention(completed=60))
        clock.advance(61)
        await w.pruner.run_once()
        assert await bus.jobs.get(first) is None
        r = await bus.dispatch(Ping(1))
        assert r.jobs[0].outcome == "inserted"
        assert r.jobs[0].id != first


async def test_a_new_leader_prunes_at_once(store, clock) -> None:
    bus = rb.Bus(store=store)
    _register(bus)

    async with bus:
        ids = await _finish_one_of_each(bus)
        clock.advance(8 * DAY)
        worker = bus.worker(queues={"default": 1}, prune_interval=3600, poll_interval=0.05)
        async with worker as w:
            await wait_for(w.elector.ran)  # elected: pruning starts now, not in an hour
        # stopping the worker waits for its maintenance work to end
        for job_id in ids.values():
            assert await bus.jobs.get(job_id) is None
