"""The PostgreSQL dialect: its queries (``queries.sql``), migrations, error classifier, and the
one-statement algorithms arrays allow (fetch with completions, run ends, batch inserts)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import asyncpg  # type: ignore[import-untyped]

from ..._codec import encode_error
from ..._driver import FetchParams, Inserted, NewJob
from ..._jobrules import RunEnd
from .._sql.dialect import Dialect, ErrorKind, Runner
from .._sql.executor import Tx
from .._sql.queries import Paramstyle
from .inserts import insert_jobs

__all__ = ["PostgresDialect"]

#: Errors that mean "the database is not reachable (now)". InternalClientError: asyncpg's
#: protocol state on a pooled connection the server terminated while it sat idle (seen under
#: repeated pg_terminate_backend: "cannot switch to state ..."); the pool drops that connection.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)
#: Errors that mean "the schema is not there".
_MISSING_SCHEMA: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.UndefinedFunctionError,
    asyncpg.InvalidSchemaNameError,
)
#: Conflicts between concurrent transactions: worth running again.
_RETRY: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
_RUNNING = "running"
#: The same kinds by SQLSTATE, for the errors of other PostgreSQL client libraries (psycopg,
#: through SQLAlchemy): unique violation; undefined table, function, schema; deadlock,
#: serialization failure; connection exceptions (class 08) and operator intervention (57P0x).
_SQLSTATE_KINDS: dict[str, ErrorKind] = {
    "23505": "unique",
    "42P01": "missing_schema",
    "42883": "missing_schema",
    "3F000": "missing_schema",
    "40P01": "retry",
    "40001": "retry",
    "57P01": "unavailable",
    "57P02": "unavailable",
    "57P03": "unavailable",
}


def channel_name(schema: str, prefix: str) -> str:
    # Unquoted identifiers fold to lower case, so "Public" and "public" name the same tables.
    name = f"{schema}.{prefix}jobs".lower()
    if len(name) > 63:  # NAMEDATALEN - 1
        name = "relaybus_" + hashlib.sha256(name.encode()).hexdigest()[:32]
    return name


class PostgresDialect(Dialect):
    name: ClassVar[str] = "postgres"
    package: ClassVar[str] = "relaybus.stores.postgres"
    supports_notify: ClassVar[bool] = True
    has_schema: ClassVar[bool] = True
    write_in_transaction: ClassVar[bool] = False
    answers_can_be_lost: ClassVar[bool] = True
    own_queries: ClassVar[frozenset[str]] = frozenset(
        {
            "insert_one", "insert_plain", "insert_unique_one", "insert_unique", "fetch",
            "end_runs", "end_runs_and_fetch", "release_orphans", "ping", "transaction_settings",
            # transactions of a client library without its own (SQLAlchemy in autocommit)
            "begin", "commit", "rollback",
        }
    )  # fmt: skip

    def __init__(self, *, prefix: str, schema: str, paramstyle: Paramstyle = "numeric") -> None:
        super().__init__(prefix=prefix, schema=schema, paramstyle=paramstyle)
        self.channel = channel_name(schema, prefix)

    @property
    def title(self) -> str:
        return "PostgreSQL"

    # -- values
    def as_bytes(self, value: Any) -> bytes:
        return value.encode() if isinstance(value, str) else bytes(value)

    def json_text(self, data: bytes) -> Any:
        return data.decode()

    def run_pairs(self, runs: Sequence[tuple[int, int]]) -> dict[str, Any]:
        return {"ids": [run[0] for run in runs], "attempts": [run[1] for run in runs]}

    def classify(self, exc: BaseException) -> ErrorKind | None:
        if isinstance(exc, asyncpg.UniqueViolationError):
            return "unique"
        if isinstance(exc, _MISSING_SCHEMA):
            return "missing_schema"
        if isinstance(exc, _RETRY):
            return "retry"
        if isinstance(exc, _UNAVAILABLE):
            return "unavailable"
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str):
            return _SQLSTATE_KINDS.get(sqlstate, "unavailable" if sqlstate[:2] == "08" else None)
        if type(exc).__module__.startswith("psycopg") and type(exc).__name__ in (
            "OperationalError",
            "InterfaceError",
        ):
            return "unavailable"  # no SQLSTATE: the connection failed or is closed
        return None

    # -- algorithms
    async def insert(
        self, run: Runner, jobs: Sequence[NewJob], now: datetime | None
    ) -> list[Inserted]:
        return await insert_jobs(run, self.channel, jobs, now)

    def _end_args(self, ends: Sequence[RunEnd], now: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "now": now,
            "ids": [e.id for e in ends],
            "attempts": [e.attempt for e in ends],
            "channel": self.channel,
            "running": _RUNNING,
        }
        for plural, single, values in (
            ("states", "state", [e.state.value for e in ends]),
            ("refunds", "refund", [e.refund for e in ends]),
            ("rescued_list", "rescued", [e.rescued for e in ends]),
            ("delays", "delay", [e.delay for e in ends]),
            ("finalize_list", "finalize", [e.finalize for e in ends]),
            ("errors", "error", [_error_text(e) for e in ends]),
        ):
            args[plural], args[single] = _column(values)
        return args

    async def end_runs(self, tx: Tx, ends: Sequence[RunEnd], now: Any) -> list[int]:
        row = await tx.fetchrow("end_runs", self._end_args(ends, now))
        ids = None if row is None else row[0]
        return [] if ids is None else list(ids)

    async def fetch(
        self, tx: Tx, params: FetchParams, ends: Sequence[RunEnd], now: Any
    ) -> list[Any]:
        args = {
            "queue": params.queue,
            "limit": params.limit,
            "node": params.node,
            "isolate_after": params.isolate_after,
            "idle": params.idle,
            "now": now,
        }
        if ends:  # finish the last runs and claim the next: one statement
            return await tx.fetch("end_runs_and_fetch", {**self._end_args(ends, now), **args})
        return await tx.fetch("fetch", args)


def _column(values: list[Any]) -> tuple[list[Any] | None, Any]:
    """``(values, None)``, or ``(None, value)`` when every run has the same value."""
    first = values[0]
    if values.count(first) == len(values):
        return None, first
    return values, None


def _error_text(end: RunEnd) -> str | None:
    return None if end.error is None else encode_error(end.error).decode()
