"""The sqlite3 executor: one connection on one dedicated thread (``thread.py``).

Each ``run`` is one hop to the thread, which runs the whole work there -- usually one short
transaction (``BEGIN IMMEDIATE``: take the write lock up front, so two processes never deadlock
upgrading a read lock). The core's work is an async function of a :class:`~.._sql.executor.Tx`;
here every Tx method completes without suspending, so the thread drives the coroutine to its end
in one step (:func:`drive`) and no statement costs a hop of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..._errors import StoreClosed, StoreError
from .._sql.executor import Tx, drive
from .._sql.queries import Query
from .thread import ConnectionThread

__all__ = ["SQLiteExecutor", "body_of", "drive", "split_statements"]

T = TypeVar("T")
_logger = logging.getLogger("relaybus.sqlite")
_MIN_VERSION = (3, 35, 0)  # RETURNING (3.35), generated columns (3.31)


class _SQLiteTx:
    def __init__(self, conn: sqlite3.Connection, queries: Mapping[str, Query]) -> None:
        self._conn = conn
        self._q = queries

    async def fetch(self, name: str, args: Mapping[str, Any]) -> list[Any]:
        q = self._q[name]
        return self._conn.execute(q.sql, q.positional(args)).fetchall()

    async def fetchrow(self, name: str, args: Mapping[str, Any]) -> Any | None:
        q = self._q[name]
        return self._conn.execute(q.sql, q.positional(args)).fetchone()

    async def execute(self, name: str, args: Mapping[str, Any]) -> int:
        q = self._q[name]
        return self._conn.execute(q.sql, q.positional(args)).rowcount

    async def executemany(
        self, name: str, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        q = self._q[name]
        if rows and not isinstance(rows[0], tuple):
            rows = [q.positional(row) for row in rows]  # type: ignore[arg-type]
        self._conn.executemany(q.sql, rows)

    async def script(self, sql: str) -> None:
        for statement in split_statements(sql):
            self._conn.execute(statement)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        conn, q = self._conn, self._q
        conn.execute(q["begin"].sql)
        try:
            yield
            conn.execute(q["commit"].sql)
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(q["rollback"].sql)
            raise


class _SQLiteHeld:
    """A connection held for a job's transaction (see ``SQLiteExecutor.hold``)."""

    __slots__ = ("_q", "_thread", "connection")

    def __init__(
        self, conn: sqlite3.Connection, thread: ConnectionThread, queries: Mapping[str, Query]
    ) -> None:
        self.connection = conn
        self._thread = thread
        self._q = queries

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        queries = self._q
        return await self._thread.call(lambda conn: drive(work(_SQLiteTx(conn, queries))))  # type: ignore[arg-type]


def body_of(
    work: Callable[[Tx], Awaitable[T]], queries: Mapping[str, Query], *, transaction: bool
) -> Callable[[sqlite3.Connection], T]:
    """``work`` as a function of a ``sqlite3`` connection, run to its end on the thread that
    owns the connection (in a transaction when ``transaction``)."""

    async def in_transaction(tx: _SQLiteTx) -> T:
        async with tx.transaction():
            return await work(tx)

    def body(conn: sqlite3.Connection) -> T:
        tx = _SQLiteTx(conn, queries)
        return drive(in_transaction(tx) if transaction else work(tx))  # type: ignore[arg-type]

    return body


def _begin(queries: Mapping[str, Query]) -> Callable[[sqlite3.Connection], sqlite3.Connection]:
    def begin(conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.execute(queries["begin"].sql)
        return conn

    return begin


def _commit(queries: Mapping[str, Query]) -> Callable[[sqlite3.Connection], None]:
    def commit(conn: sqlite3.Connection) -> None:
        try:
            conn.execute(queries["commit"].sql)
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(queries["rollback"].sql)
            raise

    return commit


def _rollback(queries: Mapping[str, Query]) -> Callable[[sqlite3.Connection], None]:
    def rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(queries["rollback"].sql)

    return rollback


class SQLiteExecutor:
    """Runs the core's work on the store's connection thread."""

    def __init__(self, path: str, queries: Mapping[str, Query], busy_timeout: float) -> None:
        self.path = path
        self._q = queries
        self._busy_timeout = busy_timeout
        self._thread: ConnectionThread | None = None

    # -- lifecycle
    def _connect(self, *, shared: bool = False) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < _MIN_VERSION:
            raise StoreError(
                f"SQLiteStore needs SQLite 3.35 or newer; this Python has {sqlite3.sqlite_version}"
            )
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            cached_statements=256,
            check_same_thread=not shared,
        )
        try:
            conn.execute(self._q["journal_mode"].sql).fetchall()
            conn.execute(self._q["synchronous"].sql)
        except BaseException:
            conn.close()
            raise
        return conn

    def _start(self) -> ConnectionThread:
        return ConnectionThread(self._connect, name=f"relaybus-sqlite:{self.path}")

    async def open(self) -> None:
        if self._thread is None:
            self._thread = self._start()

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            await thread.close()

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
            raise StoreError("SQLiteStore does not take conn=: it owns its only connection")
        thread = self._thread
        if thread is None:
            raise StoreClosed("SQLiteStore is not open: use `async with bus:`")
        return await thread.call(body_of(work, self._q, transaction=transaction), orphan)

    async def run_detached(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        if self._thread is not None:
            return await self._thread.call(body_of(work, self._q, transaction=True))
        thread = self._start()
        try:
            return await thread.call(body_of(work, self._q, transaction=True))
        finally:
            await thread.close()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[_SQLiteHeld]:
        """A connection of its own to the database file, on a thread of its own, in a
        ``BEGIN IMMEDIATE`` transaction (``ctx.transaction()``): it holds SQLite's single write
        lock until it commits or rolls back, and every other writer waits for it (up to
        ``busy_timeout``). The handler gets the ``sqlite3.Connection`` itself, opened with
        ``check_same_thread=False``: its calls run on the event loop's thread."""
        if self._thread is None:
            raise StoreClosed("SQLiteStore is not open: use `async with bus:`")
        if self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise StoreError(
                "ctx.transaction() needs a SQLite database file: an in-memory database has "
                "only the store's own connection"
            )
        thread = ConnectionThread(
            lambda: self._connect(shared=True), name=f"relaybus-sqlite-tx:{self.path}"
        )
        queries = self._q
        try:
            conn = await thread.call(_begin(queries))
            held = _SQLiteHeld(conn, thread, queries)
            try:
                yield held
            except BaseException:
                await asyncio.shield(thread.call(_rollback(queries)))
                raise
            await thread.call(_commit(queries))
        finally:
            await asyncio.shield(thread.close())

    def reserve(self, concurrency: int) -> None:
        return None  # no pool: each job transaction opens a connection of its own

    def post(self, work: Callable[[Tx], Awaitable[object]]) -> None:
        thread = self._thread
        if thread is not None:
            thread.post(body_of(work, self._q, transaction=True))

    def check_conn(self, conn: Any) -> None:
        raise StoreError("SQLiteStore does not take conn=: it owns its only connection")

    def describe(self, exc: BaseException) -> str:
        return f"{self.path}: {exc}"

    async def listen(
        self, channel: str, on_notify: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None:
        return None  # one file, no server: workers poll


def split_statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would COMMIT our transaction)."""
    statements: list[str] = []
    current = ""
    pieces = script.split(";")
    for i, piece in enumerate(pieces):
        current += piece if i == len(pieces) - 1 else piece + ";"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise StoreError(f"incomplete SQL statement in a migration: {current.strip()[:80]!r}")
    return statements
