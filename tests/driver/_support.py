"""Builders and helpers of the Driver suite: NewJob and Completion builders, and thin wrappers
over the Driver operations that the tests repeat."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from relaybus._driver import (
    Claimed,
    Completion,
    CompletionKind,
    FetchParams,
    HeartbeatParams,
    NewJob,
    RescueParams,
)
from relaybus._types import PENDING_STATES, Job, JobError, JobState, state_mask
from relaybus.testing import FakeClock

S = JobState
HANDLER = "tests.driver.handler"
EVENT = "tests.driver.event"
TIMEOUT = 60.0
#: Unique.states masks: the default (pending states) and one without retryable.
PENDING = state_mask(PENDING_STATES)
NO_RETRYABLE = state_mask({S.SCHEDULED, S.AVAILABLE, S.RUNNING})


def new_job(
    payload: Any = None,
    *,
    queue: str = "default",
    priority: int = 2,
    max_attempts: int = 3,
    meta: Mapping[str, Any] | None = None,
    timeout: float | None = TIMEOUT,
    delay: float | None = None,
    at: datetime | None = None,
    key: bytes | None = None,
    period: float | None = None,
    states: int = PENDING,
    replace: Mapping[JobState, tuple[str, ...]] | None = None,
    handler: str = HANDLER,
    event: str = EVENT,
) -> NewJob:
    """A NewJob; ``payload`` and ``meta`` are JSON-encoded here (payload default ``{}``);
    ``key`` makes it unique with ``states`` (a JobState bitmask) and ``period``."""
    return NewJob(
        handler=handler,
        event=event,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        payload=json.dumps({} if payload is None else payload).encode(),
        meta=json.dumps(dict(meta or {})).encode(),
        timeout=timeout,
        delay=delay,
        at=at,
        unique_key=key,
        unique_period=period,
        unique_states=states if key is not None else 0,
        replace=dict(replace or {}),
    )


def failure(
    clock: FakeClock, attempt: int, message: str = "boom", kind: str = "ValueError"
) -> JobError:
    return JobError(clock.now(), attempt, kind, message, "Traceback (most recent call last): ...")


def ended(
    job: Claimed | tuple[int, int],
    kind: CompletionKind = "completed",
    *,
    error: JobError | None = None,
    delay: float = 0.0,
) -> Completion:
    """The Completion of a claimed run (or of an ``(id, attempt)`` pair)."""
    job_id, attempt = (job.id, job.attempt) if isinstance(job, Claimed) else job
    return Completion(job_id, attempt, kind, error=error, delay=delay)


async def insert(store: Any, *jobs: NewJob) -> list[int]:
    """Insert ``jobs`` in one batch; their ids (every one must be a fresh insert)."""
    results = await store.insert_many(jobs)
    assert [r.outcome for r in results] == ["inserted"] * len(jobs), results
    return [r.id for r in results]


async def claim(
    store: Any,
    node: str = "node-a",
    *,
    queue: str = "default",
    limit: int = 10,
    idle: bool = True,
    isolate_after: int = 2,
    complete: Sequence[Completion] = (),
) -> list[Claimed]:
    return list(
        await store.fetch(
            FetchParams(
                queue=queue,
                limit=limit,
                node=node,
                isolate_after=isolate_after,
                idle=idle,
                complete=complete,
            )
        )
    )


async def beat(
    store: Any, node: str, running: Sequence[tuple[int, int]] = (), ttl: float = 30.0
) -> list[int]:
    return list(await store.heartbeat(HeartbeatParams(node=node, ttl=ttl, running=running)))


async def rescue(store: Any, *, grace: float = 5.0, max_rescues: int = 3, limit: int = 1000) -> int:
    params = RescueParams(grace=grace, max_rescues=max_rescues, limit=limit)
    return len(await store.rescue(params))


async def get(store: Any, job_id: int) -> Job:
    """The job with ``job_id``, which must exist."""
    found = await store.get(job_id)
    assert found is not None, f"job {job_id} is missing"
    assert isinstance(found, Job)
    return found


async def state_of(store: Any, job_id: int) -> JobState:
    return JobState((await get(store, job_id)).state)


def errors_of(job: Job) -> list[tuple[str, str, int]]:
    """(kind, message, attempt) of every error of ``job``, oldest first."""
    return [(e.kind, e.message, e.attempt) for e in job.errors]
