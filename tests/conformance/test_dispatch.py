"""dispatch / dispatch_many: delay= and at=, fan-out, inline handler errors, results in order."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

import relaybus as rb
from relaybus.testing import drain

from ._support import Ping, Pong, job_of, nonzero, one_id, outcomes


async def test_delay_is_relative_to_the_store_clock(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.dispatch.delay")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        clock.advance(1000)
        t = clock.now()
        a = await job_of(bus, one_id(await bus.dispatch(Ping(1), delay=90)))
        b = await job_of(bus, one_id(await bus.dispatch(Ping(2), delay=timedelta(minutes=2))))
        assert a.state is rb.JobState.SCHEDULED
        assert a.scheduled_at == t + timedelta(seconds=90)
        assert a.inserted_at == t
        assert b.scheduled_at == t + timedelta(seconds=120)


async def test_at_schedules_at_an_absolute_aware_time(store, clock) -> None:
    bus = rb.Bus(store=store)
    ran: list[int] = []

    @bus.job(Ping, name="conf.dispatch.at")
    async def h(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)

    async with bus:
        t0 = clock.now()
        plus2 = timezone(timedelta(hours=2))
        when = (t0 + timedelta(seconds=300)).astimezone(plus2)
        job = await job_of(bus, one_id(await bus.dispatch(Ping(1), at=when)))
        assert job.state is rb.JobState.SCHEDULED
        assert job.scheduled_at == when  # the same instant, whatever the zone
        clock.advance(299)
        assert await drain(bus) == 0
        clock.advance(1)
        assert await drain(bus) == 1
        assert ran == [1]


async def test_at_in_the_past_is_due_now(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.dispatch.past")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(), at=clock.now() - timedelta(hours=1)))
        assert (await job_of(bus, job_id)).state is rb.JobState.AVAILABLE
        assert await drain(bus) == 1


async def test_naive_at_is_rejected_and_nothing_inserted(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.dispatch.naive")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        naive = datetime(2030, 1, 1, 13, 0, 0)
        with pytest.raises((ValueError, TypeError)):
            await bus.dispatch(Ping(), at=naive)
        with pytest.raises((ValueError, TypeError)):
            await bus.dispatch_many([Ping(1), Ping(2)], at=naive)
        assert await bus.jobs.list() == []


async def test_fan_out_one_job_per_job_handler_plus_inline_handlers(store) -> None:
    bus = rb.Bus(store=store)
    inline_calls: list[str] = []
    job_calls: list[str] = []

    @bus.on(Ping, name="conf.fan.inline_async")
    async def inline_a(event: Ping, ctx: rb.Context) -> None:
        inline_calls.append("async")

    @bus.on(Ping, name="conf.fan.inline_sync")
    def inline_s(event: Ping, ctx: rb.Context) -> None:
        inline_calls.append("sync")

    @bus.job(Ping, name="conf.fan.mail", queue="mail")
    async def mail(event: Ping, ctx: rb.Context) -> None:
        job_calls.append("mail")

    @bus.job(Ping, name="conf.fan.audit")
    def audit(event: Ping, ctx: rb.Context) -> None:
        job_calls.append("audit")

    @bus.job(Pong, name="conf.fan.other")
    async def other(event: Pong, ctx: rb.Context) -> None:
        job_calls.append("other")

    async with bus:
        result = await bus.dispatch(Ping(3))
        assert isinstance(result, rb.DispatchResult)
        assert sorted(inline_calls) == ["async", "sync"]  # ran inside dispatch
        assert job_calls == []
        assert len(result.jobs) == 2
        assert all(isinstance(r, rb.InsertResult) for r in result.jobs)
        assert {r.handler for r in result.jobs} == {"conf.fan.mail", "conf.fan.audit"}
        assert outcomes(result) == ["inserted", "inserted"]
        assert len({r.id for r in result.jobs}) == 2
        for r in result.jobs:
            job = await job_of(bus, r.id)
            assert job.handler == r.handler
            assert job.event == "conf.ping"
            assert job.payload == {"n": 3}
            assert job.queue == ("mail" if r.handler == "conf.fan.mail" else "default")
        assert nonzero(await bus.jobs.stats()) == {
            "mail": {"available": 1},
            "default": {"available": 1},
        }
        assert await drain(bus) == 2
        assert sorted(job_calls) == ["audit", "mail"]


async def test_dispatch_without_job_handlers_returns_no_jobs(store) -> None:
    bus = rb.Bus(store=store)
    seen: list[int] = []

    @bus.on(Ping, name="conf.dispatch.inline_only")
    async def h(event: Ping, ctx: rb.Context) -> None:
        seen.append(event.n)

    async with bus:
        result = await bus.dispatch(Ping(4))
        assert result.jobs == []
        assert seen == [4]
        assert await bus.jobs.list() == []


async def test_dispatch_queue_and_meta_apply_to_every_job(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.dispatch.q1", queue="one")
    async def h1(event: Ping, ctx: rb.Context) -> None: ...

    @bus.job(Ping, name="conf.dispatch.q2", queue="two")
    async def h2(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        meta = {"tenant": "acme", "trace": {"id": "abc", "n": [1, 2]}}
        result = await bus.dispatch(Ping(), queue="elsewhere", meta=meta)
        for r in result.jobs:
            job = await job_of(bus, r.id)
            assert job.queue == "elsewhere"
            assert job.meta == meta


async def test_inline_errors_raise_dispatch_error_after_all_ran_and_jobs_inserted(store) -> None:
    bus = rb.Bus(store=store)
    ran: list[str] = []

    @bus.on(Ping, name="conf.inline.first")
    async def first(event: Ping, ctx: rb.Context) -> None:
        ran.append("first")
        raise ValueError("first failed")

    @bus.on(Ping, name="conf.inline.second")
    async def second(event: Ping, ctx: rb.Context) -> None:
        ran.append("second")

    @bus.on(Ping, name="conf.inline.third")
    def third(event: Ping, ctx: rb.Context) -> None:
        ran.append("third")
        raise KeyError("third failed")

    @bus.job(Ping, name="conf.inline.job")
    async def job(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        with pytest.raises(rb.DispatchError) as info:
            await bus.dispatch(Ping())
        err = info.value
        assert isinstance(err, ExceptionGroup)
        assert isinstance(err, rb.RelaybusError)
        assert sorted(type(e).__name__ for e in err.exceptions) == ["KeyError", "ValueError"]
        assert sorted(ran) == ["first", "second", "third"]
        jobs = await bus.jobs.list()
        assert [j.handler for j in jobs] == ["conf.inline.job"]


async def test_errors_log_on_the_bus_logs_instead_of_raising(store, caplog) -> None:
    bus = rb.Bus(store=store, errors="log")

    @bus.on(Ping, name="conf.inline.logged")
    async def failing(event: Ping, ctx: rb.Context) -> None:
        raise ValueError("logged, not raised")

    @bus.job(Ping, name="conf.inline.logged_job")
    async def job(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        with caplog.at_level(logging.ERROR):
            result = await bus.dispatch(Ping())
        assert outcomes(result) == ["inserted"]
        assert _logged(caplog, "logged, not raised")


async def test_errors_log_on_the_call(store, caplog) -> None:
    bus = rb.Bus(store=store)

    @bus.on(Ping, name="conf.inline.call_logged")
    async def failing(event: Ping, ctx: rb.Context) -> None:
        raise ValueError("call-level log")

    async with bus:
        with caplog.at_level(logging.ERROR):
            await bus.dispatch(Ping(), errors="log")
        assert _logged(caplog, "call-level log")
        with pytest.raises(rb.DispatchError):
            await bus.dispatch(Ping())


async def test_dispatch_many_results_in_input_order_and_one_dispatch_error(store) -> None:
    bus = rb.Bus(store=store)
    inline_seen: list[int] = []

    @bus.on(Ping, name="conf.many.inline")
    async def inline(event: Ping, ctx: rb.Context) -> None:
        inline_seen.append(event.n)
        if event.n % 2:
            raise ValueError(f"odd {event.n}")

    @bus.job(Ping, name="conf.many.job")
    async def job(event: Ping, ctx: rb.Context) -> None: ...

    @bus.job(Pong, name="conf.many.pong_a")
    async def pong_a(event: Pong, ctx: rb.Context) -> None: ...

    @bus.job(Pong, name="conf.many.pong_b")
    async def pong_b(event: Pong, ctx: rb.Context) -> None: ...

    async with bus:
        events = [Ping(0), Pong(1), Ping(1), Ping(2), Ping(3)]
        with pytest.raises(rb.DispatchError) as info:
            await bus.dispatch_many(events)
        assert sorted(str(e) for e in info.value.exceptions) == ["odd 1", "odd 3"]
        assert sorted(inline_seen) == [0, 1, 2, 3]
        assert len(await bus.jobs.list()) == 6  # 4 Ping jobs + 2 Pong jobs

        results = await bus.dispatch_many([Pong(5), Ping(6), Ping(8)])
        assert [r.event for r in results] == [Pong(5), Ping(6), Ping(8)]
        assert [len(r.jobs) for r in results] == [2, 1, 1]
        for r in results:
            for ins in r.jobs:
                assert (await job_of(bus, ins.id)).payload == {"n": r.event.n}


async def test_dispatch_many_of_nothing(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.many.none")
    async def job(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        assert await bus.dispatch_many([]) == []
        assert await bus.jobs.list() == []


async def test_dispatch_many_delay_applies_to_every_job(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.many.delay")
    async def job(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        t = clock.now()
        results = await bus.dispatch_many([Ping(1), Ping(2)], delay=45, meta={"m": 1})
        for r in results:
            job = await job_of(bus, one_id(r))
            assert job.state is rb.JobState.SCHEDULED
            assert job.scheduled_at == t + timedelta(seconds=45)
            assert job.meta == {"m": 1}


async def test_follow_up_dispatch_from_a_job(store) -> None:
    bus = rb.Bus(store=store)
    got: list[int] = []

    @bus.job(Ping, name="conf.dispatch.first")
    async def first(event: Ping, ctx: rb.Context) -> None:
        await ctx.bus.dispatch(Pong(event.n + 1))

    @bus.job(Pong, name="conf.dispatch.second")
    async def second(event: Pong, ctx: rb.Context) -> None:
        got.append(event.n)

    async with bus:
        await bus.dispatch(Ping(1))
        assert await drain(bus) == 2  # the follow-up is due now: the same drain runs it
        assert got == [2]


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    """Whether an ERROR record mentions ``text`` (in its message or its exception)."""
    for record in caplog.records:
        if record.levelno < logging.ERROR:
            continue
        exc = record.exc_info[1] if record.exc_info else None
        if text in record.getMessage() or (exc is not None and text in str(exc)):
            return True
    return False
