"""Producer: one per queue. A fetch loop claims jobs for idle slots, and while jobs are short
claims the next batch before the current one ends; ``concurrency`` slots run them. Slots are
long-lived coroutines, so a job costs no task creation."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .._driver import Claimed, Completion, Driver, FetchParams
from .._observe import (
    COMPLETION_OUTCOMES,
    JobClaimed,
    JobFinished,
    JobOutcome,
    Observers,
    emit,
)
from .completer import Completer
from .executor import Executor
from .node import NodeState, Run, Waiting
from .service import Backoff, Env, Outage, Service

__all__ = ["Producer"]

MIN_POLL = 0.002
#: Seconds after a fetch that found work during which polls stay at MIN_POLL (jobs flow).
FLOWING = 1.0
#: Retrying a failed fetch: from 100 ms, doubling, up to 5 s.
FETCH_BACKOFF = Backoff(first=0.1, cap=5.0)
#: The buffer while runs are short, in multiples of ``concurrency``: the claims it allows stay
#: large (up to ``1 + AHEAD`` times ``concurrency`` jobs). In-process, one PostgreSQL worker of
#: no-op jobs at concurrency 10 did about 21,000 jobs/s with 1x, 34,000 with 3x, 36,000 with 7x
#: and 35,000 with 15x (a larger claim costs less per job, in the worker and in the database;
#: beyond 3x little is left, while a buffered job waits longer).
AHEAD = 3
#: A run shorter than this (seconds) lets the producer claim ahead: a buffered job waits at
#: most ``AHEAD`` such runs for a slot.
SHORT_RUN = 0.01
#: The longest a claimed job may wait in the buffer for a slot (seconds; a quarter of the
#: grace when that is less); the watchdog hands back one that waited longer.
MAX_WAIT = 1.0


class Producer(Service):
    """Fetches as many jobs as it has idle slots whenever woken (an insert in this process, a
    notification, a slot going idle, the stager) or when its poll interval runs out.

    Stores that cannot push notifications are polled adaptively: every 2 ms while jobs flow
    (for ``FLOWING`` seconds after a fetch that found work), then doubling while idle up to
    ``poll_interval`` (about ten more empty polls), so jobs dispatched by another process start
    within milliseconds while they flow and an idle node costs the database little.

    **Claiming ahead.** While runs are short (under ``SHORT_RUN``), the producer holds up to
    ``1 + AHEAD`` (4) times ``concurrency`` jobs: the running ones and a buffer of ``AHEAD``
    times as many, and claims exactly the free room as soon as half of it is free. The next
    claim is then in flight while the current jobs run, instead of the node and the database
    taking turns, and claims stay two to four times ``concurrency`` large (a large claim costs
    less per job). A buffered job waits behind at most ``AHEAD`` short runs per slot. It is
    reported by heartbeats like a running one (``NodeState.waiting``), an admin cancel or a
    rescue elsewhere drops it unstarted, shutdown hands it back with its attempt refunded, and
    its timeout clock starts when a slot starts it. The store's own clock for rescuing overdue
    jobs starts at the claim, so a buffered job that has not started within ``wait_limit`` of
    its claim (at most ``MAX_WAIT``, a quarter of the grace) is handed back by the watchdog for
    any node to take. With a grace of 0, or once runs take longer, the producer claims only for
    idle slots.

    ``run_once()`` is one fetch for the free room. ``stop()`` stops fetching, hands back the
    jobs it claimed but never started, and returns; the ``slots`` finish their current job and
    end (the worker waits for them within its grace).
    """

    name = "producer"

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
        env: Env,
        observers: Observers | None = None,
        wait_limit: float = 0.0,
    ) -> None:
        super().__init__(env)
        self.name = f"producer[{queue}]"
        self.outage = Outage(f"fetching from queue {queue!r}", env.logger, env.clock)
        self.queue = queue
        self.concurrency = concurrency
        self._store = store
        self._node = node
        self._executor = executor
        self._completer = completer
        self._max_poll = poll_interval
        # Poll fast only for jobs other processes insert without notifying.
        self._adaptive = not store.supports_notify and not store.in_process
        self._poll = MIN_POLL if self._adaptive else poll_interval
        self._flowing_until = 0.0  # loop time: until then an empty poll keeps the fast interval
        self._on_idle = on_idle
        # The bus's observers (shared: bus.observe applies to running workers).
        self._observers = observers if observers is not None else Observers()
        self._wake = asyncio.Event()  # the fetch loop's
        self._jobs_ready = asyncio.Event()  # the idle slots'
        self._ready: deque[Claimed] = deque()
        self._idle_slots = 0
        self._halted = False  # stop() was called: fetch nothing more
        #: How long a claimed job may wait for a slot; 0: claim only for idle slots.
        self.wait_limit = max(0.0, wait_limit)
        self._extra = 0  # the buffer beyond the slots: AHEAD x concurrency while runs are short
        self._drained = True  # the last fetch came back short: refill only when slots go idle
        self.slots: list[asyncio.Task[None]] = []
        # The last fetch ran while the node was busy and came back short: a poison suspect
        # (which runs only on an idle node) may have been passed over.
        self.retry_when_idle = False

    def wake(self) -> None:
        self._wake.set()

    def _wake_for_stop(self) -> None:
        self._halted = True
        self._wake.set()
        self._jobs_ready.set()

    def _wanted(self) -> int:
        """How many jobs to claim now: the free room, when a slot is idle with nothing ready
        for it or half the room is free; 0 while a poison suspect runs alone."""
        if self._node.isolated:
            return 0
        ready, idle = len(self._ready), self._idle_slots
        extra = self._extra
        room = extra + idle - ready  # capacity (slots + buffer) minus running and ready
        if idle > ready or (extra and room * 2 >= self.concurrency + extra):
            return room
        return 0

    async def run_once(self) -> int:
        """Claim jobs for the free room (none while a poison suspect runs); how many."""
        wanted = self._wanted()
        return await self._fetch(wanted) if wanted > 0 else 0

    async def _main(self) -> None:
        """The fetch loop; starts the slots. Returns once stopped (slots may still run)."""
        self.slots = [asyncio.create_task(self._slot()) for _ in range(self.concurrency)]
        try:
            while not self._halted:
                self._wake.clear()
                try:
                    found = await self.run_once()
                except Exception as exc:
                    delay = FETCH_BACKOFF.delay(self.outage.failures + 1, self.env.rng)
                    self.outage.failed(exc, delay)
                    await self.env.sleep(delay, self._stopping)
                    continue
                self.outage.recovered()
                if found:
                    if self._adaptive:
                        self._poll = MIN_POLL
                        # the poll wait is real time (asyncio.timeout), so is its window
                        self._flowing_until = asyncio.get_running_loop().time() + FLOWING
                    if not self._drained:
                        continue  # a full claim: there may be more, and room for it
                # Nothing found, or fewer than asked: the queue was empty as of the claim, so
                # the next claim waits for news (a slot going idle, an insert, the poll). An
                # immediate empty claim would only delay the start of the jobs just claimed.
                if not self._wake.is_set():
                    await self._wait_for_work()
        finally:
            self._hand_back()

    async def _wait_for_work(self) -> None:
        try:
            async with asyncio.timeout(self._poll):
                await self._wake.wait()
        except TimeoutError:
            if self._adaptive and asyncio.get_running_loop().time() >= self._flowing_until:
                self._poll = min(self._poll * 2, self._max_poll)

    def _hand_back(self) -> None:
        """Claimed but never started: hand back at once, attempt refunded."""
        waiting = self._node.waiting
        while self._ready:
            job = self._ready.popleft()
            entry = waiting.get(job.id)
            if entry is not None and entry.job is job:
                del waiting[job.id]
                self.give_back(job)

    def give_back(self, job: Claimed) -> None:
        """Return ``job``, claimed here but never started (no longer in ``NodeState.waiting``),
        to ``available`` with its attempt refunded. No more claiming ahead until a run ends
        short again: a job that waited past its limit says the slots are held by long runs
        (the node would otherwise claim it back at once, for its buffer)."""
        self._extra = 0
        completion = Completion(job.id, job.attempt, "return")
        self._completer.add(completion)
        if self._observers.of(JobFinished):
            self._finished(job, completion, None)
        node = self._node
        if node.isolated_job == job.id:  # the suspect never started: others may fetch again
            node.isolated_job = None
            self._on_idle(True)

    async def _fetch(self, wanted: int) -> int:
        node = self._node
        async with node.fetch_lock:  # one fetch at a time per node: isolation stays exact
            if self._halted or node.isolated:
                return 0
            carried = self._completer.take()  # finish the last runs in the same statement
            try:
                jobs = await self._store.fetch(
                    FetchParams(
                        self.queue, wanted, node.id, node.isolate_after, not node.busy, carried
                    )
                )
            except BaseException:
                self._completer.restore(carried)
                raise
            self._completer.settle(carried)
            self._drained = len(jobs) < wanted
            self.retry_when_idle = node.busy and self._drained
            if jobs:
                # Claimed for idle slots only (no buffer), they start at once: no wait limit.
                limit = self.wait_limit if self._extra else 0.0
                deadline = asyncio.get_running_loop().time() + limit if limit else None
                waiting = node.waiting
                for job in jobs:
                    waiting[job.id] = Waiting(job, deadline)
                    if job.rescues >= node.isolate_after:
                        node.isolated_job = job.id  # runs alone: fetch nothing else meanwhile
                self._ready.extend(jobs)
                self._jobs_ready.set()
                if self._observers.of(JobClaimed):
                    self._claimed(jobs)
        return len(jobs)

    def _claimed(self, jobs: list[Claimed]) -> None:
        now = self._store.clock.now()
        node, observers, logger = self._node.id, self._observers.of(JobClaimed), self.logger
        for job in jobs:
            event = JobClaimed(
                node, job.id, job.handler, job.queue, job.attempt, job.priority,
                job.scheduled_at, now,
            )  # fmt: skip
            emit(observers, event, logger)

    def _finished(self, job: Claimed, completion: Completion | None, took: float | None) -> None:
        outcome: JobOutcome = "lost"
        error = None
        if completion is not None:
            outcome, error = COMPLETION_OUTCOMES[completion.kind], completion.error
        event = JobFinished(
            self._node.id, job.id, job.handler, job.queue, job.attempt, outcome, took, error
        )
        emit(self._observers.of(JobFinished), event, self.logger)

    async def _slot(self) -> None:
        ready = self._ready
        waiting = self._node.waiting
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        ahead = AHEAD * self.concurrency if self.wait_limit > 0 else 0  # while runs are short
        # Whether going idle is news for the fetch loop: at the start, and after this slot took
        # a job. A slot woken for jobs that others took first goes back to waiting silently
        # (the loop already counted it idle), so one claim does not set off an empty one.
        news = True
        while True:
            if not ready:
                if self._halted:
                    return
                self._idle_slots += 1
                self._jobs_ready.clear()
                if news:
                    self._wake.set()
                try:
                    await self._jobs_ready.wait()
                finally:
                    self._idle_slots -= 1
                news = False
                continue
            if self._halted:
                return  # left in the buffer: the fetch loop hands them back
            job = ready.popleft()
            news = True
            entry = waiting.pop(job.id, None)
            if entry is None or entry.job is not job:  # dropped or handed back meanwhile
                if entry is not None:
                    waiting[job.id] = entry  # a later claim of the same job: still waiting
                continue
            started = loop.time()
            await self._run(job, task, loop, started)
            extra = self._extra = ahead if loop.time() - started < SHORT_RUN else 0
            if extra and not self._drained:
                room = extra + self._idle_slots - len(ready) + 1  # + 1: this slot is free
                if room * 2 >= self.concurrency + extra:
                    self._wake.set()  # half the room is free: claim the next batch now

    async def _run(
        self, job: Claimed, task: asyncio.Task[None], loop: asyncio.AbstractEventLoop,
        started_at: float,
    ) -> None:
        node = self._node
        timeout = self._executor.timeout_of(job)
        run = Run(
            job.id, job.attempt, task, None if timeout is None else started_at + timeout,
            None, job.handler, job.queue,
        )
        node.runs[job.id] = run
        observed = bool(self._observers.of(JobFinished))
        started = self.env.clock.monotonic() if observed else 0.0
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
        if observed:
            self._finished(job, completion, self.env.clock.monotonic() - started)
        if completion is not None:
            self._completer.add(completion)
            kind = completion.kind
            if kind == "completed":
                node.completed += 1
            elif kind == "retry" or (kind == "discard" and completion.error is not None
                                     and completion.error.kind != "discarded"):
                node.failed += 1
        if node.isolated_job == job.id:  # the suspect ended: everyone may fetch again
            node.isolated_job = None
            self._on_idle(True)
        elif not node.busy:  # idle now: a suspect job passed over before may be taken
            self._on_idle(False)
