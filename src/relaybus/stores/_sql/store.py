"""SQLStore: the Driver, implemented once over a dialect and an executor.

Each database store (``SQLiteStore``, ``PostgresStore``) is this class given its dialect and
executor. Job policy comes from :mod:`relaybus._jobrules`; SQL applies decided values, fenced on
``(id, state = running, attempt)``. The lifecycle, producing operations and the ledger of lost
answers are here; maintenance and admin operations are in ``maintenance.py`` and ``admin.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from ..._clock import Clock
from ..._driver import Claimed, Completion, FetchParams, HeartbeatParams, Inserted, NewJob
from ..._errors import JobLost, StoreError
from ..._jobrules import end_of_run
from .admin import AdminOps
from .dialect import Dialect, ErrorKind
from .executor import Executor, Tx
from .ledger import ClaimLedger
from .lifecycle import KeepOpen, raise_lifecycle, raised_ids, raising
from .maintenance import MaintenanceOps
from .migrator import applied_versions, migrate
from .rows import to_claimed

__all__ = ["SQLStore"]

T = TypeVar("T")


class SQLStore(AdminOps, MaintenanceOps):
    """A Driver over ``dialect`` and ``executor`` (see the module docstring).

    ``auto_migrate``: ``open()`` brings the schema up to date (embedded stores); otherwise it
    only warns when migrations are missing (server stores: workers need no DDL rights).
    """

    def __init__(
        self,
        dialect: Dialect,
        executor: Executor,
        *,
        clock: Clock,
        db_clock: bool,
        auto_migrate: bool,
    ) -> None:
        super().__init__(dialect, executor, clock=clock, db_clock=db_clock)
        self._auto_migrate = auto_migrate
        self._ledger = ClaimLedger() if dialect.answers_can_be_lost else None

    # -- lifecycle
    async def open(self) -> None:
        if self._open:
            return
        await self.executor.open()
        self._open = True
        try:
            if self._auto_migrate:
                await self.migrate()
            else:
                await self._check_schema()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._open = False
        await self.executor.close()

    async def migrate(self) -> None:
        """Apply missing migrations; works whether or not the store is open."""

        async def work(tx: Tx) -> list[int]:
            return await migrate(tx, self.dialect, self._now_arg(), self._logger)

        try:
            if self._open and not self.dialect.migrate_detached:
                await self.executor.run(work, transaction=True)
            else:
                await self.executor.run_detached(work)
        except StoreError:
            raise
        except Exception as exc:
            if self.kind_of(exc) is None:
                raise
            raise StoreError(
                f"migrating {self._where()} failed: {self.executor.describe(exc)}"
            ) from None

    async def _check_schema(self) -> None:
        try:
            versions = await self.executor.run(applied_versions)
        except Exception as exc:
            kind = self.kind_of(exc)
            if kind == "missing_schema":
                versions = set()
            elif kind is not None:
                self._logger.warning(
                    "could not check the relaybus schema: %s", self.executor.describe(exc)
                )
                return
            else:
                raise
        missing = [v for v, _, _ in self.dialect.migrations if v not in versions]
        if missing:
            self._logger.warning(
                "relaybus tables in %s lack migrations %s: run `await store.migrate()` or "
                "`relaybus migrate`",
                self._where(),
                missing,
            )

    # -- producing
    async def insert_many(self, jobs: Sequence[NewJob], conn: Any = None) -> list[Inserted]:
        self._check_open()
        if conn is not None:
            self.executor.check_conn(conn)
        if not jobs:
            return []
        return await self.dialect.insert(self._inserter(conn), jobs, self._now())

    def _inserter(self, conn: Any) -> _Inserter:
        return _Inserter(self, conn)

    async def fetch(self, params: FetchParams) -> list[Claimed]:
        self._check_open()
        ends = [end_of_run(c) for c in params.complete]
        if ends and raising(self, ends):
            # Ends that raise lifecycle events go in a transaction of their own with their
            # events (never the one-statement end_runs_and_fetch); then the claim, as usual.
            await self.complete_many(params.complete)
            params = dataclasses.replace(params, complete=())
            ends = []
        if not ends and params.limit <= 0:
            return []
        now = self._now_arg()

        codec = self.dialect.codec

        async def work(tx: Tx) -> list[Claimed]:
            # Rows become records inside the work: on SQLite, on its connection thread.
            rows = await self.dialect.fetch(tx, params, ends, now)
            claimed = [to_claimed(row, codec) for row in rows]
            if len(claimed) > 1:
                claimed.sort(key=_run_order)
            return claimed

        ledger = self._ledger
        if ledger is None:
            return await self._run(work, orphan=self._unclaim)
        return await self._fetch_with_ledger(ledger, params, work)

    async def _fetch_with_ledger(
        self,
        ledger: ClaimLedger,
        params: FetchParams,
        work: Callable[[Tx], Awaitable[list[Claimed]]],
    ) -> list[Claimed]:
        node = params.node
        await ledger.settle(node, lambda handed: self._release_orphans(node, handed))
        await ledger.fetching(node)
        failed = True
        try:
            claimed = await self._run(work)
            failed = False
        finally:
            ledger.fetched(node, failed)
        ledger.finished(params.complete)
        ledger.hand(node, ((c.id, c.attempt) for c in claimed))
        return claimed

    def _unclaim(self, claimed: list[Claimed]) -> None:
        """The fetch was cancelled after it claimed (an executor that can tell): put the jobs
        back, uncharged."""
        if not claimed or not self._open:
            return
        runs = [{"id": c.id, "attempt": c.attempt} for c in claimed]

        async def work(tx: Tx) -> None:
            await tx.executemany("unclaim", runs)

        self.executor.post(work)

    async def complete_many(self, completions: Sequence[Completion]) -> list[int]:
        self._check_open()
        if not completions:
            return []
        ends = [end_of_run(c) for c in completions]
        now = self._now_arg()
        events = raising(self, ends)

        async def work(tx: Tx) -> list[int]:
            if not events:
                return await self.dialect.end_runs(tx, ends, now)
            tx = KeepOpen(tx)
            applied = await self.dialect.end_runs(tx, ends, now)
            await raise_lifecycle(self, tx, raised_ids(ends, applied))
            return applied

        applied = await self._write(work, atomic=events)
        if self._ledger is not None:
            self._ledger.finished(completions)
        # Each applied id once, in input order (a run listed twice is applied once).
        done = set(applied)
        return [job_id for job_id in dict.fromkeys(c.id for c in completions) if job_id in done]

    def transaction(self, job_id: int, attempt: int) -> AbstractAsyncContextManager[Any]:
        """``ctx.transaction()``: a held connection in a transaction whose commit also completes
        the run, fenced on (id, running, attempt) exactly like ``complete_many``; a stale run's
        transaction is rolled back and raises JobLost. The handler's own errors reach it as its
        client library raised them."""
        return self._job_transaction(job_id, attempt)

    @contextlib.asynccontextmanager
    async def _job_transaction(self, job_id: int, attempt: int) -> AsyncIterator[Any]:
        self._check_open()
        end = end_of_run(Completion(job_id, attempt, "completed"))
        theirs = False  # the failure came from the handler's block, not from the store
        try:
            async with self.executor.hold() as held:
                try:
                    yield held.connection
                except BaseException:
                    theirs = True
                    raise
                now = self._now_arg()

                async def work(tx: Tx) -> list[int]:
                    return await self.dialect.end_runs(KeepOpen(tx), [end], now)

                if job_id not in await held.run(work):
                    raise JobLost(job_id, attempt)  # rolls the handler's writes back
        except Exception as exc:
            if theirs or self.kind_of(exc) not in ("unavailable", "missing_schema"):
                raise
            raise self.failure(exc) from exc

    def reserve_connections(self, concurrency: int) -> None:
        self.executor.reserve(concurrency)

    async def heartbeat(self, params: HeartbeatParams) -> list[int]:
        ledger = self._ledger
        node = params.node
        if ledger is not None:
            await ledger.settle(node, lambda handed: self._release_orphans(node, handed))
        lost = await super().heartbeat(params)
        if ledger is not None and lost:
            ledger.lost(node, dict(params.running), lost)
        return lost

    async def _release_orphans(self, node: str, handed: list[int]) -> int:
        args = {"node": node, "handed": handed, "channel": self._channel()}

        async def work(tx: Tx) -> int:
            return await self.dialect.release_orphans(tx, args)

        released = await self._write(work)
        if released:
            self._logger.warning(
                "returned %d job(s) claimed by node %s in a fetch whose answer was lost",
                released,
                node,
            )
        return released

    async def release_node(self, node: str) -> None:
        if self._ledger is not None:
            self._ledger.forget(node)
        await super().release_node(node)

    async def subscribe(self, on_insert: Callable[[str], None]) -> Callable[[], Any] | None:
        self._check_open()
        channel = self.dialect.channel
        if not self.dialect.supports_notify or channel is None:
            return None  # no push across processes: workers poll
        return await self.executor.listen(channel, on_insert)


def _run_order(claimed: Claimed) -> tuple[int, Any, int]:
    return (claimed.priority, claimed.scheduled_at, claimed.id)


class _Inserter:
    """The :class:`~.dialect.Runner` of one ``insert_many``."""

    def __init__(self, store: SQLStore, conn: Any) -> None:
        self._store = store
        self._conn = conn
        self.caller_conn = conn is not None

    async def __call__(self, work: Callable[[Tx], Awaitable[T]], *, transaction: bool = False) -> T:
        store, conn = self._store, self._conn
        if conn is not None and transaction:  # joins the caller's transaction (a savepoint)
            return await store._run(_in_transaction(work), conn=conn)
        return await store._run(work, transaction=transaction, conn=conn)

    def kind_of(self, exc: BaseException) -> ErrorKind | None:
        return self._store.kind_of(exc)


def _in_transaction(work: Callable[[Tx], Awaitable[T]]) -> Callable[[Tx], Awaitable[T]]:
    async def run(tx: Tx) -> T:
        async with tx.transaction():
            return await work(tx)

    return run
