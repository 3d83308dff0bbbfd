"""The :class:`~.._sql.executor.Tx` of the SQLAlchemy executor, over a *sync* ``Connection``.

The executor runs each unit of work inside one ``AsyncConnection.run_sync`` call: one greenlet
per work instead of one per statement (SQLAlchemy's asyncio bridge), which is most of
SQLAlchemy's cost per statement. The Tx methods never suspend (the driver's I/O happens inside
SQLAlchemy's greenlet), so :func:`drive` runs the work's coroutine to its end synchronously;
the core's work awaits nothing but its Tx (as on SQLite's connection thread). Alembic's
revisions use the same Tx on Alembic's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from .._sql.dialect import Dialect
from .._sql.executor import drive

__all__ = ["SyncTx", "drive", "driver_error", "multi_statement_queries"]

T = TypeVar("T")
_POSITIONAL = frozenset({"numeric", "qmark"})


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own error inside a SQLAlchemy one (``exc`` itself when there is none)."""
    err: BaseException | None = exc
    while isinstance(err, sa_exc.DBAPIError):
        err = err.orig
    if err is None:
        return exc
    # SQLAlchemy's asyncio adapters (asyncpg) raise a DBAPI error of their own, caused by the
    # driver's.
    if type(err).__module__.startswith("sqlalchemy") and err.__cause__ is not None:
        return err.__cause__
    return err


def multi_statement_queries(dialect: Dialect) -> dict[str, list[str]]:
    """The dialect's named queries of several statements, split (a client that runs one
    statement per call runs them one after another; the last one's rows are the answer)."""
    split = {}
    for name, query in dialect.queries.items():
        pieces = dialect.statements(query.sql)
        if len(pieces) > 1:
            if dialect.paramstyle in _POSITIONAL:  # positional binds would need renumbering
                raise ValueError(f"query {name!r} of several statements needs named binds")
            split[name] = pieces
    return split


class SyncTx:
    """Named queries on one sync ``Connection`` (``caller``: the caller's, in a savepoint).
    Driver errors come out unwrapped (:func:`driver_error`), for the dialect's classifier.

    ``commit=True`` on the statement a work knows is its last commits the transaction right
    after it (the Tx protocol's extension MySQL's dialect uses)."""

    __slots__ = (
        "_committed", "_conn", "_dialect", "_in_tx", "_multi", "_positional", "_q", "caller",
    )  # fmt: skip

    def __init__(
        self,
        conn: Connection,
        dialect: Dialect,
        multi: Mapping[str, list[str]],
        *,
        caller: bool = False,
        joined: bool = False,
    ) -> None:
        self._conn = conn
        self._dialect = dialect
        self._q = dialect.queries
        self._multi = multi
        self._positional = dialect.paramstyle in _POSITIONAL
        self.caller = caller
        self._in_tx = joined  # inside a transaction opened outside this work: never end it
        self._committed = joined

    def _run(self, name: str, args: Mapping[str, Any]) -> Any:
        q = self._q[name]
        params: Any = q.positional(args) if self._positional else args
        try:
            pieces = self._multi.get(name)
            if pieces is None:
                return self._conn.exec_driver_sql(q.sql, params)
            for piece in pieces[:-1]:
                self._conn.exec_driver_sql(piece, params).close()
            return self._conn.exec_driver_sql(pieces[-1], params)
        except sa_exc.DBAPIError as exc:
            raise driver_error(exc) from None

    async def fetch(self, name: str, args: Mapping[str, Any], *, commit: bool = False) -> list[Any]:
        result = self._run(name, args)
        rows = list(result.fetchall()) if result.returns_rows else []
        if commit:
            self._commit_now()
        return rows

    async def fetchrow(self, name: str, args: Mapping[str, Any]) -> Any | None:
        result = self._run(name, args)
        return result.first() if result.returns_rows else None

    async def execute(self, name: str, args: Mapping[str, Any], *, commit: bool = False) -> int:
        result = self._run(name, args)
        count = int(result.rowcount)  # before closing: a closed psycopg cursor has none
        if result.returns_rows:
            result.close()
        if commit:
            self._commit_now()
        return count

    def _commit_now(self) -> None:
        if self._in_tx and not self._committed:
            self._run("commit", {}).close()
            self._committed = True

    async def insert(self, name: str, args: Mapping[str, Any]) -> int:
        """Run a one-row INSERT; the id it assigned."""
        return int(self._run(name, args).lastrowid)

    async def executemany(
        self, name: str, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        if not rows:
            return
        q = self._q[name]
        params: list[Any]
        if self._positional:
            params = [row if isinstance(row, tuple) else q.positional(row) for row in rows]
        else:
            params = [
                dict(zip(q.binds, row, strict=True)) if isinstance(row, tuple) else row
                for row in rows
            ]
        try:
            self._conn.exec_driver_sql(q.sql, params)
        except sa_exc.DBAPIError as exc:
            raise driver_error(exc) from None

    async def script(self, sql: str) -> None:
        for statement in self._dialect.statements(sql):
            try:
                self._conn.exec_driver_sql(statement)
            except sa_exc.DBAPIError as exc:
                raise driver_error(exc) from None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """The dialect's own BEGIN/COMMIT (the store's connections run in autocommit); on the
        caller's connection nothing: the whole work already runs in a savepoint."""
        if self.caller or self._in_tx:  # the caller's savepoint, or ours: join it
            yield
            return
        await self.execute("begin", {})
        self._in_tx, self._committed = True, False
        try:
            yield
        except BaseException as exc:
            self._in_tx = False
            if not self._committed and not isinstance(exc, asyncio.CancelledError):
                await self.execute("rollback", {})  # a cancelled one is discarded
            raise
        self._in_tx = False
        if not self._committed:
            await self.execute("commit", {})
