"""Named queries on one MySQL/MariaDB connection (:class:`MyTx`): the store's own work, whose
transaction costs no round trip of its own, or the caller's connection (``conn=``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._sql.queries import Query, split_statements
from .quoting import inline_long_strings

__all__ = ["MyTx", "in_transaction"]


class MyTx:
    """Named queries on one connection (``caller``: the caller's own, in its transaction).

    A transaction of the store's own costs no round trip of its own: ``transaction()`` only
    notes that one is due, the first statement travels as ``START TRANSACTION; <statement>``
    (both servers take several statements in one query), and a statement the work knows is
    its last can carry the ``COMMIT`` too (``commit=True``). A transaction whose work ran no
    statement sends nothing at all.
    """

    __slots__ = ("_begin", "_committed", "_conn", "_q", "caller")

    def __init__(self, conn: Any, queries: Mapping[str, Query], *, caller: bool) -> None:
        self._conn = conn
        self._q = queries
        self.caller = caller
        self._begin = False  # a transaction is due: the next statement starts it
        self._committed = False  # the work's last statement committed it

    async def _cursor(self) -> Any:
        cur = self._conn.cursor()
        if not hasattr(cur, "execute"):  # aiomysql: an awaitable context manager
            cur = await cur
        return cur

    async def _run(self, name: str, args: Mapping[str, Any], commit: bool = False) -> Any:
        sql = self._q[name].sql
        begin = self._begin
        if begin:
            sql = "START TRANSACTION;\n" + sql
            self._begin = False  # from here on the transaction is open: roll back on error
        if commit:
            if begin or self._in_own_transaction():
                sql += ";\nCOMMIT"
            else:
                commit = False  # no transaction of ours is open: nothing to commit
        cur = await self._cursor()
        await cur.execute(*inline_long_strings(sql, args, self._conn))
        # Past START TRANSACTION's answer and those of all but the query's last statement (an
        # error in a later statement is raised here).
        for _ in range(begin + self._q[name].sql.count(";\n")):
            await cur.nextset()
        if commit:
            # Read the statement's answer first: the next result set replaces it.
            done = _Done(list(await cur.fetchall()) if cur.description else [], cur.rowcount)
            await cur.nextset()  # COMMIT's answer (an error there is raised here)
            self._committed = True
            return done
        return cur

    def _in_own_transaction(self) -> bool:
        return not self.caller and in_transaction(self._conn)

    async def fetch(self, name: str, args: Mapping[str, Any], *, commit: bool = False) -> list[Any]:
        cur = await self._run(name, args, commit)
        if isinstance(cur, _Done):
            return cur.rows
        return list(await cur.fetchall())

    async def fetchrow(self, name: str, args: Mapping[str, Any]) -> Any | None:
        cur = await self._run(name, args)
        rows = await cur.fetchall()
        return rows[0] if rows else None

    async def execute(self, name: str, args: Mapping[str, Any], *, commit: bool = False) -> int:
        cur = await self._run(name, args, commit)
        return int(cur.rowcount)

    async def insert(self, name: str, args: Mapping[str, Any]) -> int:
        """Run a one-row INSERT; the id it assigned."""
        cur = await self._run(name, args)
        return int(cur.lastrowid)

    async def executemany(
        self, name: str, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        binds = self._q[name].binds
        for row in rows:
            args = dict(zip(binds, row, strict=True)) if isinstance(row, tuple) else row
            await self._run(name, args)

    async def script(self, sql: str) -> None:
        await self._start_due()
        for statement in split_statements(sql):
            cur = await self._cursor()
            await cur.execute(statement)

    async def _start_due(self) -> None:
        """Open a due transaction now (for statements that are not named queries)."""
        if self._begin:
            self._begin = False
            await self._conn.begin()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        conn = self._conn
        if self.caller and in_transaction(conn):
            # Inside the caller's transaction: a savepoint, so a failure undoes only our part.
            await self._plain("SAVEPOINT relaybus_insert")
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._plain("ROLLBACK TO SAVEPOINT relaybus_insert")
                raise
            await self._plain("RELEASE SAVEPOINT relaybus_insert")
            return
        if self._begin or self._in_own_transaction():
            yield  # already in one of ours: join it
            return
        self._begin, self._committed = True, False
        try:
            yield
        except BaseException as exc:
            started = not self._begin and not self._committed
            self._begin = False
            if started and not isinstance(exc, asyncio.CancelledError):
                with contextlib.suppress(Exception):
                    await conn.rollback()
            raise
        if self._begin:  # the work ran no statement: there is nothing to commit
            self._begin = False
        elif not self._committed:
            await conn.commit()
        self._committed = False

    async def _plain(self, sql: str) -> None:
        cur = await self._cursor()
        await cur.execute(sql)


@dataclass(frozen=True, slots=True)
class _Done:
    """What a statement that also committed returned (read before COMMIT's answer replaced it
    on the cursor)."""

    rows: list[Any]
    rowcount: int


def in_transaction(conn: Any) -> bool:
    status = getattr(conn, "get_transaction_status", None)
    if status is not None and status():
        return True
    autocommit = getattr(conn, "get_autocommit", None)
    return autocommit is not None and not autocommit()
