"""§2 Timeout: per handler. An async handler past its timeout is cancelled and the attempt fails
with a timeout error; a sync handler cannot be killed: the attempt fails and the thread is
abandoned. Timeouts are real time, so these tests use tiny ones and handlers that never end."""

from __future__ import annotations

import asyncio
import threading

import relaybus as rb
from relaybus.testing import drain

from ._support import Ping, job_of, wait_for

S = rb.JobState


async def test_async_handler_past_its_timeout_is_cancelled_and_fails(store, clock) -> None:
    bus = rb.Bus(store=store)
    never = asyncio.Event()
    cancelled: list[int] = []
    other: list[int] = []

    @bus.job(Ping, name="conf.timeout.async", timeout=0.05, backoff=rb.Constant(10), priority=0)
    async def slow(event: Ping, ctx: rb.Context) -> None:
        if ctx.job.attempt > 1:
            return
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(ctx.job.attempt)
            raise

    @bus.job(Ping, name="conf.timeout.bystander", priority=5)
    async def bystander(event: Ping, ctx: rb.Context) -> None:
        other.append(event.n)

    async with bus:
        result = await bus.dispatch(Ping(1))
        ids = {r.handler: r.id for r in result.jobs}
        async with asyncio.timeout(20):
            assert await drain(bus) == 2
        assert cancelled == [1]
        assert other == [1]
        job = await job_of(bus, ids["conf.timeout.async"])
        assert job.state is S.RETRYABLE
        assert job.attempt == 1
        assert len(job.errors) == 1
        assert "timeout" in job.errors[0].kind.lower()
        assert job.errors[0].attempt == 1

        clock.advance(10)
        assert await drain(bus) == 1
        assert (await job_of(bus, ids["conf.timeout.async"])).state is S.COMPLETED


async def test_sync_handler_past_its_timeout_fails_and_is_abandoned(store) -> None:
    bus = rb.Bus(store=store)
    release = threading.Event()
    finished = threading.Event()
    ran: list[int] = []

    @bus.job(Ping, name="conf.timeout.sync", timeout=0.05, max_attempts=1)
    def blocking(event: Ping, ctx: rb.Context) -> None:
        try:
            release.wait(30)
        finally:
            finished.set()

    @bus.job(Ping, name="conf.timeout.next", priority=5)
    async def after(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)

    try:
        async with bus:
            result = await bus.dispatch(Ping(1))
            ids = {r.handler: r.id for r in result.jobs}
            async with asyncio.timeout(20):
                assert await drain(bus) == 2
            assert not finished.is_set()  # the thread still runs: abandoned, not awaited
            assert ran == [1]
            job = await job_of(bus, ids["conf.timeout.sync"])
            assert job.state is S.DISCARDED  # max_attempts=1
            assert len(job.errors) == 1
            assert "timeout" in job.errors[0].kind.lower()
    finally:
        release.set()
    assert finished.wait(10)


async def test_timeout_none_and_a_generous_timeout_let_a_handler_finish(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.timeout.none", timeout=None)
    async def unlimited(event: Ping, ctx: rb.Context) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    @bus.job(Ping, name="conf.timeout.generous", timeout=30)
    def sync_ok(event: Ping, ctx: rb.Context) -> None:
        pass

    async with bus:
        result = await bus.dispatch(Ping())
        assert await drain(bus) == 2
        for r in result.jobs:
            assert (await job_of(bus, r.id)).state is S.COMPLETED


async def test_a_running_worker_times_out_a_job_and_keeps_going(store) -> None:
    bus = rb.Bus(store=store)
    never = asyncio.Event()
    cancelled = asyncio.Event()
    later_ran = asyncio.Event()

    @bus.job(Ping, name="conf.timeout.worker", timeout=0.05, max_attempts=1)
    async def slow(event: Ping, ctx: rb.Context) -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @bus.job(Ping, name="conf.timeout.worker_next")
    async def nxt(event: Ping, ctx: rb.Context) -> None:
        if event.n == 2:
            later_ran.set()

    async with bus:
        async with bus.worker(queues={"default": 1}, poll_interval=0.05) as w:
            result = await bus.dispatch(Ping(1))
            slow_id = next(r.id for r in result.jobs if r.handler == "conf.timeout.worker")
            await wait_for(cancelled)
            await bus.dispatch(Ping(2))
            await wait_for(later_ran)
            await w.stop(grace=5)
        job = await job_of(bus, slow_id)
        assert job.state is S.DISCARDED
        assert "timeout" in job.errors[0].kind.lower()
