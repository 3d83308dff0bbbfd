"""Wake-ups after the caller's commit: jobs inserted with ``conn=`` are visible to this
process's workers only once the caller's transaction commits, so they are woken then (the
session's ``after_commit`` event; for an ``AsyncConnection``, once its committed transaction has
ended), and not at all after a rollback."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

__all__ = ["CommitWaker"]

#: How long a wake-up waits for an ``AsyncConnection``'s commit to finish (seconds).
_COMMIT_WAIT = 5.0


class CommitWaker:
    """Queues to wake, per caller transaction, until it commits (one per store)."""

    def __init__(self, wake: Callable[[Iterable[str]], None]) -> None:
        self._wake = wake
        self._pending: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, conn: AsyncSession | AsyncConnection, queues: Iterable[str]) -> None:
        """Wake ``queues`` when ``conn``'s current transaction commits."""
        target: Session | Connection | None = (
            conn.sync_session if isinstance(conn, AsyncSession) else conn.sync_connection
        )
        if target is None:  # an AsyncConnection not started: nothing of it to commit
            return
        pending = self._pending.get(target)
        if pending is None:
            pending = self._pending[target] = set()
            self._hook(target)
        pending.update(queues)

    def _hook(self, target: Session | Connection) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(target, Session):

            def committed(session: Session) -> None:
                queues = self._take(session)
                if queues:
                    loop.call_soon(self._wake, queues)

            event.listen(target, "after_commit", committed)
            event.listen(target, "after_rollback", self._take)
            return

        def committing(conn: Connection) -> None:
            queues = self._take(conn)
            if queues:
                self._spawn(loop, self._after(conn, conn.get_transaction(), queues))

        event.listen(target, "commit", committing)
        event.listen(target, "rollback", self._take)

    def _take(self, target: Any) -> set[str]:
        pending = self._pending.get(target)
        if not pending:
            return set()
        queues = set(pending)
        pending.clear()
        return queues

    async def _after(self, conn: Connection, transaction: Any, queues: set[str]) -> None:
        """The connection's ``commit`` event comes before the commit itself: wait for the
        transaction to end, then wake."""
        deadline = asyncio.get_running_loop().time() + _COMMIT_WAIT
        while conn.get_transaction() is transaction and transaction is not None:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.001)
        self._wake(queues)

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro: Any) -> None:
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
