"""The Executor runs a job from its parts (registry, middleware, context factory, logger,
clock), without a Bus; and whatever a handler raises, the run ends in a Completion."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest

import relaybus as rb
from relaybus._context import ContextFactory
from relaybus._driver import Claimed
from relaybus._handlers import Registry
from relaybus._runtime.executor import Executor
from relaybus.testing import FakeClock


@dataclass(frozen=True)
class Job(rb.Event, name="tests.executor.job"):
    mode: str = "ok"


class BusStandIn:
    """What ctx.bus is: the executor passes it through without knowing it."""

    def __init__(self) -> None:
        self.state = {"app": "state"}


def claimed(clock: FakeClock, mode: str, job_id: int = 1) -> Claimed:
    payload = f'{{"mode":"{mode}"}}'.encode()
    now = clock.now()
    return Claimed(
        job_id, "tests.executor.run", "tests.executor.job", "default", 2, 1, 3, payload,
        {"m": 1}, now, now, None, 0,
    )  # fmt: skip


def executor_for(registry: Registry, middleware: list[Any], clock: FakeClock) -> Executor:
    stand_in: Any = BusStandIn()
    logger = logging.getLogger("tests.executor")
    return Executor(
        registry=registry,
        middleware=middleware,
        contexts=ContextFactory(stand_in, logger),
        logger=logger,
        clock=clock,
    )


def registry_with(handler: Any) -> Registry:
    registry = Registry()
    registry.add_job(
        Job, handler, name="tests.executor.run", queue="default", priority=2, max_attempts=3,
        timeout=None, backoff=rb.Constant(7), unique=None, replace=None,
    )  # fmt: skip
    return registry


async def test_the_executor_runs_a_job_from_its_parts_with_later_middleware(
    clock: FakeClock,
) -> None:
    seen: list[Any] = []

    async def handler(event: Job, ctx: rb.Context[Any]) -> None:
        assert ctx.job is not None
        seen.append((event.mode, ctx.state, type(ctx.bus).__name__, ctx.job.id, ctx.meta))

    middleware: list[Any] = []
    executor = executor_for(registry_with(handler), middleware, clock)

    async def mw(ctx: rb.Context[Any], call_next: Any) -> Any:
        seen.append("mw")
        return await call_next()

    middleware.append(mw)  # added after the executor was built, as bus.use() does
    completion = await executor.execute(claimed(clock, "ok"))
    assert completion.kind == "completed"
    assert seen == ["mw", ("ok", {"app": "state"}, "BusStandIn", 1, {"m": 1})]


@pytest.mark.parametrize(
    ("raise_it", "kind"),
    [
        (lambda: SystemExit(1), "SystemExit"),
        (lambda: KeyboardInterrupt(), "KeyboardInterrupt"),
        (lambda: asyncio.CancelledError(), "asyncio.exceptions.CancelledError"),
        (lambda: ValueError("bad"), "ValueError"),
    ],
)
async def test_anything_a_handler_raises_is_a_retry(
    clock: FakeClock, raise_it: Any, kind: str
) -> None:
    async def handler(event: Job, ctx: rb.Context[Any]) -> None:
        raise raise_it()

    completion = await executor_for(registry_with(handler), [], clock).execute(
        claimed(clock, "x")
    )
    assert (completion.kind, completion.delay) == ("retry", 7)
    assert completion.error is not None and completion.error.kind == kind


async def test_a_cancellation_the_runtime_asked_for_still_propagates(clock: FakeClock) -> None:
    started = asyncio.Event()

    async def handler(event: Job, ctx: rb.Context[Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    executor = executor_for(registry_with(handler), [], clock)
    task = asyncio.ensure_future(executor.execute(claimed(clock, "x")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
