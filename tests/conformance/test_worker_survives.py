"""§2 Exceptions: whatever a handler raises — SystemExit, KeyboardInterrupt, a CancelledError
the runtime did not ask for — is a failed attempt, recorded and logged with the job id; the
worker, and every one of its slots, keeps running. Only real signals stop a worker."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest

import relaybus as rb

from ._support import Ping, Pong, job_of, one_id, wait_for

S = rb.JobState


def _register_followers(bus: rb.Bus[Any], count: int) -> asyncio.Event:
    """A job handler for Pong that sets the returned event once ``count`` runs happened."""
    all_ran = asyncio.Event()
    ran: list[int] = []

    @bus.job(Pong, name="conf.survive.follower")
    async def follower(event: Pong, ctx: rb.Context) -> None:
        ran.append(event.n)
        if len(ran) == count:
            all_ran.set()

    return all_ran


async def _run_until(bus: rb.Bus[Any], done: asyncio.Event, concurrency: int) -> None:
    async with bus.worker(queues={"default": concurrency}, poll_interval=0.05) as w:
        await wait_for(done)
        await w.stop(grace=5)  # flushes every completion


async def _assert_failed_attempt(bus: rb.Bus[Any], job_id: int, kind: str) -> rb.Job:
    job = await job_of(bus, job_id)
    assert job.state is S.RETRYABLE, job
    assert job.attempt == 1
    (error,) = job.errors
    assert error.kind == kind
    assert error.traceback
    return job


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
async def test_an_async_handler_raising_a_shutdown_exception_is_a_failed_attempt(
    store, caplog: pytest.LogCaptureFixture, raised: type[BaseException]
) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.survive.raises", backoff=rb.Constant(3600))
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise raised(3)

    done = _register_followers(bus, 1)
    caplog.set_level(logging.WARNING, logger="relaybus")
    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await bus.dispatch(Pong())  # runs after it, on the only slot: the worker lives on
        await _run_until(bus, done, concurrency=1)
        await _assert_failed_attempt(bus, job_id, raised.__name__)
    logged = [r.getMessage() for r in caplog.records]
    assert any(f"job {job_id} " in m and raised.__name__ in m for m in logged), logged


async def test_a_sync_handler_calling_sys_exit_is_a_failed_attempt(
    store, caplog: pytest.LogCaptureFixture
) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.survive.sys_exit", backoff=rb.Constant(3600))
    def h(event: Ping, ctx: rb.Context) -> None:  # runs in a thread
        sys.exit(2)

    done = _register_followers(bus, 1)
    caplog.set_level(logging.WARNING, logger="relaybus")
    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await bus.dispatch(Pong())
        await _run_until(bus, done, concurrency=1)
        await _assert_failed_attempt(bus, job_id, "SystemExit")
    assert any(f"job {job_id} " in r.getMessage() for r in caplog.records)


async def test_a_handler_raising_cancelled_error_itself_keeps_its_slot(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.survive.self_cancel", backoff=rb.Constant(3600))
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise asyncio.CancelledError  # nobody cancelled this run

    done = _register_followers(bus, 8)
    async with bus:
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(1), Ping(2)])]
        await bus.dispatch_many([Pong(n) for n in range(8)])
        await _run_until(bus, done, concurrency=2)  # both slots live on: all 8 run
        for job_id in ids:
            await _assert_failed_attempt(bus, job_id, "asyncio.exceptions.CancelledError")


async def test_a_handler_awaiting_a_future_cancelled_elsewhere_is_a_failed_attempt(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.survive.cancelled_future", backoff=rb.Constant(3600))
    async def h(event: Ping, ctx: rb.Context) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.cancel)  # someone else cancels it
        await future

    done = _register_followers(bus, 4)
    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await bus.dispatch_many([Pong(n) for n in range(4)])
        await _run_until(bus, done, concurrency=1)
        await _assert_failed_attempt(bus, job_id, "asyncio.exceptions.CancelledError")
