"""``relaybus.testing.drain``: run every due job now, in this process, then return."""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING, Any

from ._context import ContextFactory
from ._driver import Driver, FetchParams, HeartbeatParams, StageParams
from ._runtime.executor import Executor

if TYPE_CHECKING:
    from ._bus import Bus

__all__ = ["drain"]


async def drain(bus: Bus[Any], *, queues: list[str] | None = None, max_jobs: int = 100_000) -> int:
    """Stage due jobs and run every job that is due now, one at a time in priority order,
    until none is left; return how many runs it made.

    Jobs that fail and retry later, or are scheduled in the future, are not due: move the fake
    clock (``clock.advance(...)``) and drain again. Raises RuntimeError after ``max_jobs`` runs
    (a handler that keeps dispatching itself).
    """
    store = bus.store
    node = f"drain-{os.getpid()}-{secrets.token_hex(3)}"
    executor = Executor(
        registry=bus.registry,
        middleware=bus.middleware,
        contexts=ContextFactory(bus, bus.handler_logger),
        logger=bus.logger.getChild("worker"),
        clock=store.clock,
    )
    ran = 0
    await store.heartbeat(HeartbeatParams(node, ttl=86400.0))
    try:
        while True:
            while await store.stage(StageParams(limit=1000)):
                pass
            names = queues or sorted(
                {spec.queue for spec in bus.registry.job_by_name.values()}
                | set(await store.stats())
            )
            before = ran
            for queue in names:
                ran = await _drain_queue(store, executor, queue, node, ran, max_jobs)
            if ran == before:
                return ran
    finally:
        await store.release_node(node)


async def _drain_queue(
    store: Driver, executor: Executor, queue: str, node: str, ran: int, max_jobs: int
) -> int:
    """Run the due jobs of ``queue`` one by one until none is left; the new run count."""
    while jobs := await store.fetch(FetchParams(queue, 1, node, 1 << 30, True)):
        completion = await executor.execute_with_timeout(jobs[0])
        await store.complete_many([completion])
        ran += 1
        if ran >= max_jobs:
            raise RuntimeError(f"drain ran {ran} jobs and jobs are still due")
    return ran
