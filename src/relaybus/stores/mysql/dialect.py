"""The MySQL/MariaDB dialect: its queries (``queries.sql``), migrations, UTC ``DATETIME(6)``
time codec, error classifier, and the algorithms a database without ``UPDATE ... RETURNING``
needs: a locking read (``FOR UPDATE SKIP LOCKED``, in index order) followed by a write by the
sorted primary keys, in one READ COMMITTED transaction (claims, run ends, stage, prune).

What differs between MariaDB and MySQL 8 is kept here and in ``inserts.py``, and small: batch
ids (MariaDB: ``RETURNING``; MySQL 8: consecutive ids or row by row). Everything else is one
code path for both servers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, cast

import msgspec

from ..._codec import encode_error
from ..._driver import FetchParams, Inserted, NewJob
from ..._jobrules import RunEnd
from ..._types import JobState
from .._sql.dialect import Dialect, ErrorKind, Runner
from .._sql.executor import Tx
from .._sql.queries import Paramstyle
from .executor import (
    DUPLICATE_KEY,
    LOCK_WAIT_TIMEOUT_SECONDS,
    NO_SUCH_TABLE,
    RETRY_CODES,
    UNAVAILABLE_CODES,
    UNKNOWN_DATABASE,
    ServerInfo,
    check_version,
    error_code,
)
from .inserts import InsertTx, insert_jobs, needs_now

__all__ = ["MySQLDialect"]

_encode = msgspec.json.Encoder()
_RUNNING = "running"
#: Claim columns (rows.CLAIM_COLUMNS): attempt and rescues.
_ATTEMPT, _RESCUES = 5, 12
#: The claim reads this many candidates per job it may take (fetch_select): room for as many
#: nodes claiming the same head of the queue at once, each skipping the others' locked rows.
_CANDIDATES_PER_JOB = 4


class CommitTx(Tx, Protocol):
    """The MySQL executor's Tx: a statement that is the work's last may carry the COMMIT."""

    async def execute(self, name: str, args: Mapping[str, Any], *, commit: bool = False) -> int: ...


def _plain_completion(end: RunEnd) -> bool:
    return (
        end.state is JobState.COMPLETED and end.error is None and not end.refund
        and not end.rescued and end.delay is None
    )  # fmt: skip


def _ids(ids: Sequence[int]) -> str:
    return _encode.encode(sorted(ids)).decode()


class MySQLDialect(Dialect):
    name: ClassVar[str] = "mysql"
    package: ClassVar[str] = "relaybus.stores.mysql"
    write_in_transaction: ClassVar[bool] = True
    #: The election's two statements each commit on their own (see ``elect``).
    elect_in_transaction: ClassVar[bool] = False
    #: The migration lock is a session's named lock (GET_LOCK): migrate on a connection of its own.
    migrate_detached: ClassVar[bool] = True
    answers_can_be_lost: ClassVar[bool] = True
    own_queries: ClassVar[frozenset[str]] = frozenset(
        {
            "session_isolation", "session_settings", "server_info", "db_now", "ping",
            "insert_job", "insert_batch", "insert_batch_consecutive", "find_holder",
            "replace_job", "fetch", "end_runs_then_fetch", "claim", "lock_runs", "end_runs",
            "complete_runs", "complete_runs_then_fetch",
            "release_orphans",
            "make_available_many", "delete_jobs", "quiet_notes",
            # transactions of a client library without its own (SQLAlchemy in autocommit)
            "begin", "commit", "rollback",
        }
    )  # fmt: skip

    def __init__(self, *, prefix: str, paramstyle: Paramstyle = "pyformat") -> None:
        super().__init__(prefix=prefix, schema=None, paramstyle=paramstyle)
        #: The server, once the store has opened (batch ids differ between MariaDB and MySQL).
        self.server: ServerInfo | None = None

    @property
    def title(self) -> str:
        return "MySQL"

    def migrate_lock_key(self) -> str:
        # GET_LOCK names are at most 64 characters.
        digest = hashlib.sha256(self.prefix.lower().encode()).hexdigest()[:32]
        return f"relaybus.migrate.{digest}"

    async def on_connect(self, tx: Tx) -> None:
        """The server (checked once), then the session settings MySQLExecutor gives its own
        connections: READ COMMITTED, UTC, strict sql_mode, a bounded lock wait."""
        if self.server is None:
            row = await tx.fetchrow("server_info", {})
            assert row is not None
            mariadb, numbers = check_version(str(row[0]))
            self.server = ServerInfo(str(row[0]), mariadb, numbers, int(row[1]), int(row[2] or 1))
        await tx.execute("session_isolation", {})
        await tx.execute("session_settings", {"lock_wait_timeout": LOCK_WAIT_TIMEOUT_SECONDS})

    async def on_migrate(self, tx: Tx) -> None:
        await tx.execute("quiet_notes", {})  # no "already exists" notes (IF NOT EXISTS)

    # -- values
    def encode_time(self, value: datetime | None) -> Any:
        """Naive UTC, as DATETIME(6) stores it; None: the server's clock."""
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def decode_time(self, value: Any) -> datetime:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]

    def as_bytes(self, value: Any) -> bytes:
        return value.encode() if isinstance(value, str) else bytes(value)

    def json_text(self, data: bytes) -> Any:
        return data.decode()

    def run_pairs(self, runs: Sequence[tuple[int, int]]) -> dict[str, Any]:
        return {"runs": _encode.encode([list(run) for run in runs]).decode()}

    def classify(self, exc: BaseException) -> ErrorKind | None:
        if isinstance(exc, OSError):
            return "unavailable"
        code = error_code(exc)
        module = type(exc).__module__
        if not (module.startswith("asyncmy") or module.startswith("pymysql")):
            return None
        if code == DUPLICATE_KEY:
            return "unique"
        if code in (NO_SUCH_TABLE, UNKNOWN_DATABASE):
            return "missing_schema"
        if code in RETRY_CODES:
            return "retry"
        if code is None or code >= 2000 or code in UNAVAILABLE_CODES:
            return "unavailable"
        if type(exc).__name__ in ("InterfaceError", "OperationalError"):
            return "unavailable"
        return None

    # -- algorithms
    async def insert(
        self, run: Runner, jobs: Sequence[NewJob], now: datetime | None
    ) -> list[Inserted]:
        read_now = now is None and any(needs_now(job) for job in jobs)

        async def work(tx: Tx) -> list[Inserted]:
            current = now
            if read_now:
                row = await tx.fetchrow("db_now", {"now": None})
                assert row is not None
                current = self.decode_time(row[0])
            return await insert_jobs(cast(InsertTx, tx), self, jobs, current)

        # One plain job is one statement: no transaction of its own.
        single = len(jobs) == 1 and (jobs[0].unique_key is None or not jobs[0].unique_states)
        return await run(work, transaction=not single or read_now)

    async def fetch(
        self, tx: Tx, params: FetchParams, ends: Sequence[RunEnd], now: Any
    ) -> list[Any]:
        """Two round trips: ``START TRANSACTION; end_runs; fetch`` (the locking read, carrying
        the node's finished runs), then ``claim; COMMIT``."""
        own = cast(CommitTx, tx)
        async with tx.transaction():
            if params.limit <= 0:
                if ends:
                    await own.execute(*self._ends(ends, now), commit=True)
                return []
            args = {
                "queue": params.queue,
                "limit": params.limit,
                "window": params.limit * _CANDIDATES_PER_JOB,
                "isolate_after": params.isolate_after,
                "idle": params.idle,
            }
            if ends:
                name, end_args = self._ends(ends, now)
                rows = await tx.fetch(f"{name}_then_fetch", {**args, **end_args})
            else:
                rows = await tx.fetch("fetch", args)
            if not rows:
                return []
            if params.idle and rows[0][_RESCUES] >= params.isolate_after:
                rows = rows[:1]  # a suspect runs alone, on an idle node
            else:
                rows = [row for row in rows if row[_RESCUES] < params.isolate_after]
                if not rows:
                    return []
            claim = {"ids": _ids([row[0] for row in rows]), "now": now, "node": params.node}
            await own.execute("claim", claim, commit=True)
            return [(*row[:_ATTEMPT], row[_ATTEMPT] + 1, *row[_ATTEMPT + 1 :]) for row in rows]

    def _ends(self, ends: Sequence[RunEnd], now: Any) -> tuple[str, dict[str, Any]]:
        """The query applying ``ends`` and its binds: ``complete_runs`` when every end is a
        plain completion (the common case, cheaper for the server), else ``end_runs``."""
        if all(_plain_completion(end) for end in ends):
            pairs = sorted({(end.id, end.attempt) for end in ends})
            return "complete_runs", {"runs": _encode.encode(pairs).decode(), "now": now}
        return "end_runs", self._end_args(ends, now)

    def _end_args(self, ends: Sequence[RunEnd], now: Any) -> dict[str, Any]:
        """The binds of ``end_runs``: each run once (its first end), sorted by id. The UPDATE
        is fenced on (running, attempt), so a run no longer current is left alone."""
        first: dict[tuple[int, int], RunEnd] = {}
        for end in ends:
            first.setdefault((end.id, end.attempt), end)
        rows = [
            [
                end.id, end.attempt, end.state.value, end.refund, end.rescued, end.delay,
                1 if end.finalize else 0,
                None if end.error is None else encode_error(end.error).decode(),
            ]
            for end in sorted(first.values(), key=lambda end: (end.id, end.attempt))
        ]  # fmt: skip
        return {"ends": _encode.encode(rows).decode(), "now": now}

    async def end_runs(self, tx: Tx, ends: Sequence[RunEnd], now: Any) -> list[int]:
        """Lock the runs still current (sorted ids; ``START TRANSACTION`` travels with it),
        then apply their ends in one UPDATE that also commits: two round trips."""
        pairs = sorted({(end.id, end.attempt) for end in ends})
        runs = _encode.encode([list(pair) for pair in pairs]).decode()
        current = {(row[0], row[1]) for row in await tx.fetch("lock_runs", {"runs": runs})}
        first: dict[int, RunEnd] = {}
        for end in ends:  # a run listed twice is applied once: the first current entry
            if (end.id, end.attempt) in current:
                first.setdefault(end.id, end)
        if not first:
            return []
        await cast(CommitTx, tx).execute(*self._ends(list(first.values()), now), commit=True)
        return sorted(first)

    async def elect(self, tx: Tx, args: Mapping[str, Any]) -> bool:
        """Outside a transaction: the upsert commits on its own, then the check reads the
        lease, in one round trip on MySQLExecutor (both statements in one query) and in two
        through SQLAlchemy. No lock on the leader row ever waits for this client: a node frozen
        between round trips (SIGSTOP, a VM pause) blocks no other node's election."""
        return bool(await tx.fetch("elect", args))

    async def stage_due(self, tx: Tx, args: Mapping[str, Any]) -> list[str]:
        rows = await tx.fetch("stage", args)
        if not rows:
            return []
        await tx.execute("make_available_many", {"ids": _ids([row[0] for row in rows])})
        return sorted({row[1] for row in rows})

    async def prune_state(self, tx: Tx, args: Mapping[str, Any]) -> int:
        rows = await tx.fetch("prune", args)
        if not rows:
            return 0
        return await tx.execute("delete_jobs", {"ids": _ids([row[0] for row in rows])})

    async def release_orphans(self, tx: Tx, args: Mapping[str, Any]) -> int:
        handed = {**args, "handed": _encode.encode(list(args["handed"])).decode()}
        return await tx.execute("release_orphans", handed)
