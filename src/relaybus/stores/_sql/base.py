"""What every part of the SQL store core shares: the dialect, the executor, the clock, and one
way to run work with client errors mapped to the exception tree."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from ..._clock import Clock
from ..._codec import encode_error
from ..._driver import LifecycleJobs
from ..._errors import StoreClosed, StoreError
from ..._types import JobError
from .dialect import Dialect, ErrorKind
from .executor import Executor, Tx

__all__ = ["RERUNS", "SQLBase"]

T = TypeVar("T")

#: How many times an operation reruns after a unique violation or a transaction conflict
#: (a concurrent writer committed between its read and its write).
RERUNS = 10


class SQLBase:
    """The shared state and plumbing of :class:`~.store.SQLStore` (split by operation group)."""

    supports_notify: bool
    #: SQL stores are shared by processes.
    in_process = False

    def __init__(
        self, dialect: Dialect, executor: Executor, *, clock: Clock, db_clock: bool
    ) -> None:
        self.dialect = dialect
        self.executor = executor
        self.clock = clock
        self.supports_notify = dialect.supports_notify
        self._db_clock = db_clock
        self._open = False
        self._logger = logging.getLogger(f"relaybus.{dialect.name}")
        #: Set by a Bus(lifecycle_events=True): the jobs of each lifecycle event (lifecycle.py).
        self.lifecycle: LifecycleJobs | None = None

    # -- time
    def _now(self) -> datetime | None:
        """The injected clock's now, or None when the database clock keeps time."""
        return None if self._db_clock else self.clock.now()

    def _now_arg(self) -> Any:
        return self.dialect.encode_time(self._now())

    # -- values
    def _channel(self) -> str | None:
        """The notification channel, bound as ``:channel`` (None where nothing notifies)."""
        return self.dialect.channel

    def _error_text(self, error: JobError | None) -> Any:
        """A job error as the JSON object the queries append to ``errors``."""
        return None if error is None else encode_error(error).decode()

    # -- running work
    def _check_open(self) -> None:
        if not self._open:
            raise StoreClosed(f"{type(self).__name__} is not open: use `async with bus:`")

    def kind_of(self, exc: BaseException) -> ErrorKind | None:
        return self.dialect.classify(exc)

    def failure(self, exc: BaseException) -> StoreError:
        """A client error as the StoreError users see (secrets masked)."""
        described = self.executor.describe(exc)
        if self.kind_of(exc) == "missing_schema":
            return StoreError(
                f"relaybus tables are missing in {self._where()}: run `await store.migrate()` "
                f"or `relaybus migrate` ({described})"
            )
        return StoreError(self.dialect.unavailable_text(described))

    def _where(self) -> str:
        where = f"prefix {self.dialect.prefix!r}"
        if self.dialect.schema is not None:
            where = f"schema {self.dialect.schema!r} ({where})"
        return where

    async def _run(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        transaction: bool = False,
        conn: Any = None,
        orphan: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``work`` on the executor; client errors become StoreError (except on the caller's
        own connection, where the caller sees its driver's errors, as with its other
        statements)."""
        self._check_open()
        try:
            return await self.executor.run(work, transaction=transaction, conn=conn, orphan=orphan)
        except Exception as exc:
            if conn is not None or self.kind_of(exc) not in ("unavailable", "missing_schema"):
                raise
            raise self.failure(exc) from exc

    async def _write(self, work: Callable[[Tx], Awaitable[T]], *, atomic: bool = False) -> T:
        """A write: in a transaction when it must be atomic or the dialect writes that way."""
        return await self._run(work, transaction=atomic or self.dialect.write_in_transaction)

    async def _rerun(
        self, work: Callable[[Tx], Awaitable[T]], *, atomic: bool = False, retry: bool = True
    ) -> T:
        """:meth:`_write`, run again when a concurrent writer made it fail (a unique violation
        from a holder committed meanwhile, a deadlock); gives up after a few times."""
        for attempt in range(RERUNS):
            try:
                return await self._write(work, atomic=atomic)
            except Exception as exc:
                kind = self.kind_of(exc)
                if kind not in ("unique", "retry"):
                    raise
                if not retry or attempt == RERUNS - 1:
                    raise StoreError(
                        "the operation kept conflicting with concurrent writers; try again "
                        f"({self.executor.describe(exc)})"
                    ) from exc
                await asyncio.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover
