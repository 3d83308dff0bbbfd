"""The store's own work on an aiosqlite connection, run on aiosqlite's thread in one hop.

Through SQLAlchemy every statement on ``sqlite+aiosqlite`` costs about three trips between the
event loop and aiosqlite's thread (cursor, execute, fetch), each with its wake-ups: measured, a
fetch of 20 jobs took 2 ms and the store ran at a quarter of SQLiteStore's speed. Here the
whole work (the SQLite dialect's own named queries, compiled for the engine, on the engine's own
DBAPI connection) goes to aiosqlite's thread as one function, as SQLiteStore runs it on its
thread. Only the store's own connections go this way; the caller's (``conn=``) and a job
handler's transaction stay with SQLAlchemy.

aiosqlite offers no public way to run a function on its thread: ``Connection._execute`` and
``Connection._conn`` are used (both there since aiosqlite 0.11; the test suite runs this path
on every SQLAlchemy SQLite test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from .._sql.executor import Tx
from .._sql.queries import Query
from ..sqlite.executor import body_of

__all__ = ["DRIVERS", "run_direct"]

T = TypeVar("T")
#: SQLAlchemy driver names whose connections take the store's work directly.
DRIVERS = frozenset({"aiosqlite"})


async def run_direct(
    driver_connection: Any,
    work: Callable[[Tx], Awaitable[T]],
    queries: Mapping[str, Query],
    *,
    transaction: bool,
    orphan: Callable[[T], None] | None = None,
) -> T:
    """Run ``work`` to its end on ``driver_connection``'s (an ``aiosqlite.Connection``) thread.
    Cancelling the caller does not stop the work once queued: if it then completes, ``orphan``
    receives its result, to be undone."""
    body = body_of(work, queries, transaction=transaction)
    done: asyncio.Future[T] = asyncio.ensure_future(
        driver_connection._execute(body, driver_connection._conn)
    )
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        if orphan is not None:
            done.add_done_callback(lambda future: _hand_over(future, orphan))
        raise


def _hand_over(future: asyncio.Future[T], orphan: Callable[[T], None]) -> None:
    if not future.cancelled() and future.exception() is None:
        orphan(future.result())
