"""Connections held for job handlers' own transactions (``ctx.transaction()``) on MySQL: the
part of :class:`~.executor.MySQLExecutor` that lends a pooled connection in a transaction and
keeps room in the pool for the store's own statements."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from .._sql.executor import Tx

__all__ = ["ROOM", "HeldConnections"]

T = TypeVar("T")

#: Connections the pool keeps for the store's own statements (fetches, completions, heartbeats,
#: the leader's maintenance) while job handlers hold transactions.
ROOM = 3


class _MyHeld:
    __slots__ = ("connection", "tx")

    def __init__(self, conn: Any, tx: Tx) -> None:
        self.connection = conn
        self.tx = tx

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        return await work(self.tx)


class HeldConnections:
    """Mixed into the executor, which provides the pool, its size and its own Tx."""

    pool: Any
    _max_size: int

    def _init_room(self, max_size: int) -> None:
        self._room = asyncio.Semaphore(max(1, max_size - ROOM))
        self._reserved = 0

    def _pool(self) -> Any:
        raise NotImplementedError

    def _own_tx(self, conn: Any) -> Tx:
        raise NotImplementedError

    def _reusable(self, conn: Any, exc: BaseException) -> bool:
        """Whether ``conn`` may go back to the pool after the handler's block raised ``exc``."""
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[_MyHeld]:
        """A pooled connection in a transaction for a job's own writes, with the store's
        session settings (READ COMMITTED, UTC, strict sql_mode, a bounded lock wait); nothing is
        retried here (a deadlock fails the handler's attempt: the job retries)."""
        pool = self._pool()
        theirs: Exception | None = None
        async with self._room, pool.borrow() as conn:
            # Begun at once (not with the store's first statement, as the store's own work
            # does): the handler's statements on ``conn`` come first.
            await conn.begin()
            try:
                yield _MyHeld(conn, self._own_tx(conn))
            except BaseException as exc:
                if not isinstance(exc, asyncio.CancelledError):
                    with contextlib.suppress(Exception):
                        await conn.rollback()
                if not isinstance(exc, Exception) or not self._reusable(conn, exc):
                    raise  # the pool closes the connection
                theirs = exc  # the handler's own error, rolled back: the connection is fine
            else:
                await conn.commit()
        if theirs is not None:
            raise theirs

    def reserve(self, concurrency: int) -> None:
        """Grow the pool to at least ``concurrency + ROOM`` connections for every worker."""
        self._reserved += concurrency
        wanted = self._reserved + ROOM
        if wanted > self._max_size:
            grow, self._max_size = wanted - self._max_size, wanted
            if self.pool is not None:
                self.pool.grow(wanted)
            for _ in range(grow):
                self._room.release()
