"""SQLiteStore: the embedded durable store (stdlib ``sqlite3`` on one dedicated thread).

Every Driver operation is one hop to the store's connection thread, running one short
transaction (``BEGIN IMMEDIATE``: take the write lock up front, so two processes never deadlock
upgrading a read lock). Several processes may share the file: jobs, node heartbeats, the leader
lease and the applied migrations all live in the database. SQL lives in ``queries.sql`` and
``migrations/``; times are stored as Unix epoch seconds from the injected clock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from ..._clock import Clock, SystemClock
from ..._codec import decode_errors, decode_json, decode_payload, error_to_builtins
from ..._driver import (
    Claimed,
    Completion,
    ElectParams,
    FetchParams,
    HeartbeatParams,
    Inserted,
    ListParams,
    NewJob,
    PruneParams,
    RescueParams,
    StageParams,
)
from ..._errors import JobNotFound, StoreClosed, StoreError, UniqueConflict
from ..._options import bucket_key
from ..._sql import load_migrations, load_queries, render
from ..._types import TERMINAL_STATES, Job, JobError, JobState
from ..._validate import check_identifier, seconds
from ._thread import ConnectionThread

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_PACKAGE = "relaybus.stores.sqlite"
_QUERIES = load_queries(_PACKAGE)
_MIGRATIONS = load_migrations(_PACKAGE)
_MIN_VERSION = (3, 35, 0)  # RETURNING (3.35), generated columns (3.31)

_SCHEDULED = JobState.SCHEDULED.value
_AVAILABLE = JobState.AVAILABLE.value
_RUNNING = JobState.RUNNING.value
_RETRYABLE = JobState.RETRYABLE.value
_CANCELLED = JobState.CANCELLED.value
_DISCARDED = JobState.DISCARDED.value
_ALL_STATES = -1  # keep every unique_states bit
_encode = msgspec.json.Encoder()


class SQLiteStore:
    """Durable jobs in one SQLite file, shared by the processes of one machine.

    ``path`` is a file path (``":memory:"`` works for a single process). The schema is created
    on ``open()``. ``busy_timeout`` (seconds) is how long a write waits for another process's
    write lock before failing with :class:`StoreError`.
    """

    supports_notify = False

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
        self.clock: Clock = clock or SystemClock()
        self.busy_timeout = seconds("busy_timeout", busy_timeout)
        self._q = {name: render(sql, prefix=prefix) for name, sql in _QUERIES.items()}
        self._migrations = [
            (version, name, _statements(render(sql, prefix=prefix)))
            for version, name, sql in _MIGRATIONS
        ]
        self._thread: ConnectionThread | None = None

    def __repr__(self) -> str:
        if self.prefix == "relaybus_":
            return f"SQLiteStore({self.path!r})"
        return f"SQLiteStore({self.path!r}, prefix={self.prefix!r})"

    # -- lifecycle
    def _connect(self) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < _MIN_VERSION:
            raise StoreError(
                f"SQLiteStore needs SQLite 3.35 or newer; this Python has {sqlite3.sqlite_version}"
            )
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, cached_statements=256
        )
        try:
            conn.execute(self._q["journal_mode"]).fetchall()
            conn.execute(self._q["synchronous"])
        except BaseException:
            conn.close()
            raise
        return conn

    def _start_thread(self) -> ConnectionThread:
        return ConnectionThread(self._connect, name=f"relaybus-sqlite:{self.path}")

    async def open(self) -> None:
        """Connect and bring the schema up to date (idempotent)."""
        if self._thread is not None:
            return
        thread = self._start_thread()
        try:
            await self._call(thread, self._transaction(self._migrate_tx, self.clock.now()))
        except BaseException:
            await thread.close()
            raise
        self._thread = thread

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            await thread.close()

    async def migrate(self) -> None:
        """Apply missing migrations; works whether or not the store is open."""
        migrate = self._transaction(self._migrate_tx, self.clock.now())
        if self._thread is not None:
            await self._call(self._thread, migrate)
            return
        thread = self._start_thread()
        try:
            await self._call(thread, migrate)
        finally:
            await thread.close()

    def _migrate_tx(self, conn: sqlite3.Connection, now: datetime) -> None:
        q = self._q
        conn.execute(q["create_migrations_table"])
        applied = {row[0] for row in conn.execute(q["applied_migrations"])}
        for version, name, statements in self._migrations:
            if version in applied:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                q["record_migration"], {"version": version, "name": name, "now": now.timestamp()}
            )

    # -- plumbing
    def _transaction(self, fn: Callable[..., T], *args: Any) -> Callable[[sqlite3.Connection], T]:
        """``fn(conn, *args)`` inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error)."""
        begin, commit, rollback = self._q["begin_immediate"], self._q["commit"], self._q["rollback"]

        def run(conn: sqlite3.Connection) -> T:
            conn.execute(begin)
            try:
                result = fn(conn, *args)
                conn.execute(commit)
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute(rollback)
                raise
            return result

        return run

    async def _call(
        self,
        thread: ConnectionThread,
        fn: Callable[[sqlite3.Connection], T],
        orphan: Callable[[T], None] | None = None,
    ) -> T:
        try:
            return await thread.call(fn, orphan)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error on {self.path}: {exc}") from exc

    def _opened(self) -> ConnectionThread:
        if self._thread is None:
            raise StoreClosed("SQLiteStore is not open: use `async with bus:`")
        return self._thread

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._opened(), self._transaction(fn, *args))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(self._opened(), fn)

    # -- producing
    async def insert_many(self, jobs: Sequence[NewJob], conn: Any = None) -> list[Inserted]:
        thread = self._opened()
        if conn is not None:
            raise StoreError("SQLiteStore does not take conn=: it owns its only connection")
        if not jobs:
            return []
        return await self._call(thread, self._transaction(self._insert_tx, jobs, self.clock.now()))

    def _insert_tx(
        self, conn: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime
    ) -> list[Inserted]:
        q = self._q
        now_ts = now.timestamp()
        results: list[Inserted] = []
        plain: list[tuple[Any, ...]] = []  # consecutive non-unique jobs: one executemany

        def flush() -> None:
            conn.executemany(q["insert_job"], plain)
            # One writer (BEGIN IMMEDIATE) and AUTOINCREMENT: the batch got consecutive ids.
            last = conn.execute(q["last_insert_id"]).fetchone()[0]
            results.extend(Inserted(i, "inserted") for i in range(last - len(plain) + 1, last + 1))
            plain.clear()

        for job in jobs:
            if job.at is not None:
                scheduled_at = job.at
            elif job.delay:
                scheduled_at = now + timedelta(seconds=job.delay)
            else:
                scheduled_at = now
            state = _SCHEDULED if scheduled_at > now else _AVAILABLE
            scheduled_ts = now_ts if scheduled_at is now else scheduled_at.timestamp()
            if job.unique_key is None or not job.unique_states:
                plain.append(
                    (job.handler, job.event, job.queue, job.priority, state, job.max_attempts,
                     job.payload, job.meta, now_ts, scheduled_ts, job.timeout)
                )  # fmt: skip
                continue
            if plain:
                flush()
            results.append(self._insert_unique(conn, job, state, scheduled_at, now))
        if plain:
            flush()
        return results

    def _insert_unique(
        self, conn: sqlite3.Connection, job: NewJob, state: str, scheduled_at: datetime,
        now: datetime,
    ) -> Inserted:  # fmt: skip
        assert job.unique_key is not None
        key = bucket_key(job.unique_key, job.unique_period, now.timestamp())
        row = conn.execute(
            self._q["insert_unique_job"],
            {
                "handler": job.handler,
                "event": job.event,
                "queue": job.queue,
                "priority": job.priority,
                "state": state,
                "max_attempts": job.max_attempts,
                "payload": job.payload,
                "meta": job.meta,
                "now": now.timestamp(),
                "scheduled_at": scheduled_at.timestamp(),
                "timeout": job.timeout,
                "unique_key": key,
                "unique_states": job.unique_states,
            },
        ).fetchone()
        if row is not None:
            return Inserted(row[0], "inserted")
        # The unique index refused it: another job holds the key.
        holder_id, holder_state = conn.execute(
            self._q["find_holder"], {"unique_key": key}
        ).fetchone()
        held = JobState(holder_state)
        fields = job.replace.get(held, ()) if held is not JobState.RUNNING else ()
        if not fields:
            return Inserted(holder_id, "duplicate")
        new_state = held.value
        if "scheduled_at" in fields and held is not JobState.RETRYABLE:
            new_state = _SCHEDULED if scheduled_at > now else _AVAILABLE
        conn.execute(
            self._q["replace_job"],
            {
                "id": holder_id,
                "state": new_state,
                "set_payload": "payload" in fields,
                "payload": job.payload,
                "set_meta": "meta" in fields,
                "meta": job.meta,
                "set_priority": "priority" in fields,
                "priority": job.priority,
                "set_queue": "queue" in fields,
                "queue": job.queue,
                "set_max_attempts": "max_attempts" in fields,
                "max_attempts": job.max_attempts,
                "set_scheduled_at": "scheduled_at" in fields,
                "scheduled_at": scheduled_at.timestamp(),
            },
        )
        return Inserted(holder_id, "replaced")

    async def fetch(self, params: FetchParams) -> list[Claimed]:
        thread = self._opened()
        if params.complete:  # finish the last runs and claim the next ones in one transaction
            both = self._transaction(self._complete_and_fetch_tx, params, self.clock.now())
            return await self._call(thread, both, orphan=self._unclaim)
        if params.limit <= 0:
            return []
        claim = self._transaction(self._fetch_tx, params, self.clock.now().timestamp())
        peek, args = self._q["first_available"], {"queue": params.queue}

        def fetch(conn: sqlite3.Connection) -> list[Claimed]:
            # Look before taking the write lock, so idle pollers never queue behind writers.
            return claim(conn) if conn.execute(peek, args).fetchone() else []

        return await self._call(thread, fetch, orphan=self._unclaim)

    def _complete_and_fetch_tx(
        self, conn: sqlite3.Connection, params: FetchParams, now: datetime
    ) -> list[Claimed]:
        self._complete_tx(conn, params.complete, now)
        return self._fetch_tx(conn, params, now.timestamp()) if params.limit > 0 else []

    def _fetch_tx(self, conn: sqlite3.Connection, params: FetchParams, now: float) -> list[Claimed]:
        args = {
            "queue": params.queue,
            "node": params.node,
            "now": now,
            "limit": params.limit,
            "isolate_after": params.isolate_after,
        }
        if params.idle:
            first = conn.execute(self._q["first_available"], args).fetchone()
            if first is not None and first[1] >= params.isolate_after:
                # A suspect job runs alone, on an idle node.
                rows = conn.execute(self._q["claim_one"], {**args, "id": first[0]}).fetchall()
                return [_claimed(row) for row in rows]
        rows = conn.execute(self._q["claim"], args).fetchall()
        rows.sort(key=lambda row: (row[4], row[10], row[0]))  # RETURNING order is arbitrary
        return [_claimed(row) for row in rows]

    def _unclaim(self, claimed: list[Claimed]) -> None:
        """The fetch was cancelled after it claimed: put the jobs back, uncharged."""
        thread = self._thread
        if thread is not None and claimed:
            thread.post(self._transaction(self._unclaim_tx, claimed))

    def _unclaim_tx(self, conn: sqlite3.Connection, claimed: list[Claimed]) -> None:
        conn.executemany(
            self._q["unclaim"], [{"id": job.id, "attempt": job.attempt} for job in claimed]
        )

    async def complete_many(self, completions: Sequence[Completion]) -> list[int]:
        thread = self._opened()
        if not completions:
            return []
        complete = self._transaction(self._complete_tx, completions, self.clock.now())
        return await self._call(thread, complete)

    def _complete_tx(
        self, conn: sqlite3.Connection, completions: Sequence[Completion], now: datetime
    ) -> list[int]:
        q = self._q
        now_ts = now.timestamp()
        applied: list[int] = []
        completed: list[tuple[int, int]] = []  # consecutive "completed" runs: one statement

        def flush() -> None:
            runs = _encode.encode(completed).decode()
            done = set(conn.execute(q["complete_runs"], {"now": now_ts, "runs": runs}).fetchall())
            for run in completed:
                if run in done:
                    applied.append(run[0])
                    done.discard(run)  # a run listed twice is applied once
            completed.clear()

        for done in completions:
            kind = done.kind
            if kind == "completed":
                completed.append((done.id, done.attempt))
                continue
            if completed:
                flush()
            refund = 0
            scheduled_at: float | None = None
            finalized_at: float | None = now_ts
            if kind == "retry" or kind == "snooze" or kind == "return":
                refund = 0 if kind == "retry" else 1
                scheduled_at = (now + timedelta(seconds=done.delay)).timestamp()
                finalized_at = None
                if done.delay <= 0:
                    state = _AVAILABLE
                else:
                    state = _RETRYABLE if kind == "retry" else _SCHEDULED
            elif kind == "cancel":
                state = _CANCELLED
            else:
                state = _DISCARDED
            cursor = conn.execute(
                q["end_run"],
                {
                    "id": done.id,
                    "attempt": done.attempt,
                    "state": state,
                    "refund": refund,
                    "rescued": 0,
                    "scheduled_at": scheduled_at,
                    "finalized_at": finalized_at,
                    "error": _error_json(done.error),
                },
            )
            if cursor.rowcount:
                applied.append(done.id)
        if completed:
            flush()
        return applied

    # -- nodes and maintenance
    async def heartbeat(self, params: HeartbeatParams) -> list[int]:
        return await self._write(self._heartbeat_tx, params, self.clock.now())

    def _heartbeat_tx(
        self, conn: sqlite3.Connection, params: HeartbeatParams, now: datetime
    ) -> list[int]:
        q = self._q
        conn.execute(
            q["heartbeat"],
            {
                "node": params.node,
                "now": now.timestamp(),
                "expires_at": (now + timedelta(seconds=params.ttl)).timestamp(),
            },
        )
        lost = []
        for job_id, attempt in params.running:
            row = conn.execute(q["job_run"], {"id": job_id}).fetchone()
            if row is None or row[0] != _RUNNING or row[1] != attempt or row[2] != params.node:
                lost.append(job_id)
        return lost

    async def release_node(self, node: str) -> None:
        await self._write(self._release_tx, node)

    def _release_tx(self, conn: sqlite3.Connection, node: str) -> None:
        conn.execute(self._q["delete_node"], {"node": node})
        conn.execute(self._q["resign"], {"node": node})

    async def elect(self, params: ElectParams) -> bool:
        return await self._write(self._elect_tx, params, self.clock.now())

    def _elect_tx(self, conn: sqlite3.Connection, params: ElectParams, now: datetime) -> bool:
        row = conn.execute(
            self._q["elect"],
            {
                "node": params.node,
                "now": now.timestamp(),
                "expires_at": (now + timedelta(seconds=params.ttl)).timestamp(),
            },
        ).fetchone()
        return row is not None

    async def resign(self, node: str) -> None:
        if self._thread is not None:  # best effort, like MemoryStore: closed means nothing to do
            await self._write(_execute, self._q["resign"], {"node": node})

    async def stage(self, params: StageParams) -> list[str]:
        return await self._write(self._stage_tx, params, self.clock.now())

    def _stage_tx(self, conn: sqlite3.Connection, params: StageParams, now: datetime) -> list[str]:
        q = self._q
        args = {"now": now.timestamp(), "limit": params.limit}
        try:
            return sorted({row[0] for row in conn.execute(q["stage"], args).fetchall()})
        except sqlite3.IntegrityError:
            pass  # a unique conflict somewhere in the batch (the statement changed nothing)
        queues: set[str] = set()
        for job_id, queue, attempt, key in conn.execute(q["due_jobs"], args).fetchall():
            try:
                self._set_state(conn, job_id, _AVAILABLE, None)
                queues.add(queue)
                continue
            except sqlite3.IntegrityError:
                pass
            holder = conn.execute(q["find_holder"], {"unique_key": key}).fetchone()
            error = JobError(
                now, attempt, "unique_conflict",
                f"job {holder[0] if holder else None} holds this job's unique key",
            )  # fmt: skip
            try:
                self._set_state(conn, job_id, _DISCARDED, now, error)
            except sqlite3.IntegrityError:
                # discarded holds keys too here, and the key is taken: discard without holding.
                keep = ~JobState.DISCARDED.bit
                self._set_state(conn, job_id, _DISCARDED, now, error, keep_states=keep)
        return sorted(queues)

    def _set_state(
        self, conn: sqlite3.Connection, job_id: int, state: str, finalized_at: datetime | None,
        error: JobError | None = None, keep_states: int = _ALL_STATES,
    ) -> None:  # fmt: skip
        conn.execute(
            self._q["set_state"],
            {
                "id": job_id,
                "state": state,
                "finalized_at": None if finalized_at is None else finalized_at.timestamp(),
                "keep_states": keep_states,
                "error": _error_json(error),
            },
        )

    async def rescue(self, params: RescueParams) -> int:
        return await self._write(self._rescue_tx, params, self.clock.now())

    def _rescue_tx(self, conn: sqlite3.Connection, params: RescueParams, now: datetime) -> int:
        q = self._q
        now_ts = now.timestamp()
        rows = conn.execute(
            q["rescue_candidates"], {"now": now_ts, "grace": params.grace, "limit": params.limit}
        ).fetchall()
        for job_id, attempt, max_attempts, rescues, node, node_lost in rows:
            if node_lost:
                reason = f"node {node} stopped while running attempt {attempt}"
            else:
                reason = f"attempt {attempt} ran past its timeout plus grace"
            rescues += 1
            state = _DISCARDED
            if rescues >= params.max_rescues:
                kind, message = "worker_lost", f"{reason}; rescued {rescues} times"
            elif attempt >= max_attempts:
                kind, message = "rescued", f"{reason}; attempts exhausted"
            else:
                kind, message, state = "rescued", reason, _RETRYABLE
            conn.execute(
                q["end_run"],
                {
                    "id": job_id,
                    "attempt": attempt,
                    "state": state,
                    "refund": 0,
                    "rescued": 1,
                    "scheduled_at": now_ts if state == _RETRYABLE else None,
                    "finalized_at": now_ts if state == _DISCARDED else None,
                    "error": _error_json(JobError(now, attempt, kind, message, None)),
                },
            )
        return len(rows)

    async def prune(self, params: PruneParams) -> int:
        return await self._write(self._prune_tx, params, self.clock.now())

    def _prune_tx(self, conn: sqlite3.Connection, params: PruneParams, now: datetime) -> int:
        pruned = 0
        for state, retention in params.retention.items():
            if state not in TERMINAL_STATES or pruned >= params.limit:
                continue
            horizon = now - timedelta(seconds=retention)
            cursor = conn.execute(
                self._q["prune"],
                {
                    "state": state.value,
                    "horizon": horizon.timestamp(),
                    "limit": params.limit - pruned,
                },
            )
            pruned += cursor.rowcount
        return pruned

    async def subscribe(self, on_insert: Callable[[str], None]) -> None:
        return None  # no push across processes: workers poll

    # -- admin
    async def get(self, job_id: int) -> Job | None:
        row = await self._read(lambda conn: _fetchone(conn, self._q["get_job"], {"id": job_id}))
        return None if row is None else _job(row)

    async def list(self, params: ListParams) -> list[Job]:
        args = {
            "state": None if params.state is None else JobState(params.state).value,
            "queue": params.queue,
            "handler": params.handler,
            "limit": max(1, params.limit),  # as MemoryStore: a limit below 1 still returns one
        }
        rows = await self._read(lambda conn: conn.execute(self._q["list_jobs"], args).fetchall())
        return [_job(row) for row in rows]

    async def retry(self, job_id: int) -> Job:
        return _job(await self._write(self._retry_tx, job_id, self.clock.now()))

    def _retry_tx(self, conn: sqlite3.Connection, job_id: int, now: datetime) -> Any:
        q = self._q
        row = self._row(conn, job_id)
        if row[5] in (_RUNNING, _AVAILABLE):
            return row
        try:
            conn.execute(q["retry_job"], {"id": job_id, "now": now.timestamp()})
        except sqlite3.IntegrityError:
            holder = conn.execute(q["find_holder"], {"unique_key": row[16]}).fetchone()
            raise UniqueConflict(job_id, holder[0]) from None
        return self._row(conn, job_id)

    async def cancel(self, job_id: int) -> Job:
        return _job(await self._write(self._cancel_tx, job_id, self.clock.now()))

    def _cancel_tx(self, conn: sqlite3.Connection, job_id: int, now: datetime) -> Any:
        row = self._row(conn, job_id)
        if JobState(row[5]) in TERMINAL_STATES:
            return row
        error = JobError(now, row[6], "cancelled", "cancelled through the admin API", None)
        try:
            self._set_state(conn, job_id, _CANCELLED, now, error)
        except sqlite3.IntegrityError:
            # cancelled holds keys here and another job holds this one's: like MemoryStore, the
            # error is recorded and the state is kept.
            self._set_state(conn, job_id, row[5], None, error)
        return self._row(conn, job_id)

    def _row(self, conn: sqlite3.Connection, job_id: int) -> Any:
        row = _fetchone(conn, self._q["get_job"], {"id": job_id})
        if row is None:
            raise JobNotFound(job_id)
        return row

    async def stats(self) -> dict[str, dict[str, int]]:
        rows = await self._read(lambda conn: conn.execute(self._q["stats"]).fetchall())
        counts: dict[str, dict[str, int]] = {}
        for queue, state, count in rows:
            counts.setdefault(queue, {})[state] = count
        return counts


# -- helpers (run on the connection thread or the loop; no I/O of their own)
def _execute(conn: sqlite3.Connection, sql: str, args: dict[str, Any]) -> None:
    conn.execute(sql, args)


def _fetchone(conn: sqlite3.Connection, sql: str, args: dict[str, Any]) -> Any:
    return conn.execute(sql, args).fetchone()


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would COMMIT our transaction)."""
    statements: list[str] = []
    current = ""
    pieces = script.split(";")
    for i, piece in enumerate(pieces):
        current += piece if i == len(pieces) - 1 else piece + ";"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise StoreError(f"incomplete SQL statement in a migration: {current.strip()[:80]!r}")
    return statements


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _opt_dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _error_json(error: JobError | None) -> str | None:
    return None if error is None else _encode.encode(error_to_builtins(error)).decode()


def _meta(data: bytes | None) -> dict[str, Any]:
    if not data or data == b"{}":
        return {}
    try:
        value = decode_json(data)
    except msgspec.DecodeError:
        return {}  # a corrupted row: the job still runs, without its meta
    return value if isinstance(value, dict) else {}


def _errors(data: bytes | None) -> tuple[JobError, ...]:
    try:
        return decode_errors(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ()


def _claimed(row: Any) -> Claimed:
    (job_id, handler, event, queue, priority, attempt, max_attempts, payload, meta,
     inserted_at, scheduled_at, timeout, rescues) = row  # fmt: skip
    return Claimed(
        id=job_id,
        handler=handler,
        event=event,
        queue=queue,
        priority=priority,
        attempt=attempt,
        max_attempts=max_attempts,
        payload=payload,
        meta=_meta(meta),
        inserted_at=_dt(inserted_at),
        scheduled_at=_dt(scheduled_at),
        timeout=timeout,
        rescues=rescues,
    )


def _job(row: Any) -> Job:
    return Job(
        id=row[0],
        handler=row[1],
        event=row[2],
        queue=row[3],
        priority=row[4],
        state=JobState(row[5]),
        attempt=row[6],
        max_attempts=row[7],
        payload=decode_payload(row[8]),
        meta=_meta(row[9]),
        errors=_errors(row[10]),
        inserted_at=_dt(row[11]),
        scheduled_at=_dt(row[12]),
        attempted_at=_opt_dt(row[13]),
        attempted_by=row[14],
        finalized_at=_opt_dt(row[15]),
    )
