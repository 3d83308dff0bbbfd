"""Runtime events for observers (``bus.observe(callback)``): what dispatch and the worker did.

Near the leaves (it imports only ``_types``, ``_errors`` and ``_driver``): the bus and every
runtime service import it. An observer is a plain callable taking one event; it is called
synchronously, in the task that did the work, so it must be quick (hand slow work to a queue or
a task of its own). An observer that raises is logged and skipped; it never changes what the
runtime does.

An observer may ask for some event classes only (``bus.observe(callback, kinds=...)``). Each
place that reports asks ``observers.of(EventClass)`` (a cached tuple) first: when nothing
observes that class, the runtime pays one dictionary lookup there and builds no event.

    RuntimeEvent
    ├── JobsInserted        one ``insert_many`` of a dispatch (its jobs, timing, error)
    ├── JobClaimed          a node claimed a job (queue wait: scheduled_at to the claim)
    ├── JobFinished         a claimed job's run ended, with its outcome and duration
    ├── JobRescued          the leader returned (or discarded) a stuck job
    ├── LeadershipGained, LeadershipLost
    └── NodeStarted, NodeStopped
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from ._driver import Driver, Inserted, NewJob
from ._errors import ConfigurationError
from ._types import InsertOutcome, JobError, JobState

__all__ = [
    "COMPLETION_OUTCOMES",
    "InsertedJob",
    "JobClaimed",
    "JobFinished",
    "JobOutcome",
    "JobRescued",
    "JobsInserted",
    "LeadershipGained",
    "LeadershipLost",
    "NodeStarted",
    "NodeStopped",
    "Observer",
    "RuntimeEvent",
    "Observers",
    "emit",
    "insert_observed",
]

#: How a run ended, seen from the node that ran it. ``returned``: handed back unstarted or
#: stopped by a graceful shutdown (attempt refunded); ``lost``: the store took the job away
#: meanwhile (admin cancel, or rescued elsewhere), so nothing was written.
JobOutcome = Literal[
    "completed", "retried", "snoozed", "cancelled", "discarded", "returned", "lost"
]

#: A Completion's kind, as the outcome observers see.
COMPLETION_OUTCOMES: dict[str, JobOutcome] = {
    "completed": "completed",
    "retry": "retried",
    "snooze": "snoozed",
    "cancel": "cancelled",
    "discard": "discarded",
    "return": "returned",
}


class RuntimeEvent(msgspec.Struct, frozen=True):
    """Base of every event an observer receives."""


class InsertedJob(msgspec.Struct, frozen=True):
    """One job of an insert: its id (the holder's on a duplicate), handler, queue, outcome."""

    id: int
    handler: str
    queue: str
    outcome: InsertOutcome


class JobsInserted(RuntimeEvent, frozen=True):
    """One insert of a dispatch (``dispatch`` or ``dispatch_many``): the jobs in input order,
    when it started (the store's clock), how long it took (seconds) and the error it raised,
    if any (then ``jobs`` is empty). Reported in the dispatching task, after the insert."""

    jobs: tuple[InsertedJob, ...]
    started_at: datetime
    duration: float
    error: BaseException | None = None


class JobClaimed(RuntimeEvent, frozen=True):
    """``node`` claimed a job; ``claimed_at`` is the store's clock at the claim. ``wait`` is the
    queue wait up to the claim (while runs are short a node claims ahead, so the job may then
    wait in the node's buffer for a moment before it starts)."""

    node: str
    job_id: int
    handler: str
    queue: str
    attempt: int
    priority: int
    scheduled_at: datetime
    claimed_at: datetime

    @property
    def wait(self) -> float:
        """Seconds from ``scheduled_at`` (when the job was due) to the claim, at least 0."""
        return max(0.0, (self.claimed_at - self.scheduled_at).total_seconds())


class JobFinished(RuntimeEvent, frozen=True):
    """A claimed job's run ended on ``node`` (every :class:`JobClaimed` gets one).

    ``duration``: seconds the run took (the store clock's monotonic time), ``None`` for a job
    handed back before it started; ``error``: the attempt's error record, if any
    (``error.kind`` is ``"timeout"`` for a timeout)."""

    node: str
    job_id: int
    handler: str
    queue: str
    attempt: int
    outcome: JobOutcome
    duration: float | None
    error: JobError | None = None


class JobRescued(RuntimeEvent, frozen=True):
    """The leader ``node`` rescued a stuck running job: ``state`` is ``retryable`` (due now) or
    ``discarded`` (attempts exhausted, or ``worker_lost``)."""

    node: str
    job_id: int
    handler: str
    queue: str
    attempt: int
    state: JobState


class LeadershipGained(RuntimeEvent, frozen=True):
    """``node`` became the leader (it runs the stager, rescuer and pruner)."""

    node: str


class LeadershipLost(RuntimeEvent, frozen=True):
    """``node`` is no longer the leader (lost the election, its lease lapsed, or resigned)."""

    node: str


class NodeStarted(RuntimeEvent, frozen=True):
    """A worker started on ``node``, serving ``queues`` (name → concurrency)."""

    node: str
    queues: dict[str, int]


class NodeStopped(RuntimeEvent, frozen=True):
    """The worker of ``node`` stopped (its jobs ended or were handed back; row released)."""

    node: str


Observer = Callable[[RuntimeEvent], object]


Kinds = tuple[type[RuntimeEvent], ...]


class Observers:
    """A bus's observers, each with the event classes it takes (None: every event). One
    instance is shared with every worker of the bus, so ``bus.observe`` applies to running
    workers too. ``of(cls)``: the observers of events of class ``cls``, as a tuple cached until
    the next change."""

    __slots__ = ("_entries", "_of")

    def __init__(self) -> None:
        self._entries: list[tuple[Observer, Kinds | None]] = []
        self._of: dict[type[RuntimeEvent], tuple[Observer, ...]] = {}

    def add(
        self, observer: Observer, kinds: Iterable[type[RuntimeEvent]] | None = None
    ) -> Callable[[], None]:
        """Add ``observer`` (of the events of ``kinds`` only, if given); returns its remover."""
        if not callable(observer):
            raise ConfigurationError(f"observe() takes a callable, not {observer!r}")
        wanted: Kinds | None = None
        if kinds is not None:
            items = tuple(kinds) if isinstance(kinds, Iterable) else ()
            if not items or not all(
                isinstance(k, type) and issubclass(k, RuntimeEvent) for k in items
            ):
                raise ConfigurationError(
                    f"observe(kinds=...) takes rb.RuntimeEvent classes, not {kinds!r}"
                )
            wanted = items
        entry = (observer, wanted)
        self._entries.append(entry)
        self._of.clear()

        def remove() -> None:
            if entry in self._entries:
                self._entries.remove(entry)
                self._of.clear()

        return remove

    def of(self, cls: type[RuntimeEvent]) -> tuple[Observer, ...]:
        found = self._of.get(cls)
        if found is None:
            found = self._of[cls] = tuple(
                observer
                for observer, kinds in self._entries
                if kinds is None or issubclass(cls, kinds)
            )
        return found

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def emit(observers: Sequence[Observer], event: RuntimeEvent, logger: logging.Logger) -> None:
    """Give ``event`` to every observer; one that raises is logged and the rest still run."""
    for observer in observers:
        try:
            observer(event)
        except Exception:
            logger.exception("observer %r failed on %s", observer, type(event).__name__)


async def insert_observed(
    store: Driver,
    new_jobs: list[NewJob],
    conn: Any,
    observers: Sequence[Observer],
    logger: logging.Logger,
) -> list[Inserted]:
    """``store.insert_many``, reported to ``observers`` as ``JobsInserted`` (failure included)."""
    clock = store.clock
    started_at, started = clock.now(), clock.monotonic()
    try:
        inserted = await store.insert_many(new_jobs, conn)
    except BaseException as exc:
        emit(observers, JobsInserted((), started_at, clock.monotonic() - started, exc), logger)
        raise
    jobs = tuple(
        InsertedJob(row.id, new.handler, new.queue, row.outcome)
        for row, new in zip(inserted, new_jobs, strict=True)
    )
    emit(observers, JobsInserted(jobs, started_at, clock.monotonic() - started), logger)
    return inserted
