"""§2 Priority: 0-9, lower runs first, default 2; then earliest scheduled_at; then insertion order.
Priority orders work within a queue; queues are isolated."""

from __future__ import annotations

from datetime import timedelta

import pytest

import relaybus as rb
from relaybus.testing import drain

from ._support import Ping, claim, job_of, one_id


def test_named_priorities() -> None:
    assert rb.Priority.CRITICAL == 0
    assert rb.Priority.HIGH == 1
    assert rb.Priority.NORMAL == 2
    assert rb.Priority.LOW == 3


async def test_default_priority_is_2_and_handler_and_dispatch_override(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.prio.default")
    async def default(event: Ping, ctx: rb.Context) -> None: ...

    @bus.job(Ping, name="conf.prio.high", priority=rb.Priority.HIGH)
    async def high(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        result = await bus.dispatch(Ping())
        by_handler = {r.handler: r.id for r in result.jobs}
        assert (await job_of(bus, by_handler["conf.prio.default"])).priority == 2
        assert (await job_of(bus, by_handler["conf.prio.high"])).priority == 1

        result = await bus.dispatch(Ping(1), priority=7)
        assert len(result.jobs) == 2
        for r in result.jobs:
            assert (await job_of(bus, r.id)).priority == 7


async def test_lower_priority_runs_first(store) -> None:
    bus = rb.Bus(store=store)
    order: list[int] = []

    @bus.job(Ping, name="conf.prio.order")
    async def record(event: Ping, ctx: rb.Context) -> None:
        order.append(event.n)

    async with bus:
        for p in (3, 0, 9, 2, 1, 5):
            await bus.dispatch(Ping(p), priority=p)
        assert await drain(bus) == 6
        assert order == [0, 1, 2, 3, 5, 9]


async def test_fetch_order_priority_then_scheduled_at_then_insertion(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.prio.fetch")
    async def noop(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        t0 = clock.now()
        due = t0 + timedelta(seconds=10)
        a = one_id(await bus.dispatch(Ping(1), at=due))  # same time as b, inserted first
        clock.advance(1)
        b = one_id(await bus.dispatch(Ping(2), at=due))
        c = one_id(await bus.dispatch(Ping(3), at=t0 + timedelta(seconds=5)))  # earlier due
        d = one_id(await bus.dispatch(Ping(4), at=due, priority=1))  # higher priority
        e = one_id(await bus.dispatch(Ping(5), at=due + timedelta(seconds=1), priority=0))
        f = one_id(await bus.dispatch(Ping(6), at=due, priority=3))
        clock.advance(20)
        w = bus.worker(queues={"default": 1})
        await w.stager.run_once()
        fetched = []
        for _ in range(7):
            got = await claim(store, "conf-node", limit=1, idle=True)
            fetched.extend(j.id for j in got)
        assert fetched == [e, d, c, a, b, f]


async def test_priority_orders_within_a_queue_only(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.prio.q")
    async def noop(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        low_default = one_id(await bus.dispatch(Ping(1), priority=9))
        urgent_other = one_id(await bus.dispatch(Ping(2), priority=0, queue="other"))
        got = await claim(store, "conf-node", queue="default", limit=10)
        assert [j.id for j in got] == [low_default]
        assert (await job_of(bus, urgent_other)).state is rb.JobState.AVAILABLE
        got = await claim(store, "conf-node", queue="other", limit=10)
        assert [j.id for j in got] == [urgent_other]


def test_priority_out_of_range_is_rejected_at_registration() -> None:
    bus = rb.Bus()
    for bad in (-1, 10, 2.5, "1"):
        with pytest.raises(ValueError):

            @bus.job(Ping, name="conf.prio.bad", priority=bad)
            async def bad_handler(event: Ping, ctx: rb.Context) -> None: ...


async def test_priority_out_of_range_is_rejected_at_dispatch(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.prio.good")
    async def good(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        for bad in (-1, 10, 2.5, "1"):
            with pytest.raises(ValueError):
                await bus.dispatch(Ping(), priority=bad)
        assert await bus.jobs.list() == []
