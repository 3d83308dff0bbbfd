"""The admin operations, once for every SQL dialect: get, list, retry, cancel, delete, stats,
nodes, queue pauses."""

from __future__ import annotations

import builtins
from typing import Any, NamedTuple

from ..._driver import ListParams
from ..._errors import JobNotFound, JobRunning, StoreError, UniqueConflict
from ..._jobrules import admin_cancel_error, finish_keep_mask, holds_key, retry_max_attempts
from ..._types import TERMINAL_STATES, Job, JobState, NodeInfo
from .base import RERUNS as _RERUNS
from .base import SQLBase
from .executor import Tx
from .rows import to_job

__all__ = ["AdminOps"]

_UNTOUCHED_BY_RETRY = (JobState.RUNNING, JobState.AVAILABLE)


class AdminOps(SQLBase):
    async def get(self, job_id: int) -> Job | None:
        row = await self._run(_fetchrow("get_job", {"id": job_id}))
        return None if row is None else to_job(row, self.dialect.codec)

    async def list(self, params: ListParams) -> list[Job]:
        args = {**_filters(params), "newest": params.newest_first}

        async def work(tx: Tx) -> list[Any]:
            return await tx.fetch("list_jobs", args)

        return [to_job(row, self.dialect.codec) for row in await self._run(work)]

    async def count(self, params: ListParams) -> int:
        row = await self._run(_fetchrow("count_jobs", _filters(params)))
        return int(row[0])

    async def capped_stats(self, cap: int) -> dict[str, dict[str, int]]:
        async def work(tx: Tx) -> list[Any]:
            return await tx.fetch("capped_stats", {"cap": max(0, cap)})

        counts: dict[str, dict[str, int]] = {}
        for queue, state, count in await self._run(work):
            counts.setdefault(queue, {})[state] = int(count)
        return counts

    async def finished(self, window: float, buckets: int) -> builtins.list[tuple[int, str, int]]:
        args = {"now": self._now_arg(), "window": float(window), "buckets": int(buckets)}

        async def work(tx: Tx) -> builtins.list[Any]:
            return await tx.fetch("finished_buckets", args)

        return [(int(bucket), state, int(n)) for bucket, state, n in await self._run(work)]

    async def stats(self) -> dict[str, dict[str, int]]:
        async def work(tx: Tx) -> list[Any]:
            return await tx.fetch("stats", {})

        counts: dict[str, dict[str, int]] = {}
        for queue, state, count in await self._run(work):
            counts.setdefault(queue, {})[state] = count
        return counts

    async def retry(self, job_id: int) -> Job:
        """A finished, scheduled or retryable job becomes due now (an available or running job
        is left alone); another job holding its unique key makes it raise UniqueConflict and
        changes nothing."""
        now = self._now_arg()
        channel = self._channel()

        async def work(tx: Tx) -> None:
            job = await self._lock(tx, job_id)
            if job.state in _UNTOUCHED_BY_RETRY:
                return
            if job.contested:
                await self._refuse_if_held(tx, job_id)
            args = {
                "id": job_id,
                "now": now,
                "max_attempts": retry_max_attempts(job.attempt, job.max_attempts),
                "channel": channel,
            }
            await tx.execute("retry_job", args)

        for _ in range(_RERUNS):
            try:
                await self._write(work, atomic=True)
                return await self._job(job_id)
            except Exception as exc:
                if self.kind_of(exc) != "unique":
                    raise
            # A holder committed between the check and the write: name it (or, if it is gone
            # already, try again).
            await self._run(lambda tx: self._refuse_if_held(tx, job_id))
        raise StoreError(f"retry of job {job_id} kept meeting concurrent unique holders")

    async def cancel(self, job_id: int) -> Job:
        """A pending or running job ends cancelled, with the admin's error recorded."""
        now = self._now_arg()

        async def work(tx: Tx) -> None:
            job = await self._lock(tx, job_id)
            if job.state in TERMINAL_STATES:
                return
            cancelled = JobState.CANCELLED
            other = job.contested and await tx.fetchrow("key_holder", {"id": job_id}) is not None
            error = admin_cancel_error(self.dialect.decode_time(job.now), job.attempt)
            await tx.execute(
                "set_state",
                {
                    "id": job_id,
                    "expect": job.state.value,
                    "state": cancelled.value,
                    "now": now,
                    "finalize": True,
                    "unique_states": finish_keep_mask(job.unique_states, cancelled, other),
                    "error": self._error_text(error),
                },
            )

        await self._rerun(work, atomic=True)
        return await self._job(job_id)

    async def delete(self, job_id: int) -> Job:
        """Delete a job that is not running; its last record is returned."""

        async def work(tx: Tx) -> Job:
            job = await self._lock(tx, job_id)
            if job.state is JobState.RUNNING:
                raise JobRunning(job_id)
            row = await tx.fetchrow("get_job", {"id": job_id})
            assert row is not None  # locked above
            await tx.execute("delete_job", {"id": job_id, "expect": job.state.value})
            return to_job(row, self.dialect.codec)

        return await self._write(work, atomic=True)

    async def nodes(self) -> builtins.list[NodeInfo]:
        async def work(tx: Tx) -> builtins.list[Any]:
            return await tx.fetch("nodes", {"now": self._now_arg()})

        decode = self.dialect.decode_time
        return [
            NodeInfo(node, decode(expires), bool(leader), int(running))
            for node, expires, leader, running in await self._run(work)
        ]

    async def pause(self, queue: str) -> None:
        await self._write(_execute("pause_queue", {"queue": queue, "now": self._now_arg()}))

    async def resume(self, queue: str) -> None:
        await self._write(_execute("resume_queue", {"queue": queue, "channel": self._channel()}))

    async def paused(self) -> builtins.list[str]:
        async def work(tx: Tx) -> builtins.list[Any]:
            return await tx.fetch("paused_queues", {})

        return [row[0] for row in await self._run(work)]

    # -- helpers
    async def _lock(self, tx: Tx, job_id: int) -> _Locked:
        row = await tx.fetchrow("lock_job", {"id": job_id, "now": self._now_arg()})
        if row is None:
            raise JobNotFound(job_id)
        state, attempt, max_attempts, has_key, unique_states, now = row
        state = JobState(state)
        contested = bool(has_key) and not holds_key(True, unique_states, state)
        return _Locked(state, attempt, max_attempts, unique_states, contested, now)

    async def _refuse_if_held(self, tx: Tx, job_id: int) -> None:
        holder = await tx.fetchrow("key_holder", {"id": job_id})
        if holder is not None:
            raise UniqueConflict(job_id, holder[0])

    async def _job(self, job_id: int) -> Job:
        job = await self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job


class _Locked(NamedTuple):
    """A job locked for an admin change. ``contested``: it has a unique key it does not hold
    now, so moving it may meet another holder. ``now``: the store's now, as the row gave it."""

    state: JobState
    attempt: int
    max_attempts: int
    unique_states: int
    contested: bool
    now: Any


def _filters(params: ListParams) -> dict[str, Any]:
    """The filter binds list_jobs and count_jobs share."""
    return {
        "state": None if params.state is None else JobState(params.state).value,
        "queue": params.queue,
        "handler": params.handler,
        "limit": max(0, params.limit),
        "text": params.text,
        "after_id": params.after_id,
        "before_id": params.before_id,
    }


def _execute(name: str, args: dict[str, Any]) -> Any:
    async def work(tx: Tx) -> None:
        await tx.execute(name, args)

    return work


def _fetchrow(name: str, args: dict[str, Any]) -> Any:
    async def work(tx: Tx) -> Any:
        return await tx.fetchrow(name, args)

    return work
