"""Producer: one per queue. A fetch loop claims jobs for idle slots; ``concurrency`` slots run
them. Slots are long-lived coroutines, so a job costs no task creation."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from .._driver import Claimed, Completion, Driver, FetchParams
from .completer import Completer
from .executor import Executor
from .node import NodeState, Run

__all__ = ["Producer"]

MIN_POLL = 0.05


class Producer:
    """Fetches as many jobs as it has idle slots whenever woken (an insert in this process, a
    notification, a slot going idle, the stager) or when its poll interval runs out.

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
        on_idle: Callable[[bool], None],
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
        self._wake = asyncio.Event()  # the fetch loop's
        self._jobs_ready = asyncio.Event()  # the idle slots'
        self._ready: deque[Claimed] = deque()
        self._idle_slots = 0
        self._stopping = False
        self.slots: list[asyncio.Task[None]] = []
        # The last fetch ran while the node was busy and came back short: a poison suspect
        # (which runs only on an idle node) may have been passed over.
        self.retry_when_idle = False

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop fetching; slots finish their current job and end."""
        self._stopping = True
        self._wake.set()
        self._jobs_ready.set()

    async def run(self) -> None:
        """The fetch loop; starts the slots. Returns once stopped (slots may still run)."""
        self.slots = [asyncio.create_task(self._slot()) for _ in range(self.concurrency)]
        failures = 0
        while not self._stopping:
            self._wake.clear()
            wanted = self._idle_slots - len(self._ready)
            if wanted > 0 and not self._node.isolated:
                try:
                    found = await self._fetch(wanted)
                    failures = 0
                except Exception:
                    failures += 1
                    delay = min(MIN_POLL * 2**failures, 5.0)
                    self._logger.exception(
                        "fetching from %r failed; retry in %.2gs", self.queue, delay
                    )
                    await asyncio.sleep(delay)
                    continue
                if found:
                    if self._adaptive:
                        self._poll = MIN_POLL
                    continue  # slots wake us when they go idle again
            if self._wake.is_set():
                continue
            try:
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()
            except TimeoutError:
                if self._adaptive:
                    self._poll = min(self._poll * 2, self._max_poll)
        # Claimed but never started: hand back at once, attempt refunded.
        while self._ready:
            job = self._ready.popleft()
            self._completer.add(Completion(job.id, job.attempt, "return"))

    async def _fetch(self, wanted: int) -> int:
        node = self._node
        async with node.fetch_lock:  # one fetch at a time per node: isolation stays exact
            if self._stopping or node.isolated:
                return 0
            carried = self._completer.take()  # finish the last runs in the same statement
            try:
                jobs = await self._store.fetch(
                    FetchParams(
                        self.queue, wanted, node.id, node.isolate_after, not node.runs, carried
                    )
                )
            except BaseException:
                self._completer.restore(carried)
                raise
            self._completer.settle(carried)
            self.retry_when_idle = bool(node.runs) and len(jobs) < wanted
            if jobs:
                for job in jobs:
                    if job.rescues >= node.isolate_after:
                        node.isolated_job = job.id  # runs alone: fetch nothing else meanwhile
                self._ready.extend(jobs)
                self._jobs_ready.set()
        return len(jobs)

    async def _slot(self) -> None:
        ready = self._ready
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        while True:
            if not ready:
                if self._stopping:
                    return
                self._idle_slots += 1
                self._jobs_ready.clear()
                self._wake.set()
                try:
                    await self._jobs_ready.wait()
                finally:
                    self._idle_slots -= 1
                continue
            if self._stopping:
                return  # left in the buffer: run() hands them back
            await self._run(ready.popleft(), task, loop)

    async def _run(
        self, job: Claimed, task: asyncio.Task[None], loop: asyncio.AbstractEventLoop
    ) -> None:
        node = self._node
        timeout = self._executor.timeout_of(job)
        run = Run(job.id, job.attempt, task, None if timeout is None else loop.time() + timeout)
        node.runs[job.id] = run
        completion: Completion | None
        try:
            completion = await self._executor.execute(job)
        except asyncio.CancelledError:
            if run.cancel_reason is None:
                raise  # the slot itself is being cancelled
            task.uncancel()
            reason = run.cancel_reason
            # Timeout: a failed attempt. Shutdown: back to available, attempt refunded. Lost
            # (admin cancel, or rescued elsewhere): the store already moved on; write nothing.
            if reason == "timeout":
                completion = self._executor.timed_out(job)
            elif reason == "shutdown":
                completion = Completion(job.id, job.attempt, "return")
            else:
                completion = None
        finally:
            del node.runs[job.id]
        if completion is not None:
            self._completer.add(completion)
        if node.isolated_job == job.id:  # the suspect ended: everyone may fetch again
            node.isolated_job = None
            self._on_idle(True)
        elif not node.runs:  # idle now: a suspect job passed over before may be taken
            self._on_idle(False)
