"""§2 States: scheduled → available → running → completed; retryable; terminal states stay."""

from __future__ import annotations

from datetime import timedelta

import relaybus as rb
from relaybus.testing import drain

from ._support import Ping, job_of, one_id

S = rb.JobState


def test_job_state_is_a_str_enum() -> None:
    assert S.RUNNING == "running"
    assert {s.value for s in S} == {
        "scheduled",
        "available",
        "running",
        "retryable",
        "completed",
        "cancelled",
        "discarded",
    }


async def test_new_job_is_available_then_completed(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.states.ok")
    async def ok(event: Ping, ctx: rb.Context) -> None:
        pass

    async with bus:
        t0 = clock.now()
        job_id = one_id(await bus.dispatch(Ping(1)))
        job = await job_of(bus, job_id)
        assert job.state is S.AVAILABLE
        assert job.attempt == 0
        assert job.inserted_at == t0
        assert job.scheduled_at == t0
        assert job.attempted_at is None
        assert job.attempted_by is None
        assert job.finalized_at is None
        assert job.errors == ()

        clock.advance(5)
        assert await drain(bus) == 1
        job = await job_of(bus, job_id)
        assert job.state is S.COMPLETED
        assert job.attempt == 1
        assert job.attempted_at == t0 + timedelta(seconds=5)
        assert job.attempted_by
        assert job.finalized_at == t0 + timedelta(seconds=5)
        assert job.errors == ()


async def test_job_is_running_while_its_handler_runs(store, clock) -> None:
    bus = rb.Bus(store=store)
    seen: list[rb.Job] = []

    @bus.job(Ping, name="conf.states.peek")
    async def peek(event: Ping, ctx: rb.Context) -> None:
        assert ctx.job is not None
        seen.append(await job_of(ctx.bus, ctx.job.id))

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await drain(bus)
        assert len(seen) == 1
        assert seen[0].id == job_id
        assert seen[0].state is S.RUNNING
        assert seen[0].attempt == 1
        assert seen[0].attempted_at == clock.now()
        assert seen[0].finalized_at is None


async def test_delayed_job_is_scheduled_until_due(store, clock) -> None:
    bus = rb.Bus(store=store)
    runs: list[int] = []

    @bus.job(Ping, name="conf.states.later")
    async def later(event: Ping, ctx: rb.Context) -> None:
        runs.append(event.n)

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(7), delay=60))
        assert (await job_of(bus, job_id)).state is S.SCHEDULED
        assert await drain(bus) == 0

        clock.advance(59)
        assert await drain(bus) == 0
        assert (await job_of(bus, job_id)).state is S.SCHEDULED
        assert runs == []

        clock.advance(1)
        assert await drain(bus) == 1
        assert runs == [7]
        assert (await job_of(bus, job_id)).state is S.COMPLETED


async def test_failed_job_is_retryable_until_due_then_runs_again(store, clock) -> None:
    bus = rb.Bus(store=store)
    calls: list[int] = []

    @bus.job(Ping, name="conf.states.flaky", backoff=rb.Constant(30))
    async def flaky(event: Ping, ctx: rb.Context) -> None:
        calls.append(ctx.job.attempt)
        if len(calls) == 1:
            raise RuntimeError("first try fails")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        assert await drain(bus) == 1
        job = await job_of(bus, job_id)
        assert job.state is S.RETRYABLE
        assert job.finalized_at is None
        assert await drain(bus) == 0

        clock.advance(30)
        assert await drain(bus) == 1
        job = await job_of(bus, job_id)
        assert job.state is S.COMPLETED
        assert calls == [1, 2]


async def test_terminal_states_never_change_without_admin_retry(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.states.end", max_attempts=1)
    async def end(event: Ping, ctx: rb.Context) -> None:
        if event.n == 1:
            raise ValueError("exhausted")
        if event.n == 2:
            raise rb.Cancel("stop")

    async with bus:
        done = one_id(await bus.dispatch(Ping(0)))
        discarded = one_id(await bus.dispatch(Ping(1)))
        cancelled = one_id(await bus.dispatch(Ping(2)))
        assert await drain(bus) == 3
        before = {i: await job_of(bus, i) for i in (done, discarded, cancelled)}
        assert before[done].state is S.COMPLETED
        assert before[discarded].state is S.DISCARDED
        assert before[cancelled].state is S.CANCELLED

        w = bus.worker(queues={"default": 1})
        for _ in range(3):
            clock.advance(3600)  # well within the default retentions (1 day / 7 days)
            await w.stager.run_once()
            await w.rescuer.run_once()
            await w.pruner.run_once()
            assert await drain(bus) == 0
        for job_id, job in before.items():
            assert await job_of(bus, job_id) == job
