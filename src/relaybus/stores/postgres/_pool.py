"""A minimal pool for the store's own asyncpg connections.

asyncpg's ``Pool`` costs a task (``asyncio.shield``) and a reset on every release, which is about
as much client CPU as the statement itself for the one-statement operations of a job queue.
Here an idle connection is a list pop and a release a list append. A connection that failed in a
way that may leave it unusable (anything but an error reported by the server, or an error inside
a transaction) is terminated and replaced on demand, so connections broken by a database restart
never come back into use. A user's own ``asyncpg.Pool`` is used as is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import asyncpg  # type: ignore[import-untyped]

__all__ = ["LightPool"]

#: Errors the server reports as it ends the session (SQLSTATE classes 08 and 57).
_SESSION_ENDING: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)


class LightPool:
    def __init__(
        self, connect: Callable[[], Awaitable[Any]], *, min_size: int, max_size: int
    ) -> None:
        self._connect = connect
        self._min_size = min_size
        self._max_size = max_size
        self._idle: list[Any] = []
        self._size = 0  # connections open or opening
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._closed = False

    async def open(self) -> None:
        async def one() -> None:
            self._size += 1
            try:
                con = await self._connect()
            except BaseException:
                self._size -= 1
                raise
            self._idle.append(con)

        results = await asyncio.gather(
            *(one() for _ in range(self._min_size)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                await self.close()
                raise result

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the pool is closed"))
        self._waiters.clear()
        for con in idle:
            self._size -= 1
            try:
                async with asyncio.timeout(5):
                    await con.close()
            except Exception:
                con.terminate()

    def grow(self, max_size: int) -> None:
        """Allow up to ``max_size`` connections (never shrinks)."""
        while self._max_size < max_size:
            self._max_size += 1
            if self._waiters and not self._closed:
                self._wake()

    def terminate(self) -> None:
        self._closed = True
        for con in self._idle:
            con.terminate()
        self._idle.clear()

    # -- acquire / release
    async def acquire_connection(self) -> Any:
        idle = self._idle
        while idle:
            con = idle.pop()
            if not con.is_closed():
                return con
            self._size -= 1
        if self._closed:
            raise asyncpg.InterfaceError("the pool is closed")
        if self._size < self._max_size:
            return await self._new()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            con = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:
                    self.release(handed)
                else:
                    self._size -= 1
                    self._wake()
            raise
        if con is None:  # a slot was freed: open a connection in it
            self._size -= 1
            return await self._new()
        return con

    async def _new(self) -> Any:
        self._size += 1
        try:
            return await self._connect()
        except BaseException:
            self._size -= 1
            self._wake()
            raise

    def _wake(self) -> None:
        """A slot is free: let the first waiter open a connection in it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._size += 1  # reserved for the waiter, which opens it
                waiter.set_result(None)
                return

    def release(self, con: Any) -> None:
        if con.is_closed() or con.is_in_transaction() or self._closed:
            self._drop(con)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(con)
                return
        self._idle.append(con)

    def release_after(self, con: Any, exc: BaseException) -> None:
        """Release after ``exc``: keep the connection only if the server reported an error of
        the statement outside a transaction (the connection is then as good as before). An
        error that ends the session (an administrator's termination, a server shutting down)
        is reported by the server too, before the socket closes: such a connection is dropped,
        or its next user would meet a protocol still busy with the failed statement."""
        if (
            isinstance(exc, asyncpg.PostgresError)
            and not isinstance(exc, _SESSION_ENDING)
            and not con.is_closed()
        ):
            self.release(con)
        else:
            self._drop(con)

    def _drop(self, con: Any) -> None:
        with contextlib.suppress(Exception):
            con.terminate()
        self._size -= 1
        if not self._closed:
            self._wake()

    def acquire(self) -> _Acquired:
        """A connection for the application's own use (``async with pool.acquire() as conn``):
        its session is reset (``RESET ALL``, ``UNLISTEN *``, …) before the store uses it again."""
        return _Acquired(self, reset=True)

    def borrow(self) -> _Acquired:
        """A connection for the store's own statements (no session state to reset)."""
        return _Acquired(self, reset=False)

    # -- one statement on a pooled connection
    async def fetch(self, query: str, *args: Any) -> list[Any]:
        con = await self.acquire_connection()
        try:
            result = await con.fetch(query, *args)
        except BaseException as exc:
            self.release_after(con, exc)
            raise
        self.release(con)
        return result  # type: ignore[no-any-return]

    async def fetchrow(self, query: str, *args: Any) -> Any:
        con = await self.acquire_connection()
        try:
            result = await con.fetchrow(query, *args)
        except BaseException as exc:
            self.release_after(con, exc)
            raise
        self.release(con)
        return result

    async def fetchval(self, query: str, *args: Any) -> Any:
        con = await self.acquire_connection()
        try:
            result = await con.fetchval(query, *args)
        except BaseException as exc:
            self.release_after(con, exc)
            raise
        self.release(con)
        return result

    async def execute(self, query: str, *args: Any) -> str:
        con = await self.acquire_connection()
        try:
            result = await con.execute(query, *args)
        except BaseException as exc:
            self.release_after(con, exc)
            raise
        self.release(con)
        return result  # type: ignore[no-any-return]


class _Acquired:
    __slots__ = ("_con", "_pool", "_reset")

    def __init__(self, pool: LightPool, *, reset: bool) -> None:
        self._pool = pool
        self._reset = reset
        self._con: Any = None

    async def __aenter__(self) -> Any:
        self._con = await self._pool.acquire_connection()
        return self._con

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        con, self._con = self._con, None
        if self._reset and not con.is_closed() and (exc is None or isinstance(exc, Exception)):
            try:
                await con.reset()
            except BaseException as failure:
                self._pool.release_after(con, failure)
                if exc is None:
                    raise
                return
            self._pool.release(con)
        elif exc is None:
            self._pool.release(con)
        else:
            self._pool.release_after(con, exc)
