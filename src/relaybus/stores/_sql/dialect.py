"""The dialect contract: one database's named queries and the few algorithms that must differ.

A dialect holds no connection and imports no client library. It gives the core:

- its named queries (``queries.sql`` in its package), compiled to the executor's paramstyle;
- its numbered migrations (``migrations/NNNN_name.sql``);
- a time codec (how "now" and stored times travel) and how JSON text is bound;
- an error classifier (which client errors mean unavailable, missing schema, unique violation,
  or a transaction worth retrying);
- the algorithms that differ between databases: :meth:`fetch`, :meth:`insert` and
  :meth:`end_runs` (defaults are select-then-update loops; PostgreSQL overrides them with
  one-statement array paths).

The job policy is not here: it is :mod:`relaybus._jobrules`, and every dialect applies its
decisions as bound values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

from ..._driver import FetchParams, Inserted, NewJob
from ..._jobrules import RunEnd
from .queries import (
    Paramstyle,
    Query,
    compile_query,
    load_migrations,
    load_queries,
    render,
    split_statements,
)
from .rows import RowCodec

if TYPE_CHECKING:
    from .executor import Tx

__all__ = ["CORE_QUERIES", "Dialect", "ErrorKind", "Runner"]

T = TypeVar("T")

#: What a client error means to the core.
ErrorKind = Literal["unavailable", "missing_schema", "unique", "retry"]


#: The queries the core runs on every dialect (``Dialect.own_queries`` adds the ones its own
#: algorithms and executor run). Same name, same operation, same columns, in every dialect.
CORE_QUERIES: frozenset[str] = frozenset(
    {
        # migrations
        "migrate_lock", "schema_exists", "create_schema", "create_migrations_table",
        "applied_migrations", "record_migration",
        # nodes and maintenance
        "heartbeat", "lost_runs", "delete_node", "elect", "resign", "stage", "due_contested",
        "key_holder", "make_available", "set_state", "rescue_candidates", "prune",
        # admin
        "get_job", "list_jobs", "lock_job", "retry_job", "stats", "delete_job", "nodes",
        "pause_queue", "resume_queue", "paused_queues", "count_jobs", "capped_stats",
        "finished_buckets",
    }
)  # fmt: skip


class Runner(Protocol):
    """What a dialect's insert algorithm runs its work with (the core provides it): the
    caller's connection (``conn=``) or the store's, with the store's error mapping."""

    #: Whether the work runs on the caller's own connection (inside the caller's transaction:
    #: nothing may be retried there, and driver errors reach the caller as they are).
    caller_conn: bool

    async def __call__(
        self, work: Callable[[Tx], Awaitable[T]], *, transaction: bool = False
    ) -> T: ...

    def kind_of(self, exc: BaseException) -> ErrorKind | None: ...


class Dialect:
    """Base class of every SQL dialect (see the module docstring)."""

    #: The dialect's name, as the CLI and the store registry spell it.
    name: ClassVar[str]
    #: The package holding ``queries.sql`` and ``migrations/``.
    package: ClassVar[str]
    #: Whether tables live in a named schema (``/*schema*/`` in the SQL).
    has_schema: ClassVar[bool] = False
    #: Whether inserts and state changes can notify other processes (LISTEN/NOTIFY).
    supports_notify: ClassVar[bool] = False
    #: Whether every write runs in an explicit transaction (SQLite: BEGIN IMMEDIATE) or as
    #: single autocommit statements where one statement suffices (PostgreSQL).
    write_in_transaction: ClassVar[bool] = True
    #: Whether ``elect`` runs in a transaction when writes do. False where its statements are
    #: each atomic and a transaction spanning round trips would let a node frozen between them
    #: hold the leader row that every other node's election waits for (MySQL).
    elect_in_transaction: ClassVar[bool] = True
    #: Whether the database may drop a connection after committing a claim (a server database):
    #: then the core keeps a ledger of handed-out claims to give back orphans.
    answers_can_be_lost: ClassVar[bool] = False
    #: Whether migrations run on a connection of their own even when the store is open (a
    #: migration lock bound to the session, released only when that connection closes).
    migrate_detached: ClassVar[bool] = False
    #: Whether the database keeps time (a bound "now" of None means its clock); SQLite does
    #: not: its store always binds the injected clock's time.
    clock_in_database: ClassVar[bool] = True
    #: How many connections one store's executor should use at most (None: its own setting).
    #: SQLite takes one writer at a time: a store's connections would only wait on each other.
    max_connections: ClassVar[int | None] = None
    #: The notification channel (``:channel`` in the queries), where the database has one.
    channel: str | None = None
    #: Queries only this dialect's algorithms and executor run (the rest: :data:`CORE_QUERIES`).
    own_queries: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, prefix: str, schema: str | None, paramstyle: Paramstyle) -> None:
        self.prefix = prefix
        self.schema = schema
        self.paramstyle: Paramstyle = paramstyle
        raw = load_queries(self.package)
        self.queries: Mapping[str, Query] = {
            name: compile_query(name, render(sql, prefix=prefix, schema=schema), paramstyle)
            for name, sql in raw.items()
        }
        self.migrations: list[tuple[int, str, str]] = [
            (version, name, render(sql, prefix=prefix, schema=schema))
            for version, name, sql in load_migrations(self.package)
        ]
        self.codec = RowCodec(self.decode_time, self.as_bytes)

    # -- names shown to users
    @property
    def title(self) -> str:
        """The database's name in messages (``PostgreSQL``, ``SQLite``)."""
        return self.name

    def unavailable_text(self, described: str) -> str:
        """The message of a StoreError for a client error that is not the caller's."""
        return f"{self.title} is unavailable: {described}"

    def migrate_lock_key(self) -> str:
        return f"relaybus.migrate:{(self.schema or '').lower()}.{self.prefix.lower()}"

    # -- time codec and values
    def encode_time(self, value: datetime | None) -> Any:
        """``value`` as the queries bind it; None means "the database clock"."""
        return value

    def decode_time(self, value: Any) -> datetime:
        return value  # type: ignore[no-any-return]

    def as_bytes(self, value: Any) -> bytes:
        """A stored JSON text column read back as bytes."""
        return value if isinstance(value, bytes) else str(value).encode()

    def json_text(self, data: bytes) -> Any:
        """JSON bytes as the queries bind them."""
        return data

    def run_pairs(self, runs: Sequence[tuple[int, int]]) -> dict[str, Any]:
        """Binds of a list of (id, attempt) runs (``heartbeat``, ``lost_runs``)."""
        raise NotImplementedError

    # -- connections of an executor that serves several databases (SQLAlchemy)
    async def on_connect(self, tx: Tx) -> None:
        """Prepare a new connection the store owns (session settings; what the dialect must
        know about the server). The database's own executor may do this itself."""

    async def on_migrate(self, tx: Tx) -> None:
        """Prepare the connection a migration runs on (before its transaction)."""

    def statements(self, script: str) -> list[str]:
        """A migration script as single statements, for clients that run one at a time."""
        return split_statements(script)

    # -- errors
    def classify(self, exc: BaseException) -> ErrorKind | None:
        """What a client error means, or None when it is none of :data:`ErrorKind`."""
        return None

    # -- algorithms that differ
    async def fetch(
        self, tx: Tx, params: FetchParams, ends: Sequence[RunEnd], now: Any
    ) -> list[Any]:
        """Apply ``ends`` (the fetch's completions, decided), then claim up to
        ``params.limit`` rows (:data:`~.rows.CLAIM_COLUMNS`); one transaction."""
        raise NotImplementedError

    async def end_runs(self, tx: Tx, ends: Sequence[RunEnd], now: Any) -> list[int]:
        """Apply decided run ends, fenced on (id, running, attempt); return applied ids."""
        raise NotImplementedError

    async def insert(
        self, run: Runner, jobs: Sequence[NewJob], now: datetime | None
    ) -> list[Inserted]:
        """Insert ``jobs`` in input order, as if one by one (``now`` None: database clock)."""
        raise NotImplementedError

    # -- statements that are one query on most databases; a dialect without ``UPDATE ...
    # RETURNING`` (MySQL) overrides them with a locking select, then a write by primary key.
    async def elect(self, tx: Tx, args: Mapping[str, Any]) -> bool:
        """Take or renew the leader lease (``elect``); whether ``args["node"]`` leads."""
        return await tx.fetchrow("elect", args) is not None

    async def stage_due(self, tx: Tx, args: Mapping[str, Any]) -> list[str]:
        """Make due jobs that hold their key available (``stage``); their queues."""
        return [row[0] for row in await tx.fetch("stage", args)]

    async def prune_state(self, tx: Tx, args: Mapping[str, Any]) -> int:
        """Delete finished jobs of one state past their retention (``prune``); how many."""
        return await tx.execute("prune", args)

    async def release_orphans(self, tx: Tx, args: Mapping[str, Any]) -> int:
        """Give back a node's orphaned claims (``release_orphans``); how many."""
        row = await tx.fetchrow("release_orphans", args)
        return int(row[0]) if row is not None else 0
