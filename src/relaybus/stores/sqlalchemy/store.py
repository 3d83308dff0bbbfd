"""SQLAlchemyStore: relaybus's SQL stores over the connections of a SQLAlchemy ``AsyncEngine``.

Not a database of its own: the engine's database picks the dialect (``engine.dialect.name``
in the store registry: PostgreSQL, MySQL/MariaDB, SQLite), and the store is the shared SQL core
over that dialect and the SQLAlchemy executor. Same queries, same algorithms, same schema and
migrations as ``PostgresStore``, ``MySQLStore`` and ``SQLiteStore``; a database may be shared
by both kinds of store.

``dispatch(event, conn=session)`` takes an ``AsyncSession`` or ``AsyncConnection``: the jobs
are written in the caller's transaction (in a savepoint), and this process's workers are woken
once it commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..._clock import Clock, SystemClock
from ..._driver import Inserted, NewJob
from ..._errors import ConfigurationError
from ..._validate import check_identifier
from .._sql.dialect import ErrorKind
from .._sql.store import SQLStore
from ..registry import for_sqlalchemy
from .commit import CommitWaker
from .executor import PARAMSTYLES, SQLAlchemyExecutor
from .tx import driver_error

__all__ = ["SQLAlchemyStore"]


class SQLAlchemyStore(SQLStore):
    """Jobs in the database of ``engine`` (a SQLAlchemy ``AsyncEngine``), through its pool.

    Engines: ``postgresql+asyncpg`` (LISTEN/NOTIFY), ``postgresql+psycopg``,
    ``mysql+asyncmy``, ``mysql+aiomysql`` and ``sqlite+aiosqlite`` (these poll). While open,
    the store keeps up to ``max_size`` of the engine's connections checked out (size the
    engine's pool for it). ``schema`` is PostgreSQL's (default ``public``). Opening runs no DDL
    unless ``auto_migrate=True``: run ``await store.migrate()``, ``relaybus migrate`` or the
    Alembic revisions of :mod:`relaybus.sqlalchemy`. ``clock=None`` (the default) keeps time
    with the database's clock (SQLite: the system clock).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        prefix: str = "relaybus_",
        schema: str | None = None,
        clock: Clock | None = None,
        auto_migrate: bool = False,
        max_size: int = 4,
    ) -> None:
        if not isinstance(engine, AsyncEngine):
            raise ConfigurationError(
                "SQLAlchemyStore takes a SQLAlchemy AsyncEngine (create_async_engine(...)), "
                f"not {type(engine).__name__}"
            )
        check_identifier("table prefix", prefix, allow_empty=True)
        if max_size < 1:
            raise ConfigurationError(f"max_size must be at least 1, not {max_size}")
        name = engine.dialect.name
        kind = for_sqlalchemy(name)
        paramstyle = PARAMSTYLES.get(engine.dialect.paramstyle)
        if kind is None or paramstyle is None:
            raise ConfigurationError(
                f"SQLAlchemyStore runs on PostgreSQL, MySQL/MariaDB and SQLite engines, "
                f"not {name} ({engine.dialect.driver})"
            )
        args: dict[str, Any] = {"prefix": prefix, "paramstyle": paramstyle}
        if kind.has_schema:
            args["schema"] = check_identifier("schema", schema or "public")
        elif schema is not None:
            raise ConfigurationError(f"{name} has no schemas: drop schema={schema!r}")
        dialect = kind.load_dialect()(**args)
        self.engine = engine
        self.prefix = prefix
        self.schema = args.get("schema")
        self._owns_engine = False
        self._executor = SQLAlchemyExecutor(
            engine, dialect, max_size=max_size, kind_of=self.kind_of
        )
        super().__init__(
            dialect,
            self._executor,
            clock=clock or SystemClock(),
            db_clock=clock is None and dialect.clock_in_database,
            auto_migrate=auto_migrate,
        )
        self._subscribers: list[Callable[[str], None]] = []
        self._waker = CommitWaker(self._wake)

    @classmethod
    def from_dsn(cls, dsn: str, *, prefix: str, schema: str | None = None) -> SQLAlchemyStore:
        """A store of its own engine for a SQLAlchemy URL (``postgresql+asyncpg://...``), for
        ``relaybus migrate``; the engine is disposed of when the store closes."""
        store = cls(create_async_engine(dsn), prefix=prefix, schema=schema)
        store._owns_engine = True
        return store

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"SQLAlchemyStore({url!r}, prefix={self.prefix!r})"

    async def open(self) -> None:
        if self._open:
            return
        await super().open()
        if self.dialect.supports_notify:
            # Workers poll (adaptively) when the driver cannot push.
            self.supports_notify = await self._executor.can_listen()

    async def close(self) -> None:
        await super().close()
        if self._owns_engine:
            await self.engine.dispose()

    def kind_of(self, exc: BaseException) -> ErrorKind | None:
        if isinstance(exc, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
            return "unavailable"  # SQLAlchemy's own: a lost connection, a pool timeout
        return self.dialect.classify(driver_error(exc))

    # -- producing
    async def insert_many(self, jobs: Sequence[NewJob], conn: Any = None) -> list[Inserted]:
        inserted = await super().insert_many(jobs, conn)
        if conn is not None and self._subscribers:
            queues = {job.queue for job, row in zip(jobs, inserted, strict=True)}
            self._waker.add(conn, queues)
        return inserted

    async def subscribe(self, on_insert: Callable[[str], None]) -> Callable[[], Any] | None:
        stop = await super().subscribe(on_insert)
        self._subscribers.append(on_insert)

        async def unsubscribe() -> None:
            if on_insert in self._subscribers:
                self._subscribers.remove(on_insert)
            if stop is not None:
                await stop()

        return unsubscribe

    def _wake(self, queues: Iterable[str]) -> None:
        for on_insert in list(self._subscribers):
            for queue in queues:
                on_insert(queue)
