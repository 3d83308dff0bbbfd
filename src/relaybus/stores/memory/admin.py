"""MemoryStore's admin operations: get, list, retry, cancel, delete, stats, nodes, pauses."""

from __future__ import annotations

import builtins

from ..._driver import ListParams
from ..._errors import JobNotFound, JobRunning, UniqueConflict
from ..._jobrules import admin_cancel_error, retry_max_attempts
from ..._types import TERMINAL_STATES, Job, JobState, NodeInfo
from .state import MemoryState, Row

__all__ = ["MemoryAdmin"]

_AVAILABLE = JobState.AVAILABLE
_RUNNING = JobState.RUNNING


class MemoryAdmin(MemoryState):
    # -- admin
    def _row(self, job_id: int) -> Row:
        row = self._jobs.get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        return row

    async def get(self, job_id: int) -> Job | None:
        self._check_open()
        row = self._jobs.get(job_id)
        return None if row is None else row.to_job()

    async def list(self, params: ListParams) -> list[Job]:
        self._check_open()
        result: list[Job] = []
        if params.limit <= 0:
            return result
        for job_id in sorted(self._jobs, reverse=params.newest_first):
            row = self._jobs[job_id]
            if _matches(job_id, row, params):
                result.append(row.to_job())
                if len(result) >= params.limit:
                    break
        return result

    async def count(self, params: ListParams) -> int:
        self._check_open()
        found = 0
        for job_id, row in self._jobs.items():
            if found >= params.limit:
                break
            found += _matches(job_id, row, params)
        return found

    async def capped_stats(self, cap: int) -> dict[str, dict[str, int]]:
        self._check_open()
        counts: dict[str, dict[str, int]] = {}
        seen: dict[JobState, int] = {}
        for row in self._jobs.values():
            if seen.get(row.state, 0) >= cap:
                continue
            seen[row.state] = seen.get(row.state, 0) + 1
            by_state = counts.setdefault(row.queue, {})
            by_state[row.state.value] = by_state.get(row.state.value, 0) + 1
        return counts

    async def finished(self, window: float, buckets: int) -> builtins.list[tuple[int, str, int]]:
        self._check_open()
        now = self.clock.now().timestamp()
        since = now - window
        counts: dict[tuple[int, str], int] = {}
        for row in self._jobs.values():
            at = row.finalized_at
            if row.state not in TERMINAL_STATES or at is None:
                continue
            stamp = at.timestamp()
            if since < stamp <= now:
                key = (int((stamp - since) * buckets / window), row.state.value)
                counts[key] = counts.get(key, 0) + 1
        return [(bucket, state, n) for (bucket, state), n in counts.items()]

    async def retry(self, job_id: int) -> Job:
        self._check_open()
        row = self._row(job_id)
        if row.state in (_RUNNING, _AVAILABLE):
            return row.to_job()
        now = self.clock.now()
        old_scheduled = row.scheduled_at
        row.scheduled_at = now
        holder = self._move(row, _AVAILABLE, now)
        if holder is not None:
            row.scheduled_at = old_scheduled
            raise UniqueConflict(job_id, holder)
        row.max_attempts = retry_max_attempts(row.attempt, row.max_attempts)
        return row.to_job()

    async def cancel(self, job_id: int) -> Job:
        self._check_open()
        row = self._row(job_id)
        if row.state in TERMINAL_STATES:
            return row.to_job()
        now = self.clock.now()
        row.errors.append(admin_cancel_error(now, row.attempt))
        self._move(row, JobState.CANCELLED, now)
        return row.to_job()

    async def stats(self) -> dict[str, dict[str, int]]:
        self._check_open()
        counts: dict[str, dict[str, int]] = {}
        for row in self._jobs.values():
            by_state = counts.setdefault(row.queue, {})
            by_state[row.state.value] = by_state.get(row.state.value, 0) + 1
        return counts

    async def delete(self, job_id: int) -> Job:
        self._check_open()
        row = self._row(job_id)
        if row.state is _RUNNING:
            raise JobRunning(job_id)
        job = row.to_job()
        del self._jobs[job_id]  # stale heap and deque entries are skipped when popped
        key = row.unique_key
        if key is not None and row.holds_key() and self._holders.get(key) == job_id:
            del self._holders[key]
        return job

    async def nodes(self) -> builtins.list[NodeInfo]:
        self._check_open()
        now = self.clock.now()
        running: dict[str, int] = {}
        for job_id in self._running:
            node = self._jobs[job_id].attempted_by or ""
            running[node] = running.get(node, 0) + 1
        leader = self._leader[0] if self._leader is not None and self._leader[1] > now else None
        return [
            NodeInfo(node, expires, node == leader, running.get(node, 0))
            for node, expires in sorted(self._nodes.items())
            if expires > now
        ]

    async def pause(self, queue: str) -> None:
        self._check_open()
        self._paused.add(queue)

    async def resume(self, queue: str) -> None:
        self._check_open()
        self._paused.discard(queue)

    async def paused(self) -> builtins.list[str]:
        self._check_open()
        return sorted(self._paused)


def _matches(job_id: int, row: Row, params: ListParams) -> bool:
    """Whether a job passes every filter of ``params`` (the SQL stores' list_jobs WHERE)."""
    return (
        (params.after_id is None or job_id > params.after_id)
        and (params.before_id is None or job_id < params.before_id)
        and (params.state is None or row.state is params.state)
        and (params.queue is None or row.queue == params.queue)
        and (params.handler is None or row.handler == params.handler)
        and (params.text is None or _contains(row, params.text))
    )


def _contains(row: Row, text: str) -> bool:
    """``text`` in the stored payload or meta JSON (as the SQL stores search their text)."""
    needle = text.encode()
    return needle in row.payload or needle in row.meta
