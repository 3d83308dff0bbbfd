"""Context (state, bus, job, meta, logger) and middleware (handler and dispatch)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import relaybus as rb
from relaybus.testing import drain

from ._support import Ping, job_of, one_id


@dataclass
class AppState:
    greeting: str


async def test_ctx_of_a_job(store, clock) -> None:
    state = AppState("hello")
    bus = rb.Bus(store=store, state=state)
    seen: list[rb.Context[AppState]] = []
    jobs: list[Any] = []

    @bus.job(Ping, name="conf.ctx.job", queue="ctxq", priority=4, max_attempts=3)
    async def handler(event: Ping, ctx: rb.Context[AppState]) -> None:
        seen.append(ctx)
        jobs.append(ctx.job)

    async with bus:
        t0 = clock.now()
        job_id = one_id(await bus.dispatch(Ping(), meta={"tenant": "acme"}, delay=10))
        clock.advance(15)
        assert await drain(bus) == 1
        ctx = seen[0]
        assert ctx.state is state
        assert ctx.bus is bus
        assert ctx.meta == {"tenant": "acme"}
        assert ctx.logger is not None
        ctx.logger.info("handlers can log")
        info = jobs[0]
        assert info.id == job_id
        assert info.attempt == 1
        assert info.max_attempts == 3
        assert info.queue == "ctxq"
        assert info.priority == 4
        assert info.meta == {"tenant": "acme"}
        assert info.inserted_at == t0
        assert info.scheduled_at == t0 + timedelta(seconds=10)


async def test_ctx_of_an_inline_handler(store) -> None:
    state = AppState("hi")
    bus = rb.Bus(store=store, state=state)
    seen: list[rb.Context[AppState]] = []

    @bus.on(Ping, name="conf.ctx.inline")
    async def handler(event: Ping, ctx: rb.Context[AppState]) -> None:
        seen.append(ctx)

    @bus.on(Ping, name="conf.ctx.inline_sync")
    def sync_handler(event: Ping, ctx: rb.Context[AppState]) -> None:
        seen.append(ctx)

    async with bus:
        await bus.dispatch(Ping(), meta={"k": "v"})
        assert len(seen) == 2
        for ctx in seen:
            assert ctx.job is None
            assert ctx.state is state
            assert ctx.bus is bus
            assert ctx.meta == {"k": "v"}
            assert ctx.logger is not None


async def test_ctx_meta_is_empty_without_meta(store) -> None:
    bus = rb.Bus(store=store)
    metas: list[Any] = []

    @bus.job(Ping, name="conf.ctx.nometa")
    async def handler(event: Ping, ctx: rb.Context) -> None:
        metas.append(ctx.meta)

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        assert (await job_of(bus, job_id)).meta == {}
        await drain(bus)
        assert metas == [{}]


async def test_handler_middleware_wraps_inline_and_job_runs_outermost_first(store) -> None:
    calls: list[str] = []

    def tracer(label: str):
        async def mw(ctx: rb.Context, call_next) -> Any:
            kind = "job" if ctx.job is not None else "inline"
            calls.append(f"{label}>{kind}")
            try:
                return await call_next()
            finally:
                calls.append(f"{label}<{kind}")

        return mw

    bus = rb.Bus(store=store, middleware=[tracer("a"), tracer("b")])
    bus.use(tracer("c"))

    @bus.on(Ping, name="conf.mw.inline")
    async def inline(event: Ping, ctx: rb.Context) -> None:
        calls.append("inline")

    @bus.job(Ping, name="conf.mw.job")
    async def job(event: Ping, ctx: rb.Context) -> None:
        calls.append("job")

    async with bus:
        await bus.dispatch(Ping())
        assert calls == [
            "a>inline",
            "b>inline",
            "c>inline",
            "inline",
            "c<inline",
            "b<inline",
            "a<inline",
        ]
        calls.clear()
        await drain(bus)
        assert calls == ["a>job", "b>job", "c>job", "job", "c<job", "b<job", "a<job"]


async def test_handler_middleware_sees_outcomes_and_can_fail_a_job(store) -> None:
    seen: list[str] = []

    async def observer(ctx: rb.Context, call_next) -> Any:
        try:
            return await call_next()
        except Exception as exc:
            seen.append(type(exc).__name__)
            raise

    async def gate(ctx: rb.Context, call_next) -> Any:
        if ctx.job is not None and ctx.meta.get("blocked"):
            raise PermissionError("blocked by middleware")
        return await call_next()

    bus = rb.Bus(store=store, middleware=[observer, gate])

    @bus.job(Ping, name="conf.mw.gated", max_attempts=1)
    async def job(event: Ping, ctx: rb.Context) -> None:
        if event.n == 2:
            raise rb.Snooze(60)

    async with bus:
        blocked = one_id(await bus.dispatch(Ping(1), meta={"blocked": True}))
        snoozed = one_id(await bus.dispatch(Ping(2)))
        await drain(bus)
        job = await job_of(bus, blocked)
        assert job.state is rb.JobState.DISCARDED
        assert job.errors[0].message == "blocked by middleware"
        assert (await job_of(bus, snoozed)).state is rb.JobState.SCHEDULED
        assert sorted(seen) == ["PermissionError", "Snooze"]


async def test_dispatch_middleware_changes_meta_outermost_first(store) -> None:
    order: list[str] = []
    seen_meta: list[dict[str, Any]] = []

    async def add_trace(d: rb.Dispatch, call_next) -> Any:
        order.append("trace")
        d.meta["trace_id"] = "t-1"
        return await call_next()

    async def add_tenant(d: rb.Dispatch, call_next) -> Any:
        order.append("tenant")
        assert d.meta.get("trace_id") == "t-1"  # the outer one ran first
        d.meta["tenant"] = "acme"
        return await call_next()

    bus = rb.Bus(store=store)
    bus.use(add_trace, on="dispatch")
    bus.use(add_tenant, on="dispatch")

    @bus.on(Ping, name="conf.dmw.inline")
    async def inline(event: Ping, ctx: rb.Context) -> None:
        seen_meta.append(dict(ctx.meta))

    @bus.job(Ping, name="conf.dmw.job")
    async def job(event: Ping, ctx: rb.Context) -> None:
        seen_meta.append(dict(ctx.meta))

    async with bus:
        result = await bus.dispatch(Ping(), meta={"user": 7})
        assert order == ["trace", "tenant"]
        expected = {"user": 7, "trace_id": "t-1", "tenant": "acme"}
        assert (await job_of(bus, one_id(result))).meta == expected
        await drain(bus)
        assert seen_meta == [expected, expected]


async def test_dispatch_middleware_sees_and_can_change_the_events(store) -> None:
    ran: list[int] = []

    async def double(d: rb.Dispatch, call_next) -> Any:
        assert [type(e) for e in d.events] == [Ping, Ping]
        d.events = [Ping(e.n * 2) for e in d.events]
        return await call_next()

    bus = rb.Bus(store=store)
    bus.use(double, on="dispatch")

    @bus.job(Ping, name="conf.dmw.events")
    async def job(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)

    async with bus:
        results = await bus.dispatch_many([Ping(1), Ping(2)])
        assert len(results) == 2
        await drain(bus)
        assert sorted(ran) == [2, 4]
