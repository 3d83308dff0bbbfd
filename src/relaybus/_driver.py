"""The Driver seam: job-level operations every store implements.

INTERNAL: this protocol is not public API and may change in any release. The runtime (producer,
executor, completer, maintenance services) and the admin API talk to stores only through it, so a
new database needs a new Driver and nothing else. Each operation takes a small frozen params
object; each store chooses its own algorithm (UPDATE ... RETURNING with SKIP LOCKED on
PostgreSQL, select-then-update on MySQL, single-writer transactions on SQLite, dicts and heaps in
memory).

Time: every operation reads "now" from the store's own clock (the database's clock on server
databases, the injected clock on the memory and SQLite stores). Callers pass *delays* relative to
that clock, never absolute times computed elsewhere, except where the user gave one (``at=``).

Fencing: every write about a running job is a compare-and-set on (id, state=running, attempt),
so a stale writer changes nothing.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from ._clock import Clock
from ._types import InsertOutcome, Job, JobError, JobState, NodeInfo

__all__ = [
    "Claimed",
    "Completion",
    "CompletionKind",
    "Driver",
    "ElectParams",
    "FetchParams",
    "HeartbeatParams",
    "Inserted",
    "LifecycleJobs",
    "ListParams",
    "NewJob",
    "PruneParams",
    "RescueParams",
    "Rescued",
    "StageParams",
]


class NewJob(msgspec.Struct, frozen=True, gc=False):
    """One job to insert. ``payload`` and ``meta`` are JSON bytes (meta: an object).

    Untracked by the garbage collector (``gc=False``): no field can lead back to the job (text,
    bytes, numbers, a datetime, the handler's own replace table), so it can be in no cycle, and
    a batch of 1,000 dispatches no longer brings on collections of its own."""

    handler: str
    event: str
    queue: str
    priority: int
    max_attempts: int
    payload: bytes
    meta: bytes
    timeout: float | None
    delay: float | None = None  # seconds after the store's now; None and at=None: due now
    at: datetime | None = None  # absolute due time (timezone-aware); wins over delay
    unique_key: bytes | None = None  # base key; the store adds the period bucket
    unique_period: float | None = None
    unique_states: int = 0  # JobState bitmask; 0 = not unique
    replace: Mapping[JobState, tuple[str, ...]] = msgspec.field(default_factory=dict)


class Inserted(msgspec.Struct, frozen=True):
    """Job ids are unique and increasing, but may skip (a duplicate insert can use one up)."""

    id: int
    outcome: InsertOutcome


@dataclass(frozen=True, slots=True)
class FetchParams:
    """Claim up to ``limit`` available jobs of ``queue`` for ``node``, in priority order.

    The runtime never cancels a fetch in flight (a claim cannot be taken back by cancelling the
    caller); a store that sees its caller cancelled after claiming may return the jobs.

    Jobs rescued ``isolate_after`` times or more run alone: only when ``idle`` is true, and then
    the store returns that one job and nothing else.

    ``complete``: completions to apply first, in the same transaction and fenced exactly as
    ``complete_many`` (a node finishes its last runs and claims the next ones in one round
    trip). They are applied even when ``limit`` is 0.
    """

    queue: str
    limit: int
    node: str
    isolate_after: int
    idle: bool
    complete: Sequence[Completion] = ()


class Claimed(msgspec.Struct):
    """A job claimed by a node: now ``running`` with ``attempt`` already incremented."""

    id: int
    handler: str
    event: str
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    payload: bytes
    meta: dict[str, Any]
    inserted_at: datetime
    scheduled_at: datetime
    timeout: float | None
    rescues: int
    #: Why the row could not be read as stored (a field that does not decode: meta that is not
    #: a JSON object, text that is not UTF-8, JSON nested too deeply); the runtime records it as
    #: the attempt's ``decode_error`` instead of running the handler.
    problem: str | None = None


CompletionKind = Literal["completed", "retry", "snooze", "cancel", "discard", "return"]


class Completion(msgspec.Struct, frozen=True):
    """The end of one run, applied only if the job is still (running, attempt).

    - completed: → completed.
    - retry: error appended; → retryable due after ``delay`` (→ available when ``delay`` is 0).
    - snooze: attempt refunded; → scheduled after ``delay`` (→ available when 0); no error.
    - cancel / discard: error appended; → cancelled / discarded.
    - return: attempt refunded; → available (graceful stop); no error.
    """

    id: int
    attempt: int
    kind: CompletionKind
    error: JobError | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class HeartbeatParams:
    """Stamp ``node`` alive until now + ``ttl``; report which of its ``running`` (id, attempt)
    pairs are no longer running there (cancelled by an admin, or rescued)."""

    node: str
    ttl: float
    running: Sequence[tuple[int, int]] = ()


@dataclass(frozen=True, slots=True)
class ElectParams:
    """Become or stay leader for ``ttl`` seconds (the store's clock)."""

    node: str
    ttl: float


@dataclass(frozen=True, slots=True)
class RescueParams:
    """Return running jobs of expired nodes, and jobs running past their timeout + ``grace``.

    → retryable, due now, with a ``rescued`` error; → discarded when attempts are exhausted, or
    with ``worker_lost`` once rescued ``max_rescues`` times."""

    grace: float
    max_rescues: int
    limit: int = 1000


class Rescued(msgspec.Struct, frozen=True):
    """One job ``rescue`` ended: now ``state`` (retryable, or discarded)."""

    id: int
    handler: str
    queue: str
    attempt: int
    state: JobState


@dataclass(frozen=True, slots=True)
class StageParams:
    """Make due scheduled/retryable jobs available (unique conflicts → discarded)."""

    limit: int = 1000


@dataclass(frozen=True, slots=True)
class PruneParams:
    """Delete finished jobs older than their state's retention (seconds), at most ``limit``."""

    retention: Mapping[JobState, float]
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class ListParams:
    """Jobs matching every given filter, by id: oldest first, or ``newest_first``. ``text``: a
    substring of the stored payload or meta JSON (case-sensitive); ``after_id`` /
    ``before_id``: a cursor (ids strictly above / below)."""

    state: JobState | None = None
    queue: str | None = None
    handler: str | None = None
    limit: int = 100
    text: str | None = None
    after_id: int | None = None
    before_id: int | None = None
    newest_first: bool = False


class LifecycleJobs(Protocol):
    """How a store learns the jobs of a lifecycle event (``Bus(lifecycle_events=True)`` sets
    one on its store as ``store.lifecycle``): the bus plans them, the store inserts them in the
    transaction of the state change. Never raises; a job record that cannot be encoded is
    logged and raises no jobs (a state change is never blocked by its lifecycle event)."""

    def jobs_for(self, event: str, job: Job) -> list[NewJob]:
        """The jobs of the handlers of lifecycle event ``event`` (a wire name) about ``job``."""
        ...


@runtime_checkable
class Driver(Protocol):
    """What a store implements. See the module docstring: INTERNAL, not semver-stable."""

    clock: Clock
    #: True when the store pushes insert notifications across processes (``subscribe``).
    supports_notify: bool
    #: True when every job comes from this process (MemoryStore): local wake-ups see every
    #: insert, so workers need not poll fast for other processes' jobs.
    in_process: bool
    #: Set by a ``Bus(lifecycle_events=True)``: the store inserts lifecycle event jobs in the
    #: transaction of each state change that raises one (see ``_jobrules.lifecycle_event``).
    lifecycle: LifecycleJobs | None

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def migrate(self) -> None: ...

    # -- producing
    async def insert_many(self, jobs: Sequence[NewJob], conn: Any = None) -> list[Inserted]: ...

    async def fetch(self, params: FetchParams) -> list[Claimed]: ...

    async def complete_many(self, completions: Sequence[Completion]) -> list[int]:
        """Apply completions; return the ids that were applied (the rest were stale)."""
        ...

    def transaction(self, job_id: int, attempt: int) -> AbstractAsyncContextManager[Any]:
        """``ctx.transaction()``: a connection of the store in a transaction whose commit also
        completes run (``job_id``, ``attempt``), fenced like ``complete_many``; a stale run's
        transaction is rolled back (``JobLost``). Stores without connections raise
        ``ConfigurationError`` on entry."""
        ...

    def reserve_connections(self, concurrency: int) -> None:
        """A worker of ``concurrency`` slots starts: size the pool so that its own statements
        keep room while every slot holds a ``transaction`` (at least concurrency + 3
        connections; a pool the store does not own is checked, with a warning)."""
        ...

    # -- nodes and maintenance
    async def heartbeat(self, params: HeartbeatParams) -> list[int]: ...

    async def release_node(self, node: str) -> None: ...

    async def elect(self, params: ElectParams) -> bool: ...

    async def resign(self, node: str) -> None: ...

    async def stage(self, params: StageParams) -> list[str]:
        """Promote due jobs; return the queues that received available jobs."""
        ...

    async def rescue(self, params: RescueParams) -> builtins.list[Rescued]:
        """Rescue up to ``params.limit`` stuck running jobs; return the ones it ended."""
        ...

    async def prune(self, params: PruneParams) -> int: ...

    async def subscribe(self, on_insert: Callable[[str], None]) -> Callable[[], Any] | None:
        """Call ``on_insert(queue)`` whenever a job of ``queue`` becomes available in any
        process (insert, stage, a retry or snooze due now, admin retry), at most once per queue
        per transaction; after a lost connection, announce every queue once, since anything may
        have changed. Return an unsubscribe coroutine function, or None when the store cannot
        push (callers then poll)."""
        ...

    # -- admin
    async def get(self, job_id: int) -> Job | None: ...

    async def list(self, params: ListParams) -> list[Job]: ...

    async def retry(self, job_id: int) -> Job: ...

    async def cancel(self, job_id: int) -> Job: ...

    async def stats(self) -> dict[str, dict[str, int]]: ...

    async def count(self, params: ListParams) -> int:
        """How many jobs match ``params``' filters, counting at most ``params.limit``."""
        ...

    async def capped_stats(self, cap: int) -> dict[str, dict[str, int]]:
        """Job counts by queue and state, reading at most ``cap`` jobs of each state (a state
        whose counts add up to ``cap`` may have more)."""
        ...

    async def finished(self, window: float, buckets: int) -> builtins.list[tuple[int, str, int]]:
        """Jobs finished in the last ``window`` seconds of the store's clock, as
        ``(bucket, state, count)`` rows: ``window`` cut in ``buckets`` equal parts, 0 the
        oldest; only buckets holding jobs."""
        ...

    async def delete(self, job_id: int) -> Job:
        """Delete a job that is not running; return its last record (JobNotFound, JobRunning)."""
        ...

    async def nodes(self) -> builtins.list[NodeInfo]:
        """The nodes whose lease has not expired, with the leader marked."""
        ...

    async def pause(self, queue: str) -> None:
        """From now on no node fetches ``queue`` (idempotent)."""
        ...

    async def resume(self, queue: str) -> None: ...

    async def paused(self) -> builtins.list[str]:
        """The paused queues, sorted."""
        ...
