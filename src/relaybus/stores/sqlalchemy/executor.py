"""The SQLAlchemy executor: a dialect's named queries over an ``AsyncEngine``'s connections.

Every statement is the dialect's own query, compiled to the engine's paramstyle and run with
``exec_driver_sql`` (no SQL of its own, no per-database branch: what a database needs on a new
connection is the dialect's :meth:`~.._sql.dialect.Dialect.on_connect`).

- The store keeps up to ``max_size`` of the engine's connections checked out while it is open,
  in driver-level autocommit: a single statement is one round trip, and the core's
  transactions are the dialect's ``begin``/``commit``/``rollback`` queries (SQLite's
  ``BEGIN IMMEDIATE`` included). On close those connections are invalidated, never returned
  to the engine's pool with relaybus's session settings.
- On the caller's connection (``conn=``: an ``AsyncSession`` or ``AsyncConnection``) the work
  runs inside a savepoint (``begin_nested``): a failure undoes only relaybus's part and leaves
  the caller's transaction usable.
- Errors come out as the driver raised them (``DBAPIError.orig``; the asyncio adapters' own
  wrapper unwrapped), so the dialect's classifier reads them as it reads its own executor's.
- A connection whose work was cancelled or lost its server is invalidated, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ..._dsn import mask_text
from ..._errors import StoreClosed, StoreError
from .._sql.dialect import Dialect, ErrorKind
from .._sql.executor import Tx
from ..postgres.listener import Listener
from .direct import DRIVERS, run_direct
from .tx import SyncTx, drive, driver_error, multi_statement_queries

__all__ = ["PARAMSTYLES", "SQLAlchemyExecutor"]

T = TypeVar("T")
_logger = logging.getLogger("relaybus.sqlalchemy")

#: Connections kept for the store's own statements while job handlers hold transactions.
ROOM = 3
#: How often the store's own work runs again after a deadlock or serialization failure.
CONTENTION_TRIES = 20
#: SQLAlchemy's paramstyles -> the core's (``format`` drivers take ``%(name)s`` with a mapping).
PARAMSTYLES = {
    "numeric_dollar": "numeric",
    "pyformat": "pyformat",
    "format": "pyformat",
    "qmark": "qmark",
    "named": "named",
}


class SQLAlchemyExecutor:
    """Connections of an ``AsyncEngine`` for a SQLAlchemyStore (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        dialect: Dialect,
        *,
        max_size: int,
        kind_of: Callable[[BaseException], ErrorKind | None],
    ) -> None:
        self.engine = engine
        self._dialect = dialect
        self._max_size = min(max_size, dialect.max_connections or max_size)
        self._kind_of = kind_of
        self._multi = multi_statement_queries(dialect)
        #: The store's own work goes to the driver's thread in one hop (see ``direct.py``).
        self._direct = engine.dialect.driver in DRIVERS
        self._idle: list[AsyncConnection] = []
        self._slots = asyncio.Semaphore(self._max_size)
        #: Job handlers' transactions (``hold``) leave ROOM connections to the store's own work.
        self._room = asyncio.Semaphore(max(1, self._max_size - ROOM))
        self._reserved = 0
        self._growable = dialect.max_connections is None
        self._open = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: set[Listener] = set()
        self.ping_sql = dialect.queries["ping"].sql if "ping" in dialect.queries else ""

    # -- lifecycle
    async def open(self) -> None:
        if self._open:
            return
        self._open = True
        try:
            async with self._borrow():  # connect once now: a wrong URL fails at open
                pass
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._open = False
        for listener in list(self._listeners):
            await listener.stop()
        self._listeners.clear()
        idle, self._idle = self._idle, []
        for conn in idle:
            await _discard(conn)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _connect(self) -> AsyncConnection:
        try:
            conn = await self.engine.connect()
        except sa_exc.DBAPIError as exc:
            raise driver_error(exc) from None
        try:
            try:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            except sa_exc.DBAPIError as exc:
                raise driver_error(exc) from None
            await self._on(conn, self._dialect.on_connect)
        except BaseException:
            await _discard(conn)
            raise
        return conn

    @contextlib.asynccontextmanager
    async def _borrow(self) -> AsyncIterator[AsyncConnection]:
        if not self._open:
            raise StoreClosed("SQLAlchemyStore is not open: use `async with bus:`")
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
            except BaseException as exc:
                if isinstance(exc, Exception) and self._kind_of(exc) not in (None, "unavailable"):
                    self._give_back(conn)  # a clean database error: the connection is fine
                else:  # cancelled mid-statement, lost, or not the database's: never reuse
                    self._spawn(_discard(conn))
                raise
            self._give_back(conn)

    def _give_back(self, conn: AsyncConnection) -> None:
        if self._open and not conn.invalidated:
            self._idle.append(conn)
        else:
            self._spawn(_discard(conn))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            return await self._run_on_caller(work, conn)
        for attempt in range(CONTENTION_TRIES):
            try:
                async with self._borrow() as own:
                    return await self._on(own, work, transaction=transaction, orphan=orphan)
            except Exception as exc:
                if self._kind_of(exc) != "retry" or attempt == CONTENTION_TRIES - 1:
                    raise
                _logger.debug("retrying after %s", self.describe(exc))
                await asyncio.sleep(random.uniform(0.002, 0.01) * min(attempt + 1, 10))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_on_caller(self, work: Callable[[Tx], Awaitable[T]], conn: Any) -> T:
        dialect, multi = self._dialect, self._multi

        def body(sync_conn: Connection) -> T:
            with sync_conn.begin_nested():
                return drive(work(SyncTx(sync_conn, dialect, multi, caller=True)))  # type: ignore[arg-type]

        try:
            connection = await caller_connection(conn)
            return await connection.run_sync(body)
        except sa_exc.DBAPIError as exc:
            raise driver_error(exc) from None

    async def _on(
        self,
        conn: AsyncConnection,
        work: Callable[[Tx], Awaitable[T]],
        *,
        transaction: bool = False,
        joined: bool = False,
        orphan: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``work`` on the store's ``conn``, in one greenlet (see ``tx.py``), or on the
        driver's own thread (``direct.py``); ``joined``: inside a transaction already open on
        it (a handler's, through SQLAlchemy)."""
        dialect, multi = self._dialect, self._multi
        if self._direct and not joined:
            raw = await conn.get_raw_connection()
            return await run_direct(
                raw.driver_connection, work, dialect.queries, transaction=transaction,
                orphan=orphan,
            )  # fmt: skip

        async def in_transaction(tx: Tx) -> T:
            async with tx.transaction():
                return await work(tx)

        def body(sync_conn: Connection) -> T:
            tx = SyncTx(sync_conn, dialect, multi, joined=joined)
            return drive(in_transaction(tx) if transaction else work(tx))  # type: ignore[arg-type]

        return await conn.run_sync(body)

    async def run_detached(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """In a transaction on a connection of its own (invalidated afterwards: a migration
        lock bound to the session ends with it), whether or not the store is open."""
        conn = await self._connect()
        try:
            await self._on(conn, self._dialect.on_migrate)
            return await self._on(conn, work, transaction=True)
        finally:
            await _discard(conn)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[SAHeld]:
        """One of the store's connections in a transaction, for a job handler's own writes
        (``ctx.transaction()``: the handler gets the ``AsyncConnection``); committed on a
        normal exit, rolled back on an error. Nothing is retried here."""
        async with self._room, self._borrow() as conn:
            await self._on(conn, _begin)
            held = SAHeld(conn, self)
            try:
                yield held
            except BaseException as exc:
                if not isinstance(exc, asyncio.CancelledError):
                    with contextlib.suppress(Exception):
                        await self._on(conn, _rollback)
                raise
            await self._on(conn, _commit)

    def reserve(self, concurrency: int) -> None:
        """A worker of ``concurrency`` slots starts: hold up to concurrency + ROOM connections
        (not on a database of one writer; size the engine's pool for it)."""
        self._reserved += concurrency
        wanted = self._reserved + ROOM
        if self._growable and wanted > self._max_size:
            grow, self._max_size = wanted - self._max_size, wanted
            for _ in range(grow):
                self._slots.release()
                self._room.release()

    def post(self, work: Callable[[Tx], Awaitable[object]]) -> None:
        async def run() -> None:
            try:
                await self.run(work, transaction=True)
            except Exception:
                _logger.exception("a background statement failed")

        self._spawn(run())

    def check_conn(self, conn: Any) -> None:
        if not isinstance(conn, (AsyncSession, AsyncConnection)):
            raise StoreError(
                "SQLAlchemyStore takes conn= as an AsyncSession or AsyncConnection, "
                f"not {type(conn).__name__}"
            )

    def describe(self, exc: BaseException) -> str:
        url = self.engine.url
        password = url.password if isinstance(url.password, str) else None
        text = f"{type(exc).__name__}: {exc}"
        return mask_text(text.replace(password, "***") if password else text)

    # -- notifications
    async def listen(
        self, channel: str, on_notify: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None:
        """LISTEN on a connection of the engine when its driver can push (asyncpg's
        ``add_listener``); None (poll) otherwise."""
        if not await self.can_listen():
            return None
        listener = Listener(self, channel, on_notify, self._listeners.discard)
        self._listeners.add(listener)
        await listener.start()
        return listener.stop

    async def can_listen(self) -> bool:
        """Whether the engine's driver can push notifications (asyncpg's ``add_listener``)."""
        if not self.ping_sql:
            return False
        driver, release = await self.listen_connection()
        try:
            return callable(getattr(driver, "add_listener", None))
        finally:
            await release()

    async def listen_connection(self) -> tuple[Any, Callable[[], Awaitable[None]]]:
        """A connection of the engine held for LISTEN (its driver connection), and how to
        give it back (invalidated: it never returns to the pool with a listener)."""
        conn = await self.engine.connect()
        try:
            raw = await conn.get_raw_connection()
        except BaseException:
            await _discard(conn)
            raise

        async def release() -> None:
            await _discard(conn)

        return raw.driver_connection, release


async def caller_connection(conn: AsyncSession | AsyncConnection) -> AsyncConnection:
    """The ``AsyncConnection`` of ``conn`` (a session's, inside its transaction)."""
    if isinstance(conn, AsyncSession):
        return await conn.connection()
    return conn


async def _discard(conn: AsyncConnection) -> None:
    """Invalidate and close ``conn``: its DBAPI connection is closed, not pooled."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await conn.invalidate()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await conn.close()


class SAHeld:
    """A held connection (:meth:`SQLAlchemyExecutor.hold`): the handler's ``connection`` and
    the core's work inside the same open transaction."""

    __slots__ = ("_executor", "connection")

    def __init__(self, conn: AsyncConnection, executor: SQLAlchemyExecutor) -> None:
        self.connection = conn
        self._executor = executor

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._executor._on(self.connection, work, joined=True)


async def _begin(tx: Tx) -> None:
    await tx.execute("begin", {})


async def _commit(tx: Tx) -> None:
    await tx.execute("commit", {})


async def _rollback(tx: Tx) -> None:
    await tx.execute("rollback", {})
