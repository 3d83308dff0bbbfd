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
