"""Leaf types shared by the public API, the runtime and every store.

This module imports nothing else from relaybus, so every other module may import it. Records made
once per job on the hot path are msgspec Structs (several times cheaper to create than frozen
dataclasses); admin records are plain frozen dataclasses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict

import msgspec

__all__ = [
    "PENDING_STATES",
    "TERMINAL_STATES",
    "TRACE_META_KEY",
    "DispatchKeywords",
    "DispatchResult",
    "ErrorMode",
    "InsertOutcome",
    "InsertResult",
    "Job",
    "JobError",
    "JobInfo",
    "JobState",
    "NodeInfo",
    "Priority",
    "QueueInfo",
    "Throughput",
    "state_mask",
]


#: The reserved meta key under which trace context travels with a job (``relaybus.otel``
#: writes the W3C ``traceparent``/``tracestate`` there). Unique keys ignore it, so a traced
#: and an untraced dispatch of the same job are duplicates.
TRACE_META_KEY = "relaybus.trace"


class JobState(enum.StrEnum):
    """The state of a job. A ``str`` enum: ``JobState.RUNNING == "running"``."""

    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    RUNNING = "running"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DISCARDED = "discarded"

    @property
    def bit(self) -> int:
        """This state's bit in a unique-states mask (stable: stored in databases)."""
        return _STATE_BITS[self]


_STATE_BITS = {state: 1 << i for i, state in enumerate(JobState)}

PENDING_STATES: frozenset[JobState] = frozenset(
    {JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING, JobState.RETRYABLE}
)
TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.CANCELLED, JobState.DISCARDED}
)


def state_mask(states: frozenset[JobState] | set[JobState]) -> int:
    """The bitmask of ``states`` (see :attr:`JobState.bit`)."""
    mask = 0
    for state in states:
        mask |= state.bit
    return mask


class Priority(enum.IntEnum):
    """Named priorities. Any integer 0-9 is valid; lower runs first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3


@dataclass(frozen=True, slots=True)
class JobError:
    """One failed, cancelled, discarded or rescued attempt of a job."""

    at: datetime
    attempt: int
    kind: str
    message: str
    traceback: str | None = None


class JobInfo(msgspec.Struct, frozen=True):
    """What a running handler knows about its job (``ctx.job``)."""

    id: int
    handler: str
    attempt: int
    max_attempts: int
    queue: str
    priority: int
    meta: dict[str, Any]
    inserted_at: datetime
    scheduled_at: datetime


@dataclass(frozen=True, slots=True)
class Job:
    """A job record as the admin API returns it (a snapshot; never updated in place)."""

    id: int
    handler: str
    event: str
    queue: str
    priority: int
    state: JobState
    attempt: int
    max_attempts: int
    payload: Any
    meta: dict[str, Any]
    errors: tuple[JobError, ...]
    inserted_at: datetime
    scheduled_at: datetime
    attempted_at: datetime | None
    attempted_by: str | None
    finalized_at: datetime | None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A live node as ``bus.nodes()`` returns it: its lease runs until ``expires_at`` (the
    store's clock); ``running`` counts the jobs it runs now."""

    node: str
    expires_at: datetime
    leader: bool
    running: int


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue as ``bus.queues.list()`` returns it: job counts by state, and whether paused."""

    name: str
    paused: bool
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class Throughput:
    """Jobs finished over the last ``window`` seconds (``bus.jobs.throughput()``): the window
    cut in ``len(buckets)`` equal parts, oldest first, each counting the jobs that ended
    ``completed``, ``cancelled`` or ``discarded`` in it (the store's clock)."""

    window: float
    buckets: tuple[dict[str, int], ...]

    def total(self, state: str) -> int:
        """Jobs that ended in ``state`` over the whole window."""
        return sum(bucket.get(state, 0) for bucket in self.buckets)

    @property
    def failure_rate(self) -> float | None:
        """Discarded / (completed + discarded) over the window; None when nothing ended."""
        done, failed = self.total("completed"), self.total("discarded")
        return None if done + failed == 0 else failed / (done + failed)


InsertOutcome = Literal["inserted", "duplicate", "replaced"]


class InsertResult(msgspec.Struct, frozen=True):
    """The result of inserting one job: its id (the existing job's on a duplicate)."""

    id: int
    handler: str
    outcome: InsertOutcome


class DispatchResult(msgspec.Struct):
    """What ``dispatch`` did for one event: one :class:`InsertResult` per job handler."""

    event: Any
    jobs: list[InsertResult] = msgspec.field(default_factory=list)


#: How ``dispatch`` reports failed inline handlers: raise a ``DispatchError``, or log them.
ErrorMode = Literal["raise", "log"]


class DispatchKeywords(TypedDict, total=False):
    """The keyword options of ``Bus.dispatch`` (each defaults to ``None``)."""

    meta: dict[str, Any] | None
    delay: float | timedelta | None
    at: datetime | None
    priority: int | None
    queue: str | None
    conn: Any
    errors: ErrorMode | None
