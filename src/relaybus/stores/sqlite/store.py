"""SQLiteStore: the embedded durable store (stdlib ``sqlite3`` on one dedicated thread).

The shared SQL core (:class:`~.._sql.store.SQLStore`) over the SQLite dialect and the sqlite3
executor. Several processes may share the file: jobs, node heartbeats, the leader lease and the
applied migrations all live in the database. Times are Unix epoch seconds from the injected
clock; the schema is created on ``open()``.
"""

from __future__ import annotations

import os

from ..._clock import Clock, SystemClock
from ..._errors import ConfigurationError
from ..._validate import check_identifier, seconds
from .._sql.store import SQLStore
from .dialect import SQLiteDialect
from .executor import SQLiteExecutor

__all__ = ["SQLiteStore"]


class SQLiteStore(SQLStore):
    """Durable jobs in one SQLite file, shared by the processes of one machine.

    ``path`` is a file path (``":memory:"`` works for a single process). The schema is created
    on ``open()``. ``busy_timeout`` (seconds) is how long a write waits for another process's
    write lock before failing with :class:`StoreError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "relaybus_",
        clock: Clock | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = os.fspath(path)
        self.prefix = check_identifier("table prefix", prefix, allow_empty=True)
        self.busy_timeout = seconds("busy_timeout", busy_timeout)
        dialect = SQLiteDialect(prefix=prefix)
        executor = SQLiteExecutor(self.path, dialect.queries, self.busy_timeout)
        super().__init__(
            dialect, executor, clock=clock or SystemClock(), db_clock=False, auto_migrate=True
        )

    @classmethod
    def from_dsn(cls, dsn: str, *, prefix: str, schema: str | None = None) -> SQLiteStore:
        """``sqlite:///relative/path``, ``sqlite:////absolute/path`` or a bare file path ending
        in ``.db``, ``.sqlite`` or ``.sqlite3``. SQLite has no schemas: ``schema`` must be None."""
        if schema is not None:
            raise ConfigurationError(
                f"SQLite has no schemas: drop the schema {schema!r} (--schema) for {dsn!r}"
            )
        if "://" not in dsn and not dsn.lower().endswith((".db", ".sqlite", ".sqlite3")):
            raise ConfigurationError(
                f"{dsn!r} is not a SQLite DSN: use sqlite:///path, or a file name ending in "
                ".db, .sqlite or .sqlite3"
            )
        path = dsn.removeprefix("sqlite://") if dsn.startswith("sqlite://") else dsn
        if dsn.startswith("sqlite://") and path.startswith("/") and not path.startswith("//"):
            path = path[1:]
        return cls(path or ":memory:", prefix=prefix)

    def __repr__(self) -> str:
        if self.prefix == "relaybus_":
            return f"SQLiteStore({self.path!r})"
        return f"SQLiteStore({self.path!r}, prefix={self.prefix!r})"
