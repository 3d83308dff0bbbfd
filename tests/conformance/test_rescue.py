"""§2 Nodes, leases and rescue; fencing; poison jobs.

Crashed nodes are simulated by claiming jobs directly through the store under a node name that
then stops heartbeating; time moves with the fake clock and the rescuer runs with run_once().
"""

from __future__ import annotations

from datetime import timedelta

import relaybus as rb
from relaybus._driver import Completion
from relaybus.testing import drain

from ._support import Ping, beat, claim, job_of, one_id

S = rb.JobState
TTL = 30
KINDS = ("completed", "retry", "snooze", "return", "cancel", "discard")


def _error(clock, attempt: int) -> rb.JobError:
    return rb.JobError(clock.now(), attempt, "ValueError", "late news from a stale node")


def _worker(bus: rb.Bus, **kw) -> rb.Worker:
    kw.setdefault("queues", {"default": 1})
    kw.setdefault("node_ttl", TTL)
    return bus.worker(**kw)


async def test_jobs_of_an_expired_node_are_rescued_due_now_and_rerun(store, clock) -> None:
    bus = rb.Bus(store=store)
    attempts: list[int] = []

    @bus.job(Ping, name="conf.rescue.rerun")
    async def h(event: Ping, ctx: rb.Context) -> None:
        attempts.append(ctx.job.attempt)

    async with bus:
        w = _worker(bus)
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(1), Ping(2)])]
        claimed = await claim(store, "dead-node")  # the node never heartbeats
        assert sorted(c.id for c in claimed) == sorted(ids)
        assert all(c.attempt == 1 for c in claimed)
        clock.advance(TTL + 1)
        assert await w.rescuer.run_once() == 2
        for job_id in ids:
            job = await job_of(bus, job_id)
            assert job.state is S.RETRYABLE
            assert job.scheduled_at == clock.now()  # due now
            assert job.attempt == 1
            assert [(e.kind, e.attempt) for e in job.errors] == [("rescued", 1)]
            assert job.errors[0].at == clock.now()
        assert await w.rescuer.run_once() == 0
        assert await drain(bus) == 2
        assert attempts == [2, 2]
        for job_id in ids:
            job = await job_of(bus, job_id)
            assert job.state is S.COMPLETED
            assert len(job.errors) == 1


async def test_a_node_is_alive_while_its_heartbeat_lease_lasts(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.rescue.live", timeout=None)
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = _worker(bus)
        job_id = one_id(await bus.dispatch(Ping()))
        (job,) = await claim(store, "live-node")
        assert await beat(store, "live-node", [(job_id, job.attempt)], ttl=TTL) == []
        for _ in range(4):  # 80 s of work, heartbeating every 20 s
            clock.advance(20)
            assert await w.rescuer.run_once() == 0
            assert await beat(store, "live-node", [(job_id, job.attempt)], ttl=TTL) == []
        assert (await job_of(bus, job_id)).state is S.RUNNING

        clock.advance(TTL - 1)  # the last heartbeat still holds
        assert await w.rescuer.run_once() == 0
        assert (await job_of(bus, job_id)).state is S.RUNNING
        clock.advance(2)  # now it has expired
        assert await w.rescuer.run_once() == 1
        assert (await job_of(bus, job_id)).state is S.RETRYABLE


async def test_a_job_running_past_timeout_plus_grace_is_rescued(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.rescue.stuck", timeout=10)
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = _worker(bus, grace=5)
        job_id = one_id(await bus.dispatch(Ping()))
        (job,) = await claim(store, "live-node")
        await beat(store, "live-node", [(job_id, job.attempt)])
        clock.advance(14)
        await beat(store, "live-node", [(job_id, job.attempt)])
        assert await w.rescuer.run_once() == 0
        clock.advance(2)  # 16 s > timeout 10 + grace 5, and the node is alive
        await beat(store, "live-node", [(job_id, job.attempt)])
        assert await w.rescuer.run_once() == 1
        job_after = await job_of(bus, job_id)
        assert job_after.state is S.RETRYABLE
        assert [e.kind for e in job_after.errors] == ["rescued"]
        # the node learns of it on its next heartbeat
        assert await beat(store, "live-node", [(job_id, job.attempt)]) == [job_id]


async def test_rescue_with_attempts_exhausted_discards(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.rescue.exhausted", max_attempts=2, backoff=rb.Constant(1))
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise ValueError("fails")

    async with bus:
        w = _worker(bus)
        job_id = one_id(await bus.dispatch(Ping()))
        await drain(bus)  # attempt 1 fails
        clock.advance(1)
        await w.stager.run_once()
        (job,) = await claim(store, "dead-node")
        assert job.attempt == 2
        clock.advance(TTL + 1)
        assert await w.rescuer.run_once() == 1
        after = await job_of(bus, job_id)
        assert after.state is S.DISCARDED
        assert after.finalized_at == clock.now()
        assert [e.kind for e in after.errors] == ["ValueError", "rescued"]
        clock.advance(60)
        assert await drain(bus) == 0


async def test_worker_lost_after_max_rescues(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.rescue.poison")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = _worker(bus, max_rescues=3)
        job_id = one_id(await bus.dispatch(Ping()))
        for crash in range(1, 4):
            await w.stager.run_once()
            (job,) = await claim(store, f"dead-{crash}", idle=True)
            assert job.id == job_id
            assert job.attempt == crash
            clock.advance(TTL + 1)
            assert await w.rescuer.run_once() == 1
            after = await job_of(bus, job_id)
            if crash < 3:
                assert after.state is S.RETRYABLE
        assert after.state is S.DISCARDED
        assert [e.kind for e in after.errors] == ["rescued", "rescued", "worker_lost"]
        assert after.attempt == 3
        assert after.max_attempts == 10  # discarded for crashes, not for attempts
        clock.advance(3600)
        assert await drain(bus) == 0


async def test_max_rescues_is_a_worker_setting(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.rescue.max2")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = _worker(bus, max_rescues=2)
        job_id = one_id(await bus.dispatch(Ping()))
        for crash in (1, 2):
            await w.stager.run_once()
            assert len(await claim(store, f"dead-{crash}", idle=True)) == 1
            clock.advance(TTL + 1)
            await w.rescuer.run_once()
        after = await job_of(bus, job_id)
        assert after.state is S.DISCARDED
        assert [e.kind for e in after.errors] == ["rescued", "worker_lost"]


async def test_fencing_a_stale_node_changes_nothing(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.rescue.fence")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = _worker(bus)
        job_id = one_id(await bus.dispatch(Ping()))
        await beat(store, "paused-node")
        (stale,) = await claim(store, "paused-node")
        clock.advance(TTL + 1)  # the node froze past its lease
        assert await w.rescuer.run_once() == 1
        rescued = await job_of(bus, job_id)
        assert rescued.state is S.RETRYABLE

        # the paused node wakes up and reports its run: nothing changes
        for kind in KINDS:
            stale_end = Completion(job_id, stale.attempt, kind, _error(clock, stale.attempt), 5)
            assert await store.complete_many([stale_end]) == []
            assert await job_of(bus, job_id) == rescued
        assert await beat(store, "paused-node", [(job_id, stale.attempt)]) == [job_id]

        # another node runs attempt 2; the stale node still changes nothing
        await w.stager.run_once()
        await beat(store, "good-node")
        (fresh,) = await claim(store, "good-node")
        assert fresh.attempt == stale.attempt + 1
        running = await job_of(bus, job_id)
        assert running.state is S.RUNNING
        assert running.attempted_by == "good-node"
        for kind in KINDS:
            stale_end = Completion(job_id, stale.attempt, kind, _error(clock, stale.attempt), 5)
            assert await store.complete_many([stale_end]) == []
            assert await job_of(bus, job_id) == running
        assert await beat(store, "paused-node", [(job_id, stale.attempt)]) == [job_id]
        assert await beat(store, "good-node", [(job_id, fresh.attempt)]) == []

        applied = await store.complete_many([Completion(job_id, fresh.attempt, "completed")])
        assert applied == [job_id]
        done = await job_of(bus, job_id)
        assert done.state is S.COMPLETED
        for kind in KINDS:  # a finished job takes no more ends, stale or not
            for attempt in (stale.attempt, fresh.attempt):
                late = Completion(job_id, attempt, kind, _error(clock, attempt), 5)
                assert await store.complete_many([late]) == []
        assert await job_of(bus, job_id) == done


async def test_a_rescue_never_overwrites_a_job_that_just_completed(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.rescue.completed")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = _worker(bus)
        job_id = one_id(await bus.dispatch(Ping()))
        (job,) = await claim(store, "dying-node")
        assert await store.complete_many([Completion(job_id, job.attempt, "completed")]) == [job_id]
        clock.advance(TTL + 1)
        assert await w.rescuer.run_once() == 0
        after = await job_of(bus, job_id)
        assert after.state is S.COMPLETED
        assert after.errors == ()


async def _rescue_times(w: rb.Worker, store, clock, times: int, ids: list[int]) -> None:
    """Crash the node running ``ids`` ``times`` times (all claimed together each time)."""
    for crash in range(times):
        await w.stager.run_once()
        got = await claim(store, f"crashing-{crash}", limit=len(ids) + 5)
        assert sorted(j.id for j in got) == sorted(ids)
        clock.advance(TTL + 1)
        assert await w.rescuer.run_once() == len(ids)
    await w.stager.run_once()


async def test_a_poison_suspect_is_fetched_only_when_idle_and_alone(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.rescue.suspect")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = _worker(bus, max_rescues=3)
        suspect = one_id(await bus.dispatch(Ping(0), priority=0))
        await _rescue_times(w, store, clock, 2, [suspect])  # max_rescues - 1 = 2 rescues
        others = [one_id(r) for r in await bus.dispatch_many([Ping(1), Ping(2)])]

        # first in line, but a busy node (idle=False) does not take it
        got = await claim(store, "busy-node", limit=10, idle=False)
        assert sorted(j.id for j in got) == sorted(others)
        assert (await job_of(bus, suspect)).state is S.AVAILABLE
        for j in got:
            await store.complete_many([Completion(j.id, j.attempt, "completed")])

        # an idle node takes it, and nothing else with it
        more = [one_id(r) for r in await bus.dispatch_many([Ping(3), Ping(4)])]
        got = await claim(store, "idle-node", limit=10, idle=True)
        assert [j.id for j in got] == [suspect]
        for job_id in more:
            assert (await job_of(bus, job_id)).state is S.AVAILABLE

        # if it completes, it is simply completed
        await store.complete_many([Completion(suspect, got[0].attempt, "completed")])
        assert (await job_of(bus, suspect)).state is S.COMPLETED


async def test_jobs_that_shared_a_crash_are_rerun_not_discarded(store, clock) -> None:
    bus = rb.Bus(store=store)
    ran: list[int] = []

    @bus.job(Ping, name="conf.rescue.shared")
    async def h(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)

    async with bus:
        w = _worker(bus, max_rescues=3)
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(1), Ping(2), Ping(3)])]
        await _rescue_times(w, store, clock, 2, ids)
        for job_id in ids:
            job = await job_of(bus, job_id)
            assert job.state is S.AVAILABLE
            assert [e.kind for e in job.errors] == ["rescued", "rescued"]

        # each now runs alone: an idle node takes exactly one of them
        got = await claim(store, "careful-node", limit=10, idle=True)
        assert len(got) == 1
        alone = got[0].id
        clock.advance(TTL + 1)  # ... and crashes again: only that one is blamed
        assert await w.rescuer.run_once() == 1
        blamed = await job_of(bus, alone)
        assert blamed.state is S.DISCARDED
        assert blamed.errors[-1].kind == "worker_lost"
        for job_id in ids:
            if job_id != alone:
                assert (await job_of(bus, job_id)).state is S.AVAILABLE

        assert await drain(bus) == 2
        assert len(ran) == 2


async def test_a_graceful_stop_leaves_nothing_to_rescue(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.rescue.graceful")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        async with bus.worker(queues={"default": 1}, poll_interval=0.05) as w:
            pass
        clock.advance(timedelta(seconds=TTL + 1))
        assert await w.rescuer.run_once() == 0
        job = await job_of(bus, job_id)
        assert job.state in (S.AVAILABLE, S.COMPLETED)
        assert job.errors == ()
