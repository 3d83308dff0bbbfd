"""``bus.jobs``: the admin API (the CLI and any UI build on this, never on raw SQL)."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from ._driver import ListParams
from ._errors import JobNotFound, JobRunning, UniqueConflict
from ._types import TERMINAL_STATES, Job, JobState, QueueInfo, Throughput
from ._validate import check_job_id, check_name, quoted

if TYPE_CHECKING:
    from ._bus import Bus

__all__ = ["BULK_LIMIT", "COUNT_CAP", "Jobs", "Queues"]

#: The most jobs one bulk admin call changes (by default).
BULK_LIMIT = 1000
#: The most jobs a capped count reads (``count``, ``stats(cap=...)``) by default.
COUNT_CAP = 10_000


class Jobs:
    """Inspect and steer jobs in the bus's store."""

    def __init__(self, bus: Bus[Any]) -> None:
        self._bus = bus

    async def get(self, job_id: int) -> Job | None:
        """The job, or None for an unknown id (TypeError for an id that is not an integer)."""
        return await self._bus.store.get(check_job_id(job_id))

    async def list(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        handler: str | None = None,
        limit: int = 100,
        text: str | None = None,
        after_id: int | None = None,
        before_id: int | None = None,
        order: Literal["oldest", "newest"] = "oldest",
    ) -> builtins.list[Job]:
        """Jobs matching every given filter, oldest id first (``order="newest"``: newest first).
        ``text``: a substring of the payload's or meta's stored JSON (case-sensitive).
        ``after_id`` / ``before_id`` page through a listing: pass the last id of a page."""
        return await self._bus.store.list(
            _list_params(state, queue, handler, limit, text, after_id, before_id, order)
        )

    async def retry(self, job_id: int) -> Job:
        """Make a finished, scheduled or retryable job due now (JobNotFound, UniqueConflict)."""
        job = await self._bus.store.retry(check_job_id(job_id))
        if job.state is JobState.AVAILABLE:
            self._bus.wake(job.queue)
        return job

    async def cancel(self, job_id: int) -> Job:
        """Cancel a pending or running job (a running one is stopped by its node)."""
        job = await self._bus.store.cancel(check_job_id(job_id))
        self._bus.cancel_local(job_id)
        return job

    async def stats(self, *, cap: int | None = None) -> dict[str, dict[str, int]]:
        """Job counts by queue and state. With ``cap``, the store reads at most ``cap`` jobs of
        each state (fast on a table of millions): a state whose counts add up to ``cap`` may
        hold more."""
        if cap is None:
            return await self._bus.store.stats()
        return await self._bus.store.capped_stats(_positive("cap", cap))

    async def count(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        handler: str | None = None,
        text: str | None = None,
        cap: int = COUNT_CAP,
    ) -> int:
        """How many jobs match the filters (as ``list``), counting at most ``cap``: a result
        equal to ``cap`` means "``cap`` or more"."""
        cap = _positive("cap", cap)
        params = _list_params(state, queue, handler, cap, text, None, None, "oldest")
        return await self._bus.store.count(params)

    async def throughput(self, *, window: float = 3600.0, buckets: int = 12) -> Throughput:
        """Jobs finished (completed, cancelled, discarded) over the last ``window`` seconds in
        ``buckets`` equal parts, oldest first, counted by the store."""
        if isinstance(window, bool) or not isinstance(window, int | float) or not window > 0:
            raise ValueError(f"window must be a number of seconds > 0, not {quoted(window)}")
        buckets = _positive("buckets", buckets)
        if buckets > 1000:
            raise ValueError(f"buckets must be at most 1000, not {buckets}")
        parts: list[dict[str, int]] = [{} for _ in range(buckets)]
        for bucket, state, count in await self._bus.store.finished(float(window), buckets):
            part = parts[min(max(bucket, 0), buckets - 1)]
            part[state] = part.get(state, 0) + count
        return Throughput(float(window), tuple(parts))

    async def delete(self, job_id: int) -> Job:
        """Delete a job that is not running and return its last record (JobNotFound; JobRunning
        for a running job: cancel it first)."""
        return await self._bus.store.delete(check_job_id(job_id))

    async def retry_many(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        handler: str | None = None,
        limit: int = BULK_LIMIT,
    ) -> int:
        """``retry`` every job matching the filters, at most ``limit`` (1,000 by default);
        returns how many became due. Jobs another job's unique key blocks are skipped."""
        jobs = await self._matching(state, queue, handler, limit)
        return await _each(jobs, self.retry, (JobNotFound, UniqueConflict))

    async def cancel_many(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        handler: str | None = None,
        limit: int = BULK_LIMIT,
    ) -> int:
        """``cancel`` every pending or running job matching the filters, at most ``limit``;
        returns how many were cancelled."""
        jobs = await self._matching(state, queue, handler, limit)
        pending = [job for job in jobs if job.state not in TERMINAL_STATES]
        return await _each(pending, self.cancel, (JobNotFound,))

    async def delete_many(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        handler: str | None = None,
        limit: int = BULK_LIMIT,
    ) -> int:
        """``delete`` every job that is not running matching the filters, at most ``limit``;
        returns how many were deleted."""
        jobs = await self._matching(state, queue, handler, limit)
        return await _each(jobs, self.delete, (JobNotFound, JobRunning), deleting=True)

    async def _matching(
        self, state: JobState | str | None, queue: str | None, handler: str | None, limit: int
    ) -> builtins.list[Job]:
        limit = _positive("limit", limit)
        params = _list_params(state, queue, handler, limit, None, None, None, "oldest")
        return await self._bus.store.list(params)


class Queues:
    """``bus.queues``: pause and resume queues for every node, and list them."""

    def __init__(self, bus: Bus[Any]) -> None:
        self._bus = bus

    async def pause(self, name: str) -> None:
        """No node fetches ``name`` from now on (running jobs finish; new ones wait)."""
        await self._bus.store.pause(check_name("queue", name))

    async def resume(self, name: str) -> None:
        await self._bus.store.resume(check_name("queue", name))
        self._bus.wake(name)

    async def list(self, *, cap: int | None = None) -> builtins.list[QueueInfo]:
        """Every queue that holds jobs or is paused, with its job counts by state (``cap``:
        counted as ``bus.jobs.stats(cap=...)`` does)."""
        counts = await self._bus.jobs.stats(cap=cap)
        paused = set(await self._bus.store.paused())
        names = sorted(set(counts) | paused)
        return [QueueInfo(name, name in paused, dict(counts.get(name, {}))) for name in names]


async def _each(
    jobs: builtins.list[Job],
    action: Callable[[int], Awaitable[Job]],
    skipped: tuple[type[Exception], ...],
    *,
    deleting: bool = False,
) -> int:
    """Apply ``action`` to each job; how many it changed (a job that went away meanwhile, or
    that ``action`` refuses with one of ``skipped``, does not count)."""
    done = 0
    for job in jobs:
        try:
            after = await action(job.id)
        except skipped:
            continue
        done += deleting or after.state is not job.state
    return done


def _positive(what: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, not {quoted(value)}")
    return value


def _list_params(
    state: JobState | str | None,
    queue: str | None,
    handler: str | None,
    limit: int,
    text: str | None,
    after_id: int | None,
    before_id: int | None,
    order: str,
) -> ListParams:
    if queue is not None:
        check_name("queue", queue)
    if handler is not None:
        check_name("handler", handler)
    if text is not None and not isinstance(text, str):
        raise TypeError(f"text must be a string, not {quoted(text)}")
    if order not in ("oldest", "newest"):
        raise ValueError(f"order must be 'oldest' or 'newest', not {quoted(order)}")
    return ListParams(
        state=JobState(state) if state is not None else None,
        queue=queue,
        handler=handler,
        limit=max(0, int(limit)),
        text=text,
        after_id=None if after_id is None else check_job_id(after_id),
        before_id=None if before_id is None else check_job_id(before_id),
        newest_first=order == "newest",
    )
