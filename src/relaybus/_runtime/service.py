"""The one lifecycle every runtime service shares, and how a service rides out a store outage.

Every service (producer, completer, heartbeat, elector, stager, rescuer, pruner, watchdog) is a
:class:`Service`: ``start()`` runs its loop in a task, ``stop()`` ends it and waits, and
``run_once()`` does one unit of its work (tests call it directly). A failure inside the loop is
logged and retried with :class:`Backoff`; :class:`Outage` keeps the log short while the store
stays down: the first failure with its traceback, then at most one short line every
``QUIET_PERIOD`` seconds, and one line when the service recovers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .._clock import Clock

__all__ = [
    "MAX_BACKOFF",
    "QUIET_PERIOD",
    "Backoff",
    "Env",
    "Outage",
    "Periodic",
    "Service",
    "Sleep",
    "pause",
]

MAX_BACKOFF = 30.0  # the longest a maintenance service waits between attempts while failing
QUIET_PERIOD = 30.0  # while a failure lasts, at most one log line per this many seconds

#: Wait ``seconds``, or less if ``stopping`` is set. Tests inject one that moves a fake clock.
Sleep = Callable[[float, asyncio.Event], Awaitable[None]]


async def pause(seconds: float, stopping: asyncio.Event) -> None:
    """The real :data:`Sleep`: the event loop's timer, cut short by ``stopping``."""
    if stopping.is_set():
        return
    try:
        async with asyncio.timeout(seconds):
            await stopping.wait()
    except TimeoutError:
        pass


@dataclass(frozen=True, slots=True)
class Env:
    """What every service of a node shares: the logger, the clock that times its log lines,
    the way it waits, and the random source of the backoff jitter."""

    logger: logging.Logger
    clock: Clock
    sleep: Sleep = pause
    rng: random.Random = field(default_factory=random.Random)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry ``n`` (1-based) of a failing step: ``first * 2**(n-1)`` capped at
    ``cap``, times a random factor in ``[1 - jitter, 1]`` (so never longer than ``cap``)."""

    first: float
    cap: float
    jitter: float = 0.5

    def delay(self, failures: int, rng: random.Random) -> float:
        raw = min(self.cap, self.first * 2.0 ** min(max(failures, 1) - 1, 60))
        return raw * (1.0 - self.jitter * rng.random())


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name


class Outage:
    """The log of one failing step (``what``): the first failure with its traceback, then at
    most one short line (no traceback) per ``quiet`` seconds, then one line on recovery."""

    __slots__ = ("_clock", "_last_line", "_logger", "_quiet", "_since", "failures", "what")

    def __init__(
        self, what: str, logger: logging.Logger, clock: Clock, quiet: float = QUIET_PERIOD
    ) -> None:
        self.what = what
        self.failures = 0
        self._logger = logger
        self._clock = clock
        self._quiet = quiet
        self._since = 0.0
        self._last_line = 0.0

    def failed(self, exc: BaseException, retry_in: float) -> None:
        now = self._clock.monotonic()
        self.failures += 1
        if self.failures == 1:
            self._since = self._last_line = now
            self._logger.error(
                "%s failed; retrying in %.2gs", self.what, retry_in, exc_info=exc
            )
        elif now - self._last_line >= self._quiet:
            self._last_line = now
            self._logger.warning(
                "%s still failing: %d failures in %.0fs, last %s; retrying in %.2gs",
                self.what, self.failures, now - self._since, _brief(exc), retry_in,
            )

    def recovered(self) -> None:
        if self.failures:
            self._logger.info(
                "%s recovered after %d failures in %.0fs",
                self.what, self.failures, self._clock.monotonic() - self._since,
            )
            self.failures = 0


class Service:
    """The lifecycle contract: ``start()``, ``stop()``, ``run_once()``.

    Subclasses implement ``run_once`` and ``_main`` (the loop ``start`` runs until
    ``self._stopping`` is set). ``stop`` sets it, wakes the loop (``_wake_for_stop``), cancels
    the loop when ``cancel_on_stop`` (work that is safe to interrupt), waits for it, and logs
    whatever it ended with: a service never fails silently and never takes the worker down.
    """

    name = "service"
    cancel_on_stop = False

    def __init__(self, env: Env) -> None:
        self.env = env
        self.logger = env.logger
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> Any:
        raise NotImplementedError

    async def _main(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} is already started")
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(
            self._main(), name=f"relaybus-{self.name}"
        )

    def _wake_for_stop(self) -> None:
        """Hook: end any wait of the loop that does not watch ``_stopping``."""

    async def stop(self) -> None:
        self._stopping.set()
        self._wake_for_stop()
        task, self._task = self._task, None
        if task is None:
            return
        if self.cancel_on_stop:
            task.cancel()
        await asyncio.wait([task])  # never raises: the outcome is read below
        if task.cancelled():
            if not self.cancel_on_stop:
                self.logger.warning("%s was cancelled", self.name)
        elif (exc := task.exception()) is not None:
            self.logger.error("%s stopped with an error", self.name, exc_info=exc)


class Periodic(Service):
    """A service that does ``run_once()`` every ``interval`` seconds until stopped.

    A failed tick is retried after ``backoff`` (growing while the failure lasts), logged through
    :class:`Outage`. ``active()`` lets leader-only services skip ticks while the node is not
    the leader (see :class:`~relaybus._runtime.elector.Elector`).
    """

    cancel_on_stop = True
    leader_only = False

    def __init__(self, interval: float, env: Env, backoff: Backoff | None = None) -> None:
        super().__init__(env)
        self.interval = interval
        self.backoff = backoff or Backoff(first=min(interval, 1.0), cap=MAX_BACKOFF)
        self.outage = Outage(self.name, env.logger, env.clock)
        self.ran = asyncio.Event()  # set after each successful run_once (a test signal)

    def active(self) -> bool:
        """Whether this tick should run (leader-only services override)."""
        return True

    async def tick(self) -> float:
        """One tick: ``run_once`` if active; returns how long to wait before the next."""
        if not self.active():
            return self.interval
        try:
            await self.run_once()
        except Exception as exc:
            delay = self.backoff.delay(self.outage.failures + 1, self.env.rng)
            self.outage.failed(exc, delay)
            return delay
        self.outage.recovered()
        self.ran.set()
        return self.interval

    async def _main(self) -> None:
        while not self._stopping.is_set():
            delay = await self.tick()
            await self.env.sleep(delay, self._stopping)
