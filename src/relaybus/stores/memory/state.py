"""MemoryStore's rows and the bookkeeping every operation shares: per-state indexes, unique
holders, nodes, the leader lease, paused queues."""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime

from ..._clock import Clock, SystemClock
from ..._codec import decode_payload, meta_object
from ..._driver import LifecycleJobs, NewJob
from ..._errors import StoreClosed
from ..._jobrules import finish_keep_mask, holds_key, lifecycle_event
from ..._types import TERMINAL_STATES, Job, JobError, JobState

__all__ = ["MemoryState", "Row"]

_AVAILABLE = JobState.AVAILABLE
_RUNNING = JobState.RUNNING


@dataclass(slots=True, eq=False)
class Row:
    id: int
    handler: str
    event: str
    queue: str
    priority: int
    state: JobState
    attempt: int
    max_attempts: int
    payload: bytes
    meta: bytes
    errors: list[JobError]
    inserted_at: datetime
    scheduled_at: datetime
    attempted_at: datetime | None
    attempted_by: str | None
    finalized_at: datetime | None
    timeout: float | None
    rescues: int
    unique_key: bytes | None
    unique_states: int

    def holds_key(self) -> bool:
        return holds_key(self.unique_key is not None, self.unique_states, self.state)

    def to_job(self) -> Job:
        return Job(
            id=self.id,
            handler=self.handler,
            event=self.event,
            queue=self.queue,
            priority=self.priority,
            state=self.state,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            payload=decode_payload(self.payload),
            meta=meta_object(self.meta)[0],
            errors=tuple(self.errors),
            inserted_at=self.inserted_at,
            scheduled_at=self.scheduled_at,
            attempted_at=self.attempted_at,
            attempted_by=self.attempted_by,
            finalized_at=self.finalized_at,
        )


class MemoryState:
    """The in-process state of a MemoryStore (see ``store.py`` and ``admin.py``)."""

    supports_notify = False
    in_process = True

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._open = False
        self._next_id = 1
        self._jobs: dict[int, Row] = {}
        self._available: dict[str, list[tuple[int, datetime, int]]] = {}
        self._due: list[tuple[datetime, int]] = []
        self._running: set[int] = set()
        self._finished: dict[JobState, deque[tuple[datetime, int]]] = {
            state: deque() for state in TERMINAL_STATES
        }
        self._holders: dict[bytes, int] = {}
        self._nodes: dict[str, datetime] = {}
        self._leader: tuple[str, datetime] | None = None
        self._paused: set[str] = set()
        #: Set by a Bus(lifecycle_events=True): the jobs of each lifecycle event.
        self.lifecycle: LifecycleJobs | None = None

    def __repr__(self) -> str:
        return "MemoryStore()"

    # -- lifecycle
    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def migrate(self) -> None:
        """Nothing to migrate: the memory store sets itself up."""

    def _check_open(self) -> None:
        if not self._open:
            raise StoreClosed("MemoryStore is not open: use `async with bus:`")

    # -- state bookkeeping
    def _move_key(self, row: Row, key: bytes, state: JobState, fresh: bool) -> int | None:
        """The unique-holder side of :meth:`_move`: another holder's id if the move would make
        a second holder (then nothing changes)."""
        held = not fresh and row.holds_key()
        will_hold = holds_key(True, row.unique_states, state)
        if will_hold and not held:
            holder = self._holders.get(key)
            if holder is not None and holder != row.id:
                if state not in TERMINAL_STATES:
                    return holder
                row.unique_states = finish_keep_mask(row.unique_states, state, other_holder=True)
            else:
                self._holders[key] = row.id
        elif held and not will_hold and self._holders.get(key) == row.id:
            del self._holders[key]
        return None

    def _move(self, row: Row, state: JobState, now: datetime, fresh: bool = False) -> int | None:
        """Move ``row`` to ``state``, keeping the unique holders and indexes right.

        Returns the id of another job holding ``row``'s key if the move would make a second
        holder; then nothing changes. ``fresh``: the row is new and holds nothing yet.
        """
        if row.unique_key is not None:  # most jobs have no key: nothing to keep right
            holder = self._move_key(row, row.unique_key, state, fresh)
            if holder is not None:
                return holder
        if row.state is _RUNNING:
            self._running.discard(row.id)
        row.state = state
        if state is _AVAILABLE:
            heapq.heappush(
                self._available.setdefault(row.queue, []), (row.priority, row.scheduled_at, row.id)
            )
        elif state is JobState.SCHEDULED or state is JobState.RETRYABLE:
            heapq.heappush(self._due, (row.scheduled_at, row.id))
        elif state is _RUNNING:
            self._running.add(row.id)
        if state in TERMINAL_STATES:
            row.finalized_at = now
            self._finished[state].append((now, row.id))
        else:
            row.finalized_at = None
        return None

    def _lifecycle_jobs(
        self, row: Row, state: JobState, now: datetime, error: JobError | None, attempt: int
    ) -> list[NewJob]:
        """The jobs of the lifecycle event ``row`` raises as it moves to ``state`` with
        ``error``, planned *before* the change is applied: a planner that fails leaves the row
        as it was (the change and its event happen together or not at all)."""
        if self.lifecycle is None:
            return []
        name = lifecycle_event(state, row.event)
        if name is None:
            return []
        before = row.to_job()
        errors = before.errors if error is None else (*before.errors, error)
        after = replace(before, state=state, attempt=attempt, errors=errors, finalized_at=now)
        return self.lifecycle.jobs_for(name, after)

    def _raise_lifecycle(self, jobs: list[NewJob], now: datetime) -> None:
        """Insert the jobs of a lifecycle event (``MemoryStore`` inserts them)."""
        raise NotImplementedError
