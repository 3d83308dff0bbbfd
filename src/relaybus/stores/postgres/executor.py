"""The asyncpg executor: the store's own light pool (``_pool.py``) or the user's
``asyncpg.Pool``, the caller's connection for ``conn=``, and the LISTEN connection.

Work that needs no transaction runs each statement on a pooled connection in autocommit (one
statement is one borrow: the hot paths are single statements); work that must be atomic runs on
one borrowed connection inside a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg  # type: ignore[import-untyped]

from ..._dsn import mask_text
from ..._errors import StoreClosed, StoreError
from .._sql.executor import Tx
from .._sql.queries import Query
from ._pool import LightPool
from .listener import Listener

__all__ = ["AsyncpgExecutor"]

T = TypeVar("T")
_logger = logging.getLogger("relaybus.postgres")
#: Connections a pool keeps for the store's own statements (fetches, completions, heartbeats,
#: the leader's maintenance) while job handlers hold transactions (``ctx.transaction()``).
ROOM = 3
#: Seconds a new connection may take (asyncpg's default is 60): a server that is restarting can
#: accept a socket and answer late; the runtime retries sooner.
CONNECT_TIMEOUT = 10.0


def _dsn_application_name(dsn: str | None) -> str | None:
    """The ``application_name`` a DSN sets (``postgresql://...?application_name=x``), if any."""
    if dsn is None:
        return None
    values = parse_qs(urlsplit(dsn).query).get("application_name")
    return values[-1] if values else None


def _rowcount(status: str) -> int:
    """The row count of a command status (``UPDATE 3``, ``INSERT 0 1``, ``SELECT 2``)."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


class _PgTx:
    """Named queries on ``target``: a connection, or a pool (each statement borrows one)."""

    __slots__ = ("_q", "_target")

    def __init__(self, target: Any, queries: Mapping[str, Query]) -> None:
        self._target = target
        self._q = queries

    async def fetch(self, name: str, args: Mapping[str, Any]) -> list[Any]:
        q = self._q[name]
        return await self._target.fetch(q.sql, *q.positional(args))  # type: ignore[no-any-return]

    async def fetchrow(self, name: str, args: Mapping[str, Any]) -> Any | None:
        q = self._q[name]
        return await self._target.fetchrow(q.sql, *q.positional(args))

    async def execute(self, name: str, args: Mapping[str, Any]) -> int:
        q = self._q[name]
        return _rowcount(await self._target.execute(q.sql, *q.positional(args)))

    async def executemany(
        self, name: str, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        q = self._q[name]
        for row in rows:
            args = row if isinstance(row, tuple) else q.positional(row)
            await self._target.execute(q.sql, *args)

    async def script(self, sql: str) -> None:
        await self._target.execute(sql)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._target.transaction():
            yield


class _PgHeld:
    """A connection held for a job's transaction (see ``AsyncpgExecutor.hold``)."""

    __slots__ = ("connection", "tx")

    def __init__(self, conn: Any, queries: Mapping[str, Query]) -> None:
        self.connection = conn
        self.tx = _PgTx(conn, queries)

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        return await work(self.tx)


class AsyncpgExecutor:
    """Connections for a PostgresStore (see the module docstring)."""

    def __init__(
        self,
        dsn_or_pool: str | Any,
        queries: Mapping[str, Query],
        *,
        session: Mapping[str, str],
        min_size: int,
        max_size: int,
    ) -> None:
        if isinstance(dsn_or_pool, str):
            self.dsn: str | None = dsn_or_pool
            self.pool: Any = None
        else:
            self.dsn = None
            self.pool = dsn_or_pool
        self._own_pool = self.dsn is not None
        self._q = queries
        self._session = dict(session)
        named = _dsn_application_name(self.dsn)
        if named is not None:  # the user's name for the store's connections wins
            self._session["application_name"] = named
        self._min_size = min_size
        self._max_size = max_size
        self._listeners: set[Listener] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ping_sql = queries["ping"].sql
        #: Job transactions held at once leave ROOM connections to the store's own statements.
        self._room = asyncio.Semaphore(max(1, max_size - ROOM))
        self._reserved = 0

    # -- lifecycle
    async def open(self) -> None:
        if not self._own_pool and self._reserved == 0:  # the user's pool: its own size
            self._max_size = self.pool.get_max_size()
            self._room = asyncio.Semaphore(max(1, self._max_size - ROOM))
        if self._own_pool and self.pool is None:
            pool = LightPool(self._connect, min_size=self._min_size, max_size=self._max_size)
            await pool.open()  # raises StoreError (password masked) when it cannot connect
            self.pool = pool

    async def _connect(self, **settings: str) -> Any:
        try:
            return await asyncpg.connect(
                self.dsn,
                timeout=CONNECT_TIMEOUT,
                server_settings=settings or self._session,
            )
        except (
            OSError,
            ValueError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            TimeoutError,
        ) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {self.describe(exc)}") from exc

    async def close(self) -> None:
        for listener in list(self._listeners):
            await listener.stop()
        self._listeners.clear()
        if self._own_pool and self.pool is not None:
            pool, self.pool = self.pool, None
            try:
                async with asyncio.timeout(10):
                    await pool.close()
            except Exception:
                pool.terminate()

    def _pool(self) -> Any:
        if self.pool is None:
            raise StoreClosed("PostgresStore is not open: use `async with bus:`")
        return self.pool

    def borrow(self) -> Any:
        """A pooled connection for the store's own statements, as an async context manager."""
        pool = self._pool()
        return pool.borrow() if self._own_pool else pool.acquire()

    # -- running work
    async def run(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        transaction: bool = False,
        conn: Any = None,
        orphan: Callable[[T], None] | None = None,
    ) -> T:
        if conn is not None:
            return await work(_PgTx(conn, self._q))
        if not transaction:
            return await work(_PgTx(self._pool(), self._q))
        async with self.borrow() as own, own.transaction():
            return await work(_PgTx(own, self._q))

    async def run_detached(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        if self.pool is not None:
            return await self.run(work, transaction=True)
        try:
            conn = await self._connect(timezone="UTC")
        except StoreError as exc:
            raise StoreError(f"cannot connect to migrate: {exc.__cause__ or exc}") from None
        try:
            async with conn.transaction():
                return await work(_PgTx(conn, self._q))
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[_PgHeld]:
        """A pooled connection in a transaction for a job's own writes (``ctx.transaction()``),
        with PostgreSQL's default planner settings for the transaction (the store's sessions
        discourage sequential scans for its own statements). Reset before it is pooled again."""
        pool = self._pool()
        async with self._room, pool.acquire() as conn, conn.transaction():
            held = _PgHeld(conn, self._q)
            await held.tx.execute("transaction_settings", {})
            yield held

    def reserve(self, concurrency: int) -> None:
        """Grow the store's own pool to at least ``concurrency + ROOM`` connections for every
        worker on it; a user's pool is checked (a warning when it is too small)."""
        self._reserved += concurrency
        wanted = self._reserved + ROOM
        pool = self.pool
        if self._own_pool:
            if wanted > self._max_size:
                grow, self._max_size = wanted - self._max_size, wanted
                if isinstance(pool, LightPool):
                    pool.grow(wanted)
                for _ in range(grow):
                    self._room.release()
            return
        size = pool.get_max_size() if pool is not None else None
        if size is not None and size < wanted:
            _logger.warning(
                "the asyncpg pool given to PostgresStore holds at most %d connections: with "
                "%d worker slots, handlers using ctx.transaction() wait for one another so that "
                "the worker keeps %d connections for its own statements (size the pool at "
                "least %d)",
                size,
                self._reserved,
                ROOM,
                wanted,
            )

    def post(self, work: Callable[[Tx], Awaitable[object]]) -> None:
        async def run() -> None:
            try:
                await self.run(work)
            except Exception:
                _logger.exception("a background statement failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def check_conn(self, conn: Any) -> None:
        if not isinstance(conn, (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy)):
            raise StoreError(
                "PostgresStore takes conn= as an asyncpg Connection (or a pool's connection), "
                f"not {type(conn).__name__}"
            )

    def describe(self, exc: BaseException) -> str:
        return mask_text(f"{type(exc).__name__}: {exc}", self.dsn)

    # -- notifications
    async def listen(
        self, channel: str, on_notify: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None:
        self._pool()
        listener = Listener(self, channel, on_notify, self._listeners.discard)
        self._listeners.add(listener)
        await listener.start()
        return listener.stop

    def _listen_name(self) -> str:
        return _dsn_application_name(self.dsn) or "relaybus-listen"

    async def listen_connection(self) -> tuple[Any, Callable[[], Awaitable[None]]]:
        """A connection for LISTEN: a dedicated one from the DSN, or one held from the
        user's pool; and how to give it back."""
        if self.dsn is not None:
            conn = await asyncpg.connect(
                self.dsn,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": self._listen_name()},
            )

            async def close() -> None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)
                conn.terminate()

            return conn, close
        pool = self._pool()
        held = await pool.acquire()

        async def release() -> None:
            try:
                await asyncio.wait_for(pool.release(held), 5)
            except Exception:
                with contextlib.suppress(Exception):
                    held.terminate()

        return held, release
