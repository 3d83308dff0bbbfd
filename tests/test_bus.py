"""Bus behaviour that does not depend on a store: the inline fast path and dispatch options."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

import relaybus as rb


@dataclass(frozen=True)
class Ping(rb.Event, name="tests.ping"):
    n: int


async def test_inline_only_dispatch_still_validates_options() -> None:
    bus: rb.Bus[None] = rb.Bus()
    seen: list[int] = []

    @bus.on(Ping)
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        seen.append(event.n)

    async with bus:
        with pytest.raises(ValueError, match="timezone-aware"):
            await bus.dispatch(Ping(1), at=datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="queue"):
            await bus.dispatch(Ping(2), queue="bad queue")
        await bus.dispatch(Ping(3))
    assert seen == [3]


async def test_inline_handlers_get_a_copy_of_meta() -> None:
    bus: rb.Bus[None] = rb.Bus()

    @bus.on(Ping)
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        ctx.meta["touched"] = True

    meta: dict[str, Any] = {"tenant": "acme"}
    async with bus:
        await bus.dispatch(Ping(1), meta=meta)
    assert meta == {"tenant": "acme"}


async def test_dispatch_middleware_may_drop_the_event() -> None:
    bus: rb.Bus[None] = rb.Bus()
    seen: list[int] = []

    @bus.on(Ping)
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        seen.append(event.n)

    async def drop_odd(d: rb.Dispatch, call_next: Callable[[], Awaitable[Any]]) -> Any:
        d.events = [e for e in d.events if e.n % 2 == 0]
        return await call_next()

    bus.use(drop_odd, on="dispatch")
    async with bus:
        result = await bus.dispatch(Ping(1))
        assert result.jobs == [] and result.event == Ping(1)
        await bus.dispatch(Ping(2))
    assert seen == [2]


async def test_list_with_limit_zero_is_empty() -> None:
    bus: rb.Bus[None] = rb.Bus()

    @bus.job(Ping, name="tests.ping.job")
    async def job(event: Ping, ctx: rb.Context[None]) -> None:
        return None

    async with bus:
        await bus.dispatch_many([Ping(1), Ping(2)])
        assert await bus.jobs.list(limit=0) == []
        assert len(await bus.jobs.list(limit=1)) == 1


async def test_worker_needs_an_open_bus() -> None:
    bus: rb.Bus[None] = rb.Bus()
    with pytest.raises(rb.StoreClosed):
        await bus.worker().run()


# -- the inline fast path reuses one Context while nobody else holds it


async def test_a_context_kept_by_a_handler_is_never_reused() -> None:
    bus: rb.Bus[None] = rb.Bus()
    kept: list[rb.Context[None]] = []
    seen: list[int] = []

    @bus.on(Ping)
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        seen.append(id(ctx))
        if event.n == 2:
            kept.append(ctx)  # a closure or task would hold it the same way

    async with bus:
        for n in range(1, 6):
            await bus.dispatch(Ping(n))
    assert kept[0].event == Ping(2)  # still its own event after three more dispatches
    assert seen[0] == seen[1]  # the first context was reused: nobody held it
    assert id(kept[0]) not in seen[2:]


async def test_meta_a_handler_adds_never_leaks_into_the_next_dispatch() -> None:
    bus: rb.Bus[None] = rb.Bus()
    metas: list[dict[str, object]] = []

    @bus.on(Ping)
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        metas.append(dict(ctx.meta))
        ctx.meta["seen"] = event.n

    async with bus:
        for n in range(3):
            await bus.dispatch(Ping(n))
        await bus.dispatch(Ping(9), meta={"a": 1})
        await bus.dispatch(Ping(10))
    assert metas == [{}, {}, {}, {"a": 1}, {}]


async def test_concurrent_dispatches_of_one_event_get_their_own_contexts() -> None:
    import asyncio

    bus: rb.Bus[None] = rb.Bus()
    release = asyncio.Event()
    events: list[tuple[int, int]] = []

    @bus.on(Ping)
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        if event.n in (1, 2):
            await release.wait()
        events.append((event.n, ctx.event.n))  # ctx.event is still this dispatch's event

    async with bus:
        await bus.dispatch(Ping(0))  # leaves a spare context behind
        first = asyncio.create_task(bus.dispatch(Ping(1)))
        second = asyncio.create_task(bus.dispatch(Ping(2)))
        await asyncio.sleep(0)
        await bus.dispatch(Ping(3))
        release.set()
        await asyncio.gather(first, second)
    assert sorted(events) == [(0, 0), (1, 1), (2, 2), (3, 3)]


async def test_a_reused_context_sees_the_current_state() -> None:
    bus: rb.Bus[object] = rb.Bus(state="old")
    states: list[object] = []

    @bus.on(Ping)
    async def handler(event: Ping, ctx: rb.Context[object]) -> None:
        states.append(ctx.state)

    async with bus:
        await bus.dispatch(Ping(1))
        bus.state = "new"
        await bus.dispatch(Ping(2))
    assert states == ["old", "new"]


async def test_a_changed_payload_limit_applies_to_the_next_dispatch() -> None:
    bus: rb.Bus[None] = rb.Bus()

    @bus.job(Ping, name="tests.ping.job")
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        return None

    async with bus:
        await bus.dispatch(Ping(1))  # builds and keeps the options of a plain dispatch
        bus.max_payload_bytes = 4
        with pytest.raises(rb.PayloadTooLarge):
            await bus.dispatch(Ping(2))
        bus.max_payload_bytes = 1_000
        assert len((await bus.dispatch(Ping(3))).jobs) == 1


# -- the inline fast path reuses its DispatchResult only when the caller dropped it


async def test_a_result_the_caller_keeps_is_never_reused() -> None:
    bus: rb.Bus[None] = rb.Bus()

    @bus.on(Ping)
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        return None

    async with bus:
        kept = [await bus.dispatch(Ping(n)) for n in range(3)]
        dropped = id(await bus.dispatch(Ping(3)))
        again = await bus.dispatch(Ping(4))  # the dropped one may come back, now for Ping(4)
        jobs = again.jobs
        del again
        fresh = await bus.dispatch(Ping(5))  # its job list is still held: a new result
    assert [r.event for r in kept] == [Ping(0), Ping(1), Ping(2)]
    assert len({id(r) for r in kept}) == 3 and all(r.jobs == [] for r in kept)
    assert fresh.event == Ping(5) and fresh.jobs is not jobs
    assert id(fresh) != dropped or fresh.jobs == []


async def test_a_handler_registered_after_a_dispatch_runs_in_the_next() -> None:
    bus: rb.Bus[None] = rb.Bus()
    seen: list[str] = []

    @bus.on(Ping, name="tests.first")
    async def first(event: Ping, ctx: rb.Context[None]) -> None:
        seen.append(ctx.handler)

    async with bus:
        await bus.dispatch(Ping(1))

        @bus.on(Ping, name="tests.second")
        async def second(event: Ping, ctx: rb.Context[None]) -> None:
            seen.append(ctx.handler)

        await bus.dispatch(Ping(2))

        @bus.job(Ping, name="tests.ping.job")
        async def job(event: Ping, ctx: rb.Context[None]) -> None:
            return None

        result = await bus.dispatch(Ping(3))  # leaves the fast path: a job handler now
    assert seen == ["tests.first", "tests.first", "tests.second", "tests.first", "tests.second"]
    assert [j.handler for j in result.jobs] == ["tests.ping.job"]


async def test_dispatch_options_are_keywords_and_unknown_ones_are_refused() -> None:
    bus: rb.Bus[None] = rb.Bus()

    @bus.on(Ping)
    async def handler(event: Ping, ctx: rb.Context[None]) -> None:
        return None

    async with bus:
        with pytest.raises(TypeError):
            await bus.dispatch(Ping(1), {"tenant": "acme"})  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="dely"):
            await bus.dispatch(Ping(1), dely=5)  # type: ignore[call-arg]
        result = await bus.dispatch(event=Ping(2), meta={"tenant": "acme"}, errors="log")
    assert result.event == Ping(2)
