"""``bus.jobs``: the admin API (the CLI and any UI build on this, never on raw SQL)."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from ._driver import ListParams
from ._errors import JobNotFound, JobRunning, UniqueConflict
from ._types import TERMINAL_STATES, Job, JobState, QueueInfo
from ._validate import check_job_id, check_name, quoted

if TYPE_CHECKING:
    from ._bus import Bus

__all__ = ["BULK_LIMIT", "Jobs", "Queues"]

#: The most jobs one bulk admin call changes (by default).
BULK_LIMIT = 1000


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

    async def stats(self) -> dict[str, dict[str, int]]:
        """Job counts by queue and state."""
        return await self._bus.store.stats()

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
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, not {quoted(limit)}")
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

    async def list(self) -> builtins.list[QueueInfo]:
        """Every queue that holds jobs or is paused, with its job counts by state."""
        counts = await self._bus.store.stats()
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
