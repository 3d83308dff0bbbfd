"""Lifecycle events on SQL stores: the jobs of ``rb.JobDiscarded`` / ``rb.JobCancelled``,
inserted in the transaction of the state change that raised them.

The decision is :func:`relaybus._jobrules.lifecycle_event`; the jobs come from the store's
``lifecycle`` (a :class:`~relaybus._driver.LifecycleJobs` the bus set: the store never sees the
bus). Each changed job is read back in the same transaction (``get_job``: its record after the
change) and the jobs are inserted with the dialect's own insert algorithm on that transaction's
connection, so they commit or roll back with the change: exactly one event per state change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from ..._driver import NewJob
from ..._jobrules import RunEnd, lifecycle_event, may_raise_lifecycle
from .dialect import ErrorKind
from .executor import Tx
from .rows import to_job

if TYPE_CHECKING:
    from .base import SQLBase

__all__ = ["KeepOpen", "raise_lifecycle", "raised_ids", "raising"]

T = TypeVar("T")


def raising(store: SQLBase, ends: Sequence[RunEnd]) -> bool:
    """Whether applying ``ends`` may raise lifecycle events (then it needs one transaction)."""
    return store.lifecycle is not None and any(may_raise_lifecycle(end.state) for end in ends)


def raised_ids(ends: Sequence[RunEnd], applied: Iterable[int]) -> list[int]:
    """The applied runs whose end may raise a lifecycle event, each once, in order."""
    done = set(applied)
    ids = [end.id for end in ends if end.id in done and may_raise_lifecycle(end.state)]
    return list(dict.fromkeys(ids))


async def raise_lifecycle(store: SQLBase, tx: Tx, ids: Iterable[int]) -> int:
    """Insert, on ``tx``, the jobs of the lifecycle events the jobs ``ids`` raise now that
    their change is applied (inside the change's transaction); how many jobs."""
    planner = store.lifecycle
    if planner is None:
        return 0
    jobs: list[NewJob] = []
    for job_id in ids:
        row = await tx.fetchrow("get_job", {"id": job_id})
        if row is None:
            continue
        job = to_job(row, store.dialect.codec)
        name = lifecycle_event(job.state, job.event)
        if name is not None:
            jobs.extend(planner.jobs_for(name, job))
    if not jobs:
        return 0
    await store.dialect.insert(_OnTx(tx, store), jobs, store._now())
    return len(jobs)


class _OnTx:
    """The insert :class:`~.dialect.Runner` of a lifecycle event: the work runs on the state
    change's own transaction (already atomic; nothing is retried here: a failure rolls the
    whole change back, and its operation runs again or fails)."""

    caller_conn = True

    def __init__(self, tx: Tx, store: SQLBase) -> None:
        self._tx = tx
        self._store = store

    async def __call__(self, work: Callable[[Tx], Awaitable[T]], *, transaction: bool = False) -> T:
        return await work(self._tx)

    def kind_of(self, exc: BaseException) -> ErrorKind | None:
        return self._store.kind_of(exc)


class KeepOpen:
    """``tx`` for work that goes on after a statement a dialect would otherwise end the
    transaction with (MySQL lets a work's last statement carry the ``COMMIT``): here no
    statement commits, so what follows -- the lifecycle event's jobs, or the commit of a
    handler's transaction -- stays in the same transaction."""

    __slots__ = ("_tx",)

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def fetch(self, name: str, args: Mapping[str, Any], **_: Any) -> list[Any]:
        return await self._tx.fetch(name, args)

    async def fetchrow(self, name: str, args: Mapping[str, Any], **_: Any) -> Any | None:
        return await self._tx.fetchrow(name, args)

    async def execute(self, name: str, args: Mapping[str, Any], **_: Any) -> int:
        return await self._tx.execute(name, args)

    async def executemany(
        self, name: str, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        await self._tx.executemany(name, rows)

    async def script(self, sql: str) -> None:
        await self._tx.script(sql)

    def transaction(self) -> AbstractAsyncContextManager[None]:
        return self._tx.transaction()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)  # a dialect's own Tx methods (MySQL: insert)
