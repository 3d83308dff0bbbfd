"""MySQLStore: durable, multi-node jobs on MySQL 8 / MariaDB 10.6+ through asyncmy (default) or
aiomysql.

The shared SQL core (:class:`~.._sql.store.SQLStore`) over the MySQL dialect and executor.
Claims are ``SELECT ... FOR UPDATE SKIP LOCKED`` in index order, then an ``UPDATE`` by the
sorted primary keys, in one READ COMMITTED transaction; deadlocks and lock wait timeouts are
retried inside the store. There is no push notification: workers poll adaptively (fast while
jobs flow, backing off to ``poll_interval`` when idle), and inserts wake the workers of the
same process directly.

Time: by default every statement reads the server's clock (``UTC_TIMESTAMP(6)``), whatever the
session time zone, so nodes with skewed clocks agree. A store given a ``clock`` (tests:
``relaybus.testing.FakeClock``) binds that clock's time instead.
"""

from __future__ import annotations

from ..._clock import Clock, SystemClock
from ..._dsn import mask_dsn
from ..._errors import ConfigurationError
from ..._validate import check_identifier
from .._sql.store import SQLStore
from .dialect import MySQLDialect
from .executor import MySQLExecutor, ServerInfo

__all__ = ["MySQLStore"]


class MySQLStore(SQLStore):
    """Jobs in MySQL 8 or MariaDB 10.6+, shared by any number of worker processes.

    ``dsn`` is ``mysql://user:password@host:port/database`` (``mariadb://`` too; options
    ``?unix_socket=...&charset=...&connect_timeout=...``); the store keeps a pool of up to
    ``max_size`` connections (``min_size`` opened at once). ``driver``: ``"asyncmy"`` (the
    default, the ``mysql`` extra) or ``"aiomysql"``; ``conn=`` takes a connection of the same
    library. Opening runs no DDL unless ``auto_migrate=True``: run ``await store.migrate()``
    (or ``relaybus migrate``) once per database and prefix. ``clock=None`` (the default) keeps
    time with the server's clock. A server without ``SKIP LOCKED`` (MySQL < 8.0.1, MariaDB <
    10.6) is refused at open.
    """

    def __init__(
        self,
        dsn: str,
        *,
        prefix: str = "relaybus_",
        clock: Clock | None = None,
        auto_migrate: bool = False,
        min_size: int = 1,
        max_size: int = 10,
        driver: str = "asyncmy",
    ) -> None:
        check_identifier("table prefix", prefix, allow_empty=True)
        if not isinstance(dsn, str):
            raise ConfigurationError(f"MySQLStore takes a DSN string, not {type(dsn).__name__}")
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ConfigurationError(
                f"pool sizes must satisfy 0 <= min_size <= max_size, 1 <= max_size; "
                f"got min_size={min_size}, max_size={max_size}"
            )
        self.prefix = prefix
        dialect = MySQLDialect(prefix=prefix)
        self._executor = MySQLExecutor(
            dsn, dialect.queries, driver=driver, min_size=min_size, max_size=max_size
        )
        super().__init__(
            dialect,
            self._executor,
            clock=clock or SystemClock(),
            db_clock=clock is None,
            auto_migrate=auto_migrate,
        )
        self._mysql_dialect = dialect

    @classmethod
    def from_dsn(cls, dsn: str, *, prefix: str, schema: str | None = None) -> MySQLStore:
        """A store for ``mysql://...`` (``relaybus migrate``); the DSN names the database,
        ``schema`` is ignored."""
        return cls(dsn, prefix=prefix)

    def __repr__(self) -> str:
        return f"MySQLStore({mask_dsn(self._executor.dsn)!r}, prefix={self.prefix!r})"

    @property
    def server(self) -> ServerInfo | None:
        """The server's version and settings, once a connection was made."""
        return self._executor.server

    @property
    def driver(self) -> str:
        return self._executor.driver.name

    async def open(self) -> None:
        await super().open()
        self._mysql_dialect.server = self._executor.server
