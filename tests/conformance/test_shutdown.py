"""§2 Graceful shutdown: stop fetching, wait for running jobs up to grace, then cancel the rest
and return them to available without charging an attempt. And admin cancel of a running job."""

from __future__ import annotations

import asyncio
import threading

import relaybus as rb
from relaybus.testing import drain

from ._support import Ping, job_of, one_id, wait_for

S = rb.JobState


async def test_a_job_finishing_within_grace_completes(store) -> None:
    bus = rb.Bus(store=store)
    started = asyncio.Event()
    release = asyncio.Event()

    @bus.job(Ping, name="conf.shutdown.finishes")
    async def h(event: Ping, ctx: rb.Context) -> None:
        started.set()
        await release.wait()

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        async with bus.worker(queues={"default": 2}, poll_interval=0.05) as w:
            await wait_for(started)
            stopping = asyncio.create_task(w.stop(grace=10))
            await asyncio.sleep(0)  # let stop() begin before the job may finish
            assert not stopping.done()
            release.set()
            async with asyncio.timeout(10):
                await stopping
        job = await job_of(bus, job_id)
        assert job.state is S.COMPLETED
        assert job.attempt == 1
        assert job.errors == ()


async def test_a_job_past_grace_goes_back_to_available_uncharged(store) -> None:
    bus = rb.Bus(store=store)
    started = asyncio.Event()
    never = asyncio.Event()
    cancelled: list[int] = []
    attempts: list[int] = []

    @bus.job(Ping, name="conf.shutdown.past_grace", max_attempts=1)
    async def h(event: Ping, ctx: rb.Context) -> None:
        attempts.append(ctx.job.attempt)
        if len(attempts) > 1:
            return
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(ctx.job.attempt)
            raise

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        async with bus.worker(queues={"default": 2}, poll_interval=0.05) as w:
            await wait_for(started)
            async with asyncio.timeout(10):
                await w.stop(grace=0.05)
        assert cancelled == [1]
        job = await job_of(bus, job_id)
        assert job.state is S.AVAILABLE
        assert job.attempt == 0  # refunded
        assert job.max_attempts == 1
        assert job.errors == ()
        # it runs again later, with the same attempt number
        assert await drain(bus) == 1
        assert attempts == [1, 1]
        assert (await job_of(bus, job_id)).state is S.COMPLETED


async def test_a_sync_job_past_grace_goes_back_to_available_uncharged(store) -> None:
    bus = rb.Bus(store=store)
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    release = threading.Event()
    finished = threading.Event()
    runs: list[int] = []

    @bus.job(Ping, name="conf.shutdown.sync")
    def h(event: Ping, ctx: rb.Context) -> None:
        runs.append(ctx.job.attempt)
        if len(runs) > 1:
            return
        loop.call_soon_threadsafe(started.set)
        try:
            release.wait(30)
        finally:
            finished.set()

    try:
        async with bus:
            job_id = one_id(await bus.dispatch(Ping()))
            async with bus.worker(queues={"default": 1}, poll_interval=0.05) as w:
                await wait_for(started)
                async with asyncio.timeout(10):
                    await w.stop(grace=0.05)
            assert not finished.is_set()  # abandoned in its thread, not awaited
            job = await job_of(bus, job_id)
            assert job.state is S.AVAILABLE
            assert job.attempt == 0
            assert job.errors == ()
            release.set()
            assert await asyncio.to_thread(finished.wait, 10)
            assert await drain(bus) == 1
            assert runs == [1, 1]
            assert (await job_of(bus, job_id)).state is S.COMPLETED
    finally:
        release.set()


async def test_stop_waits_for_several_jobs_within_grace(store) -> None:
    bus = rb.Bus(store=store)
    started: list[int] = []
    all_started = asyncio.Event()
    release = asyncio.Event()

    @bus.job(Ping, name="conf.shutdown.several")
    async def h(event: Ping, ctx: rb.Context) -> None:
        started.append(event.n)
        if len(started) == 3:
            all_started.set()
        await release.wait()

    async with bus:
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(n) for n in range(3)])]
        async with bus.worker(queues={"default": 5}, poll_interval=0.05) as w:
            await wait_for(all_started)
            stopping = asyncio.create_task(w.stop(grace=10))
            await asyncio.sleep(0)
            release.set()
            async with asyncio.timeout(10):
                await stopping
        for job_id in ids:
            assert (await job_of(bus, job_id)).state is S.COMPLETED


async def test_admin_cancel_of_a_running_job_stops_it_for_good(store, clock) -> None:
    bus = rb.Bus(store=store)
    started = asyncio.Event()
    stopped = asyncio.Event()
    never = asyncio.Event()
    runs: list[int] = []

    @bus.job(Ping, name="conf.shutdown.admin_cancel", backoff=rb.Constant(1))
    async def h(event: Ping, ctx: rb.Context) -> None:
        runs.append(ctx.job.attempt)
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            stopped.set()
            # whatever the run raises now is ignored: the job stays cancelled
            raise ValueError("raised while being cancelled") from None

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        async with bus.worker(
            queues={"default": 2}, poll_interval=0.05, heartbeat_interval=0.05
        ) as w:
            await wait_for(started)
            job = await bus.jobs.cancel(job_id)
            assert job.state is S.CANCELLED
            await wait_for(stopped)
            await w.stop(grace=5)
        job = await job_of(bus, job_id)
        assert job.state is S.CANCELLED
        assert job.attempt == 1
        assert all("ValueError" not in e.kind for e in job.errors)
        clock.advance(3600)
        assert await drain(bus) == 0
        assert runs == [1]


async def test_admin_cancel_while_the_handler_swallows_cancellation(store, clock) -> None:
    bus = rb.Bus(store=store)
    started = asyncio.Event()
    stopped = asyncio.Event()
    never = asyncio.Event()

    @bus.job(Ping, name="conf.shutdown.swallow")
    async def h(event: Ping, ctx: rb.Context) -> None:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            stopped.set()
            return  # returns normally: still cancelled, not completed

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        async with bus.worker(
            queues={"default": 2}, poll_interval=0.05, heartbeat_interval=0.05
        ) as w:
            await wait_for(started)
            await bus.jobs.cancel(job_id)
            await wait_for(stopped)
            await w.stop(grace=5)
        job = await job_of(bus, job_id)
        assert job.state is S.CANCELLED
        clock.advance(3600)
        assert await drain(bus) == 0


async def test_stop_returns_as_soon_as_the_running_jobs_end(store) -> None:
    # A graceful stop waits for running jobs *up to* grace: once they end, it returns.
    bus = rb.Bus(store=store)
    started = asyncio.Event()
    ended = asyncio.Event()

    @bus.job(Ping, name="conf.shutdown.prompt")
    async def h(event: Ping, ctx: rb.Context) -> None:
        started.set()
        await asyncio.sleep(0.3)  # a short job, still running when stop() starts waiting
        ended.set()

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        async with bus.worker(queues={"default": 2}, poll_interval=0.05) as w:
            await wait_for(started)
            async with asyncio.timeout(15):  # half the grace: stop() must not wait it out
                await w.stop(grace=30)
            assert ended.is_set()  # it waited for the job, which finished on its own
        job = await job_of(bus, job_id)
        assert job.state is S.COMPLETED
        assert job.errors == ()


async def test_leaving_the_worker_block_returns_when_the_running_job_ends(store) -> None:
    # `async with bus.worker()` stops with the default grace (30 s) on exit.
    bus = rb.Bus(store=store)
    started = asyncio.Event()

    @bus.job(Ping, name="conf.shutdown.prompt_exit")
    async def h(event: Ping, ctx: rb.Context) -> None:
        started.set()
        await asyncio.sleep(0.3)  # a short job, still running when the block exits

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        async with asyncio.timeout(15):
            async with bus.worker(queues={"default": 2}, poll_interval=0.05):
                await wait_for(started)
        assert (await job_of(bus, job_id)).state is S.COMPLETED
