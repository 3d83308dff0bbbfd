"""PostgresStore: durable, multi-node jobs on PostgreSQL through asyncpg.

The shared SQL core (:class:`~.._sql.store.SQLStore`) over the PostgreSQL dialect and the
asyncpg executor. Most operations are one statement, prepared and cached per connection by
asyncpg, run in autocommit on a pooled connection (the store's own light pool, or the user's
``asyncpg.Pool``) unless the caller gives its own connection (``conn=``: the jobs join the
caller's transaction). Inserts and state changes of available jobs send ``NOTIFY`` in the same
statement.

Time: by default every statement reads the database clock (``now()``), so nodes with skewed
clocks agree. A store given a ``clock`` (tests: ``relaybus.testing.FakeClock``) binds that
clock's time instead, as ``:now`` of every statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from ..._clock import Clock, SystemClock
from ..._dsn import mask_dsn
from ..._errors import ConfigurationError
from ..._validate import check_identifier
from .._sql.store import SQLStore
from .dialect import PostgresDialect
from .executor import AsyncpgExecutor

__all__ = ["PostgresStore"]

#: Session settings of the store's own connections, which run nothing but the store's statements.
#: Each hot statement is written for one index path (fetch: an ordered scan of the partial index
#: of available jobs, stopped by LIMIT; completions: primary-key lookups). A prepared statement
#: keeps the plan made at its first runs, often on an empty table, and statistics lag behind a
#: burst of inserts: the planner would then pick a sequential or bitmap scan plus a sort, and
#: sort the whole backlog on every fetch until the next ANALYZE. So sequential and bitmap scans
#: are discouraged (still used where nothing else can answer: the admin ``stats``). Sorts stay
#: allowed: discouraging them makes the planner walk whole indexes to get an order.
#: Plans are generic from the first run.
_SESSION = {
    "application_name": "relaybus",
    "jit": "off",
    "timezone": "UTC",
    "plan_cache_mode": "force_generic_plan",
    "enable_seqscan": "off",
    "enable_bitmapscan": "off",
}


class PostgresStore(SQLStore):
    """Jobs in PostgreSQL, shared by any number of worker processes (asyncpg).

    ``dsn_or_pool`` is a DSN (the store makes and closes its own pool of ``min_size`` to
    ``max_size`` connections) or an ``asyncpg.Pool`` (used as is, never closed by the store;
    best one dedicated to the store, made with ``server_settings=`` :attr:`server_settings`).
    Tables are ``{schema}.{prefix}jobs`` and friends; opening runs no DDL unless
    ``auto_migrate=True``: run ``await store.migrate()`` (or ``relaybus migrate``) once per
    schema. ``clock=None`` (the default) keeps time with the database's clock.
    """

    #: The session settings of the store's own connections (see ``_SESSION``). Give them to an
    #: ``asyncpg.Pool`` that you dedicate to the store (``create_pool(...,
    #: server_settings=dict(PostgresStore.server_settings))``) to get the same plans.
    server_settings: Mapping[str, str] = MappingProxyType(_SESSION)

    def __init__(
        self,
        dsn_or_pool: str | Any,
        *,
        prefix: str = "relaybus_",
        schema: str = "public",
        clock: Clock | None = None,
        auto_migrate: bool = False,
        min_size: int = 2,
        max_size: int = 10,
    ) -> None:
        check_identifier("table prefix", prefix, allow_empty=True)
        check_identifier("schema", schema)
        if not isinstance(dsn_or_pool, (str, asyncpg.Pool)):
            raise ConfigurationError(
                "PostgresStore takes a DSN string or an asyncpg.Pool, "
                f"not {type(dsn_or_pool).__name__}"
            )
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ConfigurationError(
                f"pool sizes must satisfy 0 <= min_size <= max_size, 1 <= max_size; "
                f"got min_size={min_size}, max_size={max_size}"
            )
        self.prefix = prefix
        self.schema = schema
        dialect = PostgresDialect(prefix=prefix, schema=schema)
        self._executor = AsyncpgExecutor(
            dsn_or_pool, dialect.queries, session=_SESSION, min_size=min_size, max_size=max_size
        )
        super().__init__(
            dialect,
            self._executor,
            clock=clock or SystemClock(),
            db_clock=clock is None,
            auto_migrate=auto_migrate,
        )

    @classmethod
    def from_dsn(cls, dsn: str, *, prefix: str, schema: str | None = None) -> PostgresStore:
        """A store of its own pool for ``postgresql://...`` (``relaybus migrate``)."""
        return cls(dsn, prefix=prefix, schema=schema or "public")

    def __repr__(self) -> str:
        dsn = self._executor.dsn
        target = mask_dsn(dsn) if dsn is not None else "<asyncpg.Pool>"
        return f"PostgresStore({target!r}, schema={self.schema!r}, prefix={self.prefix!r})"

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this schema and prefix."""
        assert self.dialect.channel is not None
        return self.dialect.channel

    @property
    def pool(self) -> Any:
        """The connection pool: the user's ``asyncpg.Pool``, or the store's own (None until
        opened). Both have ``acquire()`` (an async context manager) and fetch/fetchrow/fetchval."""
        return self._executor.pool
