"""One SQLite connection on one dedicated thread.

Each call runs a whole function (usually one short transaction) on that thread: one hop per
Driver operation, not one per statement. The thread is a daemon, so a store that was never closed
does not keep the interpreter alive; SQLite's journal keeps the file consistent either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ConnectionThread"]

T = TypeVar("T")

#: (function, loop, future, orphan); function None means "close the connection and stop".
_Item = tuple[
    Callable[[sqlite3.Connection], Any] | None,
    asyncio.AbstractEventLoop | None,
    "asyncio.Future[Any] | None",
    Callable[[Any], None] | None,
]


class ConnectionThread:
    """Owns one ``sqlite3`` connection, opened by ``connect`` on the thread it is used on."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def call(
        self,
        fn: Callable[[sqlite3.Connection], T],
        orphan: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``fn(connection)`` on the thread and return its result.

        A call cannot be interrupted once queued: if the caller is cancelled, ``fn`` still runs,
        and ``orphan`` (if given) receives its result on the event loop, to undo it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, loop, future, orphan))
        return await future

    def post(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """Queue ``fn(connection)`` without waiting for it (its errors are dropped)."""
        self._queue.put((fn, None, None, None))

    async def close(self) -> None:
        """Run what is queued, close the connection and end the thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((None, loop, future, None))
        await future

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        failure: BaseException | None = None
        try:
            conn = self._connect()
        except BaseException as exc:
            failure = exc
        while True:
            fn, loop, future, orphan = self._queue.get()
            result: Any = None
            error: BaseException | None = None
            try:
                if fn is None:
                    if conn is not None:
                        conn.close()
                elif conn is None:
                    assert failure is not None
                    error = failure
                else:
                    result = fn(conn)
            except BaseException as exc:
                error = exc
            if loop is not None and future is not None:
                # RuntimeError: the loop was closed meanwhile, so nobody waits for this result.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_deliver, future, result, error, orphan)
            if fn is None:
                return


def _deliver(
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
    orphan: Callable[[Any], None] | None,
) -> None:
    if future.cancelled():
        if error is None and orphan is not None:
            orphan(result)
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
