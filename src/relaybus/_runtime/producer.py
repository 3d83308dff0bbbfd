"""Producer: one per queue; claims jobs while it has free slots and starts their runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .._driver import Claimed, Completion, Driver, FetchParams
from .completer import Completer
from .executor import Executor
from .node import NodeState, Run

__all__ = ["Producer"]

MIN_POLL = 0.05


class Producer:
    """Fetches up to its free slots whenever woken (an insert in this process, a notification,
    a finished run, the stager) or when its poll interval runs out.

    Stores that cannot push notifications are polled adaptively: from 50 ms, doubling while
    idle up to ``poll_interval``, and back to 50 ms as soon as a fetch finds work.
    """

    def __init__(
        self,
        *,
        queue: str,
        concurrency: int,
        store: Driver,
        node: NodeState,
        executor: Executor,
        completer: Completer,
        poll_interval: float,
        on_idle: Callable[[], None],
        logger: logging.Logger,
    ) -> None:
        self.queue = queue
        self.concurrency = concurrency
        self._store = store
        self._node = node
        self._executor = executor
        self._completer = completer
        self._max_poll = poll_interval
        self._adaptive = not store.supports_notify
        self._poll = MIN_POLL if self._adaptive else poll_interval
        self._on_idle = on_idle
        self._logger = logger
        self._wake = asyncio.Event()
        self._stopping = False
        self.active: dict[int, asyncio.Task[None]] = {}

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self.active)
            found = 0
            if free > 0 and not self._node.isolated:
                try:
                    found = await self._fetch(free)
                    failures = 0
                except Exception:
                    failures += 1
                    delay = min(MIN_POLL * 2**failures, 5.0)
                    self._logger.exception(
                        "fetching from %r failed; retry in %.2gs", self.queue, delay
                    )
                    await asyncio.sleep(delay)
                    continue
                if found == free:
                    continue  # there may be more: fetch again as soon as a slot frees
            if found and self._adaptive:
                self._poll = MIN_POLL
            if self._wake.is_set():
                continue
            try:
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()
            except TimeoutError:
                if self._adaptive:
                    self._poll = min(self._poll * 2, self._max_poll)

    async def _fetch(self, free: int) -> int:
        node = self._node
        async with node.fetch_lock:  # one fetch at a time per node: isolation stays exact
            if self._stopping or node.isolated:
                return 0
            jobs = await self._store.fetch(
                FetchParams(self.queue, free, node.id, node.isolate_after, not node.runs)
            )
            for job in jobs:
                self._start(job)
        return len(jobs)

    def _start(self, job: Claimed) -> None:
        task = asyncio.create_task(self._run(job))
        self.active[job.id] = task
        self._node.runs[job.id] = Run(
            job.id, job.attempt, task, job.rescues >= self._node.isolate_after
        )

    async def _run(self, job: Claimed) -> None:
        completion: Completion | None
        try:
            completion = await self._executor.execute(job)
        except asyncio.CancelledError:
            run = self._node.runs.get(job.id)
            reason = run.cancel_reason if run is not None else "shutdown"
            # Shutdown: back to available, attempt refunded. Lost (admin cancel or rescued
            # elsewhere): the store already moved on; write nothing.
            completion = Completion(job.id, job.attempt, "return") if reason != "lost" else None
        finally:
            self.active.pop(job.id, None)
            run = self._node.runs.pop(job.id, None)
            self._wake.set()
            if (run is not None and run.isolated) or not self._node.runs:
                self._on_idle()
        if completion is not None:
            self._completer.add(completion)
