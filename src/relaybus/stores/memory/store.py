"""MemoryStore: the default store. Dicts and heaps in this process; fastest; lost on exit.

It implements the same Driver operations and the same job semantics as the database stores (the
conformance suite runs against it), so code written against it moves to a durable store unchanged.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from ..._codec import meta_object
from ..._driver import (
    Claimed,
    Completion,
    ElectParams,
    FetchParams,
    HeartbeatParams,
    Inserted,
    NewJob,
    PruneParams,
    Rescued,
    RescueParams,
    StageParams,
)
from ..._errors import ConfigurationError, StoreError
from ..._jobrules import (
    RunEnd,
    due_state,
    end_of_run,
    replace_fields,
    replaced_state,
    rescue_end,
    unique_conflict_error,
)
from ..._options import bucket_key
from ..._types import JobState
from .admin import MemoryAdmin
from .state import Row

__all__ = ["MemoryStore"]

_AVAILABLE = JobState.AVAILABLE
_RUNNING = JobState.RUNNING


class MemoryStore(MemoryAdmin):
    """In-process store (the default). ``clock`` defaults to the system clock."""

    # -- producing
    async def insert_many(self, jobs: Sequence[NewJob], conn: Any = None) -> list[Inserted]:
        self._check_open()
        if conn is not None:
            raise StoreError("MemoryStore has no connections: conn= is for SQL stores")
        now = self.clock.now()
        return [self._insert(job, now) for job in jobs]

    def _raise_lifecycle(self, jobs: list[NewJob], now: datetime) -> None:
        for job in jobs:
            self._insert(job, now)

    def transaction(self, job_id: int, attempt: int) -> AbstractAsyncContextManager[Any]:
        return _no_transaction()

    def reserve_connections(self, concurrency: int) -> None:
        return None  # no connections

    def _insert(self, job: NewJob, now: datetime) -> Inserted:
        if job.at is not None:
            scheduled_at = job.at
        elif job.delay:
            scheduled_at = now + timedelta(seconds=job.delay)
        else:
            scheduled_at = now
        state = due_state(scheduled_at > now)
        key = None
        if job.unique_key is not None and job.unique_states:
            key = bucket_key(job.unique_key, job.unique_period, now.timestamp())
            holder_id = self._holders.get(key)
            if holder_id is not None:
                return self._on_conflict(self._jobs[holder_id], job, scheduled_at, now)
        row = Row(
            id=self._next_id,
            handler=job.handler,
            event=job.event,
            queue=job.queue,
            priority=job.priority,
            state=state,  # _move files it (fresh=True: it holds nothing yet)
            attempt=0,
            max_attempts=job.max_attempts,
            payload=job.payload,
            meta=job.meta,
            errors=[],
            inserted_at=now,
            scheduled_at=scheduled_at,
            attempted_at=None,
            attempted_by=None,
            finalized_at=None,
            timeout=job.timeout,
            rescues=0,
            unique_key=key,
            unique_states=job.unique_states if key is not None else 0,
        )
        self._next_id += 1
        self._jobs[row.id] = row
        self._move(row, state, now, fresh=True)
        return Inserted(row.id, "inserted")

    def _on_conflict(
        self, row: Row, job: NewJob, scheduled_at: datetime, now: datetime
    ) -> Inserted:
        fields = replace_fields(job.replace, row.state)
        if not fields:
            return Inserted(row.id, "duplicate")
        state = replaced_state(row.state, fields, scheduled_at > now)
        if "payload" in fields:
            row.payload = job.payload
        if "meta" in fields:
            row.meta = job.meta
        if "priority" in fields:
            row.priority = job.priority
        if "queue" in fields:
            row.queue = job.queue
        if "max_attempts" in fields:
            row.max_attempts = job.max_attempts
        if "scheduled_at" in fields:
            row.scheduled_at = scheduled_at
        # Re-file the row in its (possibly new) place; stale heap entries are skipped on pop.
        self._move(row, state, now)
        return Inserted(row.id, "replaced")

    async def fetch(self, params: FetchParams) -> list[Claimed]:
        self._check_open()
        now = self.clock.now()
        if params.complete:
            self._complete(params.complete, now)
        heap = self._available.get(params.queue)
        if not heap or params.queue in self._paused:
            return []
        claimed: list[Claimed] = []
        deferred: list[tuple[int, datetime, int]] = []
        jobs = self._jobs
        while heap and len(claimed) < params.limit:
            entry = heapq.heappop(heap)
            row = jobs.get(entry[2])
            if (
                row is None
                or row.state is not _AVAILABLE
                or row.queue != params.queue
                or row.priority != entry[0]
                or row.scheduled_at != entry[1]
            ):
                continue  # stale entry: the row moved on
            if row.rescues >= params.isolate_after:
                if params.idle and not claimed:
                    claimed.append(self._claim(row, params.node, now))
                    break
                deferred.append(entry)
                continue
            claimed.append(self._claim(row, params.node, now))
        for entry in deferred:
            heapq.heappush(heap, entry)
        return claimed

    def _claim(self, row: Row, node: str, now: datetime) -> Claimed:
        raw = row.meta
        meta, problem = ({}, None) if raw == b"{}" else meta_object(raw)
        row.state = _RUNNING
        self._running.add(row.id)
        row.attempt += 1
        row.attempted_at = now
        row.attempted_by = node
        return Claimed(
            id=row.id,
            handler=row.handler,
            event=row.event,
            queue=row.queue,
            priority=row.priority,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            payload=row.payload,
            meta=meta,
            inserted_at=row.inserted_at,
            scheduled_at=row.scheduled_at,
            timeout=row.timeout,
            rescues=row.rescues,
            problem=problem,
        )

    async def complete_many(self, completions: Sequence[Completion]) -> list[int]:
        self._check_open()
        return self._complete(completions, self.clock.now())

    def _complete(self, completions: Sequence[Completion], now: datetime) -> list[int]:
        applied: list[int] = []
        jobs = self._jobs
        for done in completions:
            row = jobs.get(done.id)
            if row is None or row.state is not _RUNNING or row.attempt != done.attempt:
                continue
            applied.append(done.id)
            self._end_run(row, end_of_run(done), now)
        return applied

    def _end_run(self, row: Row, end: RunEnd, now: datetime) -> None:
        """Apply a decided end of a run (see ``_jobrules``), with its lifecycle event."""
        raised = (
            None
            if self.lifecycle is None  # the hot path: no call per job
            else self._lifecycle_jobs(row, end.state, now, end.error, row.attempt - end.refund)
        )
        if end.error is not None:
            row.errors.append(end.error)
        row.attempt -= end.refund
        row.rescues += end.rescued
        if end.delay is not None:
            row.scheduled_at = now + timedelta(seconds=end.delay)
        self._move(row, end.state, now)
        if raised:
            self._raise_lifecycle(raised, now)

    # -- nodes and maintenance
    async def heartbeat(self, params: HeartbeatParams) -> list[int]:
        self._check_open()
        now = self.clock.now()
        self._nodes[params.node] = now + timedelta(seconds=params.ttl)
        lost = []
        for job_id, attempt in params.running:
            row = self._jobs.get(job_id)
            if (
                row is None
                or row.state is not _RUNNING
                or row.attempt != attempt
                or row.attempted_by != params.node
            ):
                lost.append(job_id)
        return lost

    async def release_node(self, node: str) -> None:
        self._check_open()
        self._nodes.pop(node, None)
        await self.resign(node)

    async def elect(self, params: ElectParams) -> bool:
        self._check_open()
        now = self.clock.now()
        leader = self._leader
        if leader is None or leader[0] == params.node or leader[1] <= now:
            self._leader = (params.node, now + timedelta(seconds=params.ttl))
            return True
        return False

    async def resign(self, node: str) -> None:
        if self._leader is not None and self._leader[0] == node:
            self._leader = None

    async def stage(self, params: StageParams) -> list[str]:
        self._check_open()
        now = self.clock.now()
        queues: set[str] = set()
        due = self._due
        count = 0
        while due and due[0][0] <= now and count < params.limit:
            scheduled_at, job_id = heapq.heappop(due)
            row = self._jobs.get(job_id)
            if (
                row is None
                or row.state not in (JobState.SCHEDULED, JobState.RETRYABLE)
                or row.scheduled_at != scheduled_at
            ):
                continue
            count += 1
            holder = self._move(row, _AVAILABLE, now)
            if holder is not None:
                error = unique_conflict_error(now, row.attempt, holder)
                raised = self._lifecycle_jobs(row, JobState.DISCARDED, now, error, row.attempt)
                row.errors.append(error)
                self._move(row, JobState.DISCARDED, now)
                self._raise_lifecycle(raised, now)
            else:
                queues.add(row.queue)
        return sorted(queues)

    async def rescue(self, params: RescueParams) -> list[Rescued]:
        self._check_open()
        now = self.clock.now()
        rescued: list[Rescued] = []
        for job_id in list(self._running):
            if len(rescued) >= params.limit:
                break
            row = self._jobs[job_id]
            expires = self._nodes.get(row.attempted_by or "")
            node_lost = expires is None or expires <= now
            if not node_lost and not (
                row.timeout is not None
                and row.attempted_at is not None
                and row.attempted_at + timedelta(seconds=row.timeout + params.grace) < now
            ):
                continue
            end = rescue_end(
                job_id=row.id,
                attempt=row.attempt,
                max_attempts=row.max_attempts,
                rescues=row.rescues,
                max_rescues=params.max_rescues,
                node=row.attempted_by,
                node_lost=node_lost,
                now=now,
            )
            self._end_run(row, end, now)
            rescued.append(Rescued(row.id, row.handler, row.queue, row.attempt, end.state))
        return rescued

    async def prune(self, params: PruneParams) -> int:
        self._check_open()
        now = self.clock.now()
        pruned = 0
        for state, retention in params.retention.items():
            finished = self._finished[state]
            horizon = now - timedelta(seconds=retention)
            while finished and finished[0][0] <= horizon and pruned < params.limit:
                finalized_at, job_id = finished.popleft()
                row = self._jobs.get(job_id)
                if row is not None and row.state is state and row.finalized_at == finalized_at:
                    del self._jobs[job_id]
                    if row.holds_key() and row.unique_key is not None:
                        self._holders.pop(row.unique_key, None)
                    pruned += 1
        return pruned

    async def subscribe(self, on_insert: Callable[[str], None]) -> None:
        return None  # one process: the bus wakes its own workers


@asynccontextmanager
async def _no_transaction() -> AsyncIterator[Any]:
    raise ConfigurationError(
        "ctx.transaction() needs a SQL store (PostgresStore, MySQLStore, SQLiteStore): "
        "MemoryStore has no connections and no transactions to join"
    )
    yield  # pragma: no cover
