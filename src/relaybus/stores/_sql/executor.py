"""The executor protocol: one client library running named queries.

An executor owns connections (a pool, or one connection on a thread) and nothing else: no SQL of
its own, no job policy. The core hands it ``work``, an async function of a :class:`Tx`, and the
executor runs it on a connection -- inside one transaction when asked -- and returns its result.
Errors come out as the client library raised them; the dialect classifies them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

__all__ = ["Executor", "Held", "Tx", "drive"]

T = TypeVar("T")


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, synchronously: a work on a Tx whose
    methods complete without suspending (SQLite's connection thread, SQLAlchemy's greenlet)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a work run synchronously awaited something other than its Tx")


class Tx(Protocol):
    """One connection running the dialect's named queries (binds given by name)."""

    async def fetch(self, name: str, args: Mapping[str, Any]) -> list[Any]:
        """Rows as sequences, in the query's column order."""
        ...

    async def fetchrow(self, name: str, args: Mapping[str, Any]) -> Any | None: ...

    async def execute(self, name: str, args: Mapping[str, Any]) -> int:
        """Run a statement; return how many rows it changed."""
        ...

    async def executemany(
        self, name: str, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        """Run a statement once per row: a mapping of binds, or a tuple of them in the query's
        bind order (``Query.binds``; the hot insert path builds tuples, see ``inserts.py``)."""
        ...

    async def script(self, sql: str) -> None:
        """Run a migration script (several statements, no binds)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """A transaction on this connection (commit on exit, rollback on error)."""
        ...


class Held(Protocol):
    """A connection of the executor's own held for a job's transaction (``ctx.transaction()``)."""

    #: What the handler gets: the client library's own connection object.
    connection: Any

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run the core's ``work`` on the held connection, inside its open transaction."""
        ...


class Executor(Protocol):
    """A client library's connections, for the core (see the module docstring)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def run(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        transaction: bool = False,
        conn: Any = None,
        orphan: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``work`` on a connection: ``conn`` (the caller's own, joining its transaction)
        or one of the executor's. ``orphan``: where the executor can tell that the caller was
        cancelled after ``work`` finished, it hands the result there, to be undone."""
        ...

    async def run_detached(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``work`` in a transaction on a connection of its own, whether or not the
        executor is open (``migrate`` before ``open``)."""
        ...

    def hold(self) -> AbstractAsyncContextManager[Held]:
        """A connection of the executor's own in a transaction, for a job handler's own writes:
        committed on a normal exit, rolled back on an error. The pool keeps room for the
        store's other statements (see ``reserve``)."""
        ...

    def reserve(self, concurrency: int) -> None:
        """A worker of ``concurrency`` slots starts on this store: grow the pool to at least
        concurrency + 3 connections (or warn when the pool is the user's and smaller)."""
        ...

    def post(self, work: Callable[[Tx], Awaitable[object]]) -> None:
        """Run ``work`` soon without waiting for it (failures are logged, not raised)."""
        ...

    def check_conn(self, conn: Any) -> None:
        """Raise StoreError unless ``conn`` is a connection this executor can run work on."""
        ...

    def describe(self, exc: BaseException) -> str:
        """``exc`` as text for a message, with any secret (a DSN password) masked."""
        ...

    async def listen(
        self, channel: str, on_notify: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None:
        """Call ``on_notify(payload)`` per notification on ``channel`` (reconnecting as
        needed) and return how to stop, or None when the database cannot push."""
        ...
