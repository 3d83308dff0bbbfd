"""``bus.jobs``: the admin API (the CLI and any UI build on this, never on raw SQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._driver import ListParams
from ._types import Job, JobState
from ._validate import check_job_id, check_name

if TYPE_CHECKING:
    from ._bus import Bus

__all__ = ["Jobs"]


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
    ) -> list[Job]:
        """Jobs matching every given filter, oldest id first."""
        if queue is not None:
            check_name("queue", queue)
        if handler is not None:
            check_name("handler", handler)
        return await self._bus.store.list(
            ListParams(
                state=JobState(state) if state is not None else None,
                queue=queue,
                handler=handler,
                limit=max(0, int(limit)),
            )
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
