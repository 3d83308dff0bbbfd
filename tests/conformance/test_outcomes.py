"""Handler outcomes: return → completed; Snooze refunds the attempt and records no error;
Cancel / Discard end the job with the reason recorded; any exception (BaseException subclasses
too) is a failed attempt and never stops the other jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest

import relaybus as rb
from relaybus.testing import drain

from ._support import Ping, job_of, one_id

S = rb.JobState


async def test_return_value_is_ignored_and_job_completes(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.outcome.returns")
    async def returns(event: Ping, ctx: rb.Context) -> object:
        return {"ignored": True}

    @bus.job(Ping, name="conf.outcome.returns_sync")
    def returns_sync(event: Ping, ctx: rb.Context) -> object:
        return False

    async with bus:
        result = await bus.dispatch(Ping())
        assert await drain(bus) == 2
        for r in result.jobs:
            job = await job_of(bus, r.id)
            assert job.state is S.COMPLETED
            assert job.errors == ()


async def test_snooze_reschedules_without_using_an_attempt_or_recording_an_error(
    store, clock
) -> None:
    bus = rb.Bus(store=store)
    attempts: list[int] = []

    @bus.job(Ping, name="conf.outcome.snooze", max_attempts=1)
    async def snoozer(event: Ping, ctx: rb.Context) -> None:
        attempts.append(ctx.job.attempt)
        if len(attempts) <= 3:
            raise rb.Snooze(30)

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        for _ in range(3):
            assert await drain(bus) == 1
            job = await job_of(bus, job_id)
            assert job.state is S.SCHEDULED
            assert job.scheduled_at == clock.now() + timedelta(seconds=30)
            assert job.attempt == 0
            assert job.max_attempts == 1
            assert job.errors == ()
            clock.advance(29)
            assert await drain(bus) == 0
            clock.advance(1)
        assert await drain(bus) == 1
        job = await job_of(bus, job_id)
        assert job.state is S.COMPLETED
        assert job.attempt == 1
        assert job.errors == ()
        assert attempts == [1, 1, 1, 1]


async def test_snooze_after_failures_keeps_the_attempt_number(store, clock) -> None:
    bus = rb.Bus(store=store)
    attempts: list[int] = []

    @bus.job(Ping, name="conf.outcome.fail_then_snooze", backoff=rb.Constant(10))
    async def handler(event: Ping, ctx: rb.Context) -> None:
        attempts.append(ctx.job.attempt)
        if len(attempts) == 1:
            raise ValueError("fail")
        if len(attempts) == 2:
            raise rb.Snooze(5)

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await drain(bus)
        clock.advance(10)
        await drain(bus)
        job = await job_of(bus, job_id)
        assert job.state is S.SCHEDULED
        assert job.attempt == 1
        assert len(job.errors) == 1
        clock.advance(5)
        await drain(bus)
        assert attempts == [1, 2, 2]
        assert (await job_of(bus, job_id)).state is S.COMPLETED


async def test_cancel_ends_the_job_with_its_reason(store, clock) -> None:
    bus = rb.Bus(store=store)
    calls: list[int] = []

    @bus.job(Ping, name="conf.outcome.cancel")
    async def cancels(event: Ping, ctx: rb.Context) -> None:
        calls.append(1)
        raise rb.Cancel("order was refunded")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await drain(bus)
        job = await job_of(bus, job_id)
        assert job.state is S.CANCELLED
        assert job.attempt == 1
        assert job.finalized_at == clock.now()
        assert len(job.errors) == 1
        assert job.errors[0].attempt == 1
        assert "order was refunded" in job.errors[0].message
        clock.advance(7 * 86400 - 1)
        assert await drain(bus) == 0
        assert calls == [1]


async def test_discard_ends_the_job_now_with_its_reason(store, clock) -> None:
    bus = rb.Bus(store=store)
    calls: list[int] = []

    @bus.job(Ping, name="conf.outcome.discard", max_attempts=10)
    async def discards(event: Ping, ctx: rb.Context) -> None:
        calls.append(1)
        raise rb.Discard("payload is garbage")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await drain(bus)
        job = await job_of(bus, job_id)
        assert job.state is S.DISCARDED
        assert job.attempt == 1
        assert len(job.errors) == 1
        assert "payload is garbage" in job.errors[0].message
        clock.advance(86400)
        assert await drain(bus) == 0
        assert calls == [1]


async def test_outcomes_from_a_plain_def_handler(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.outcome.sync")
    def sync(event: Ping, ctx: rb.Context) -> None:
        if event.n == 1:
            raise rb.Snooze(60)
        if event.n == 2:
            raise rb.Cancel("sync cancel")
        if event.n == 3:
            raise rb.Discard("sync discard")

    async with bus:
        ids = [one_id(await bus.dispatch(Ping(n))) for n in range(4)]
        assert await drain(bus) == 4
        states = [(await job_of(bus, i)).state for i in ids]
        assert states == [S.COMPLETED, S.SCHEDULED, S.CANCELLED, S.DISCARDED]


class Unusual(BaseException):
    """Not an Exception, and not cancellation or shutdown: still a failed attempt."""


async def test_base_exception_subclass_is_a_failed_attempt_and_others_still_run(
    store, clock
) -> None:
    bus = rb.Bus(store=store)
    ok: list[int] = []

    @bus.job(Ping, name="conf.outcome.base", backoff=rb.Constant(10), priority=0)
    async def weird(event: Ping, ctx: rb.Context) -> None:
        raise Unusual("not an Exception")

    @bus.job(Ping, name="conf.outcome.base_sync", backoff=rb.Constant(10), priority=0)
    def weird_sync(event: Ping, ctx: rb.Context) -> None:
        raise Unusual("not an Exception either")

    @bus.job(Ping, name="conf.outcome.fine", priority=5)
    async def fine(event: Ping, ctx: rb.Context) -> None:
        ok.append(event.n)

    async with bus:
        result = await bus.dispatch(Ping(1))
        assert await drain(bus) == 3
        by_handler = {r.handler: r.id for r in result.jobs}
        for name in ("conf.outcome.base", "conf.outcome.base_sync"):
            job = await job_of(bus, by_handler[name])
            assert job.state is S.RETRYABLE
            assert "Unusual" in job.errors[0].kind
        assert ok == [1]
        assert (await job_of(bus, by_handler["conf.outcome.fine"])).state is S.COMPLETED


async def test_any_exception_is_a_failed_attempt(store) -> None:
    bus = rb.Bus(store=store)
    raised = [ValueError("v"), RuntimeError("r"), ZeroDivisionError("z"), GeneratorExit()]

    @bus.job(Ping, name="conf.outcome.any", max_attempts=2)
    async def raises(event: Ping, ctx: rb.Context) -> None:
        raise raised[event.n]

    async with bus:
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(n) for n in range(4)])]
        assert await drain(bus) == 4
        for job_id, exc in zip(ids, raised, strict=True):
            job = await job_of(bus, job_id)
            assert job.state is S.RETRYABLE
            assert job.attempt == 1
            assert type(exc).__name__ in job.errors[0].kind


def test_snooze_seconds_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        rb.Snooze(-1)


async def test_snooze_zero_makes_the_job_due_again_at_once(store) -> None:
    bus = rb.Bus(store=store)
    attempts: list[int] = []

    @bus.job(Ping, name="conf.outcome.snooze0")
    async def h(event: Ping, ctx: rb.Context) -> None:
        attempts.append(ctx.job.attempt)
        if len(attempts) == 1:
            raise rb.Snooze(0)

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        assert await drain(bus) == 2
        assert attempts == [1, 1]
        job = await job_of(bus, job_id)
        assert job.state is S.COMPLETED
        assert job.errors == ()
