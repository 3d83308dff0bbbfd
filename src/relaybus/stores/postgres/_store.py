"""PostgresStore: durable, multi-node jobs on PostgreSQL through asyncpg.

Every Driver operation is one statement (a few for the admin API), prepared and cached per
connection by asyncpg, run in autocommit on a pooled connection (the store's own light pool, or
the user's ``asyncpg.Pool``) unless the caller gives its own connection (``conn=``: the jobs join
the caller's transaction). SQL lives in ``queries.sql`` and ``migrations/``; the schema and table
prefix are the only text put into it, validated, at their markers.

Batch inserts are one ``INSERT ... SELECT FROM unnest(...)`` statement. With unique jobs, entries
sharing a key run in successive rounds (one statement each, in one transaction), so a batch
applies in input order exactly as if its entries were inserted one by one; the partial unique
index is the arbiter between processes (an entry that loses a race comes back without an id and
runs again).

Time: by default every statement reads the database clock (``now()``), so nodes with skewed
clocks agree. A store given a ``clock`` (tests: ``relaybus.testing.FakeClock``) passes that
clock's time instead, as the ``now`` parameter of every statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import operator
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

import asyncpg  # type: ignore[import-untyped]
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
from ..._errors import ConfigurationError, JobNotFound, StoreClosed, StoreError, UniqueConflict
from ..._options import bucket_key
from ..._types import Job, JobError, JobState
from ..._validate import check_identifier
from .._sql.queries import load_migrations, load_queries, render
from ._dsn import mask_dsn, mask_text
from ._pool import LightPool

__all__ = ["PostgresStore"]

_PACKAGE = "relaybus.stores.postgres"
_QUERIES = load_queries(_PACKAGE)
_MIGRATIONS = load_migrations(_PACKAGE)

_logger = logging.getLogger("relaybus.postgres")
_encode = msgspec.json.Encoder()

_RUNNING = JobState.RUNNING.value
_AVAILABLE = JobState.AVAILABLE.value
_STATES = {state.value: state for state in JobState}

# Replace masks, as queries.sql reads them.
_REPLACE_BITS = {
    "payload": 1,
    "meta": 2,
    "priority": 4,
    "queue": 8,
    "scheduled_at": 16,
    "max_attempts": 32,
}

#: Errors that mean "the database is not reachable (now)": raised as StoreError.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)
#: Errors that mean "the schema is not there": raised as StoreError with a hint.
_MISSING_SCHEMA: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.UndefinedFunctionError,
    asyncpg.InvalidSchemaNameError,
)
_WRAPPED = _UNAVAILABLE + _MISSING_SCHEMA
_TXN_RETRY: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
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
_MAX_ROUNDS_EXTRA = 50  # unique-insert rounds lost to concurrent writers before giving up
_LISTEN_PING = 10.0  # seconds between health checks of the LISTEN connection
#: Seconds a new connection may take (asyncpg's default is 60): a server that is restarting can
#: accept a socket and answer late; the runtime retries sooner.
_CONNECT_TIMEOUT = 10.0


@functools.lru_cache(maxsize=256)
def _replace_mask(fields: tuple[str, ...]) -> int:
    mask = 0
    for name in fields:
        mask |= _REPLACE_BITS[name]
    return mask


def _channel_name(schema: str, prefix: str) -> str:
    # Unquoted identifiers fold to lower case, so "Public" and "public" name the same tables.
    name = f"{schema}.{prefix}jobs".lower()
    if len(name) > 63:  # NAMEDATALEN - 1
        name = "relaybus_" + hashlib.sha256(name.encode()).hexdigest()[:32]
    return name


class PostgresStore:
    """Jobs in PostgreSQL, shared by any number of worker processes (asyncpg).

    ``dsn_or_pool`` is a DSN (the store makes and closes its own pool of ``min_size`` to
    ``max_size`` connections) or an ``asyncpg.Pool`` (used as is, never closed by the store;
    best one dedicated to the store, made with ``server_settings=`` :attr:`server_settings`).
    Tables are ``{schema}.{prefix}jobs`` and friends; opening runs no DDL unless
    ``auto_migrate=True``: run ``await store.migrate()`` (or ``relaybus migrate``) once per
    schema. ``clock=None`` (the default) keeps time with the database's clock.
    """

    supports_notify = True
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
        if isinstance(dsn_or_pool, str):
            self._dsn: str | None = dsn_or_pool
            self._pool: Any = None
            self._own_pool = True
        elif isinstance(dsn_or_pool, asyncpg.Pool):
            self._dsn = None
            self._pool = dsn_or_pool
            self._own_pool = False
        else:
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
        self.clock: Clock = clock or SystemClock()
        self._db_clock = clock is None
        self._auto_migrate = auto_migrate
        self._min_size = min_size
        self._max_size = max_size
        self._open = False
        self._channel = _channel_name(schema, prefix)
        self._lock_key = f"relaybus.migrate:{schema.lower()}.{prefix.lower()}"
        q = {name: render(sql, prefix=prefix, schema=schema) for name, sql in _QUERIES.items()}
        self._q = q
        self._q_insert_one = q["insert_one"]
        self._q_insert_plain = q["insert_plain"]
        self._q_insert_unique = q["insert_unique"]
        self._q_insert_unique_one = q["insert_unique_one"]
        self._q_fetch = q["fetch"]
        self._q_complete = q["complete_many"]
        self._q_complete_fetch = q["complete_and_fetch"]
        self._listeners: set[_Listener] = set()
        # Fetch answers lost with a dropped connection (see _release_orphans): the jobs handed
        # to each node and not finished yet, fetches in flight, and nodes to check.
        self._handed: dict[int, tuple[str, int]] = {}  # job id -> (node, attempt)
        self._inflight: dict[str, int] = {}
        self._suspect: set[str] = set()

    def __repr__(self) -> str:
        target = mask_dsn(self._dsn) if self._dsn is not None else "<asyncpg.Pool>"
        return f"PostgresStore({target!r}, schema={self.schema!r}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------------------- lifecycle
    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this schema and prefix."""
        return self._channel

    @property
    def pool(self) -> Any:
        """The connection pool: the user's ``asyncpg.Pool``, or the store's own (None until
        opened). Both have ``acquire()`` (an async context manager) and fetch/fetchrow/fetchval."""
        return self._pool

    async def open(self) -> None:
        if self._open:
            return
        if self._own_pool:
            pool = LightPool(self._connect, min_size=self._min_size, max_size=self._max_size)
            await pool.open()  # raises StoreError (password masked) when it cannot connect
            self._pool = pool
        self._open = True
        if self._auto_migrate:
            try:
                await self.migrate()
            except BaseException:
                await self.close()
                raise
        else:
            await self._check_schema()

    async def _connect(self) -> Any:
        try:
            return await asyncpg.connect(
                self._dsn,
                timeout=_CONNECT_TIMEOUT,
                server_settings=dict(_SESSION),
            )
        except (
            OSError,
            ValueError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            TimeoutError,
        ) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {self._describe(exc)}") from exc

    async def close(self) -> None:
        for listener in list(self._listeners):
            await listener.stop()
        self._listeners.clear()
        self._open = False
        if self._own_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(10):
                    await pool.close()
            except Exception:
                pool.terminate()

    def _check_open(self) -> Any:
        if not self._open or self._pool is None:
            raise StoreClosed("PostgresStore is not open: use `async with bus:`")
        return self._pool

    def _borrow(self) -> Any:
        """A pooled connection for the store's own statements, as an async context manager."""
        pool = self._check_open() if self._open else self._pool
        return pool.borrow() if self._own_pool else pool.acquire()

    def _now(self) -> datetime | None:
        return None if self._db_clock else self.clock.now()

    def _describe(self, exc: BaseException) -> str:
        return mask_text(f"{type(exc).__name__}: {exc}", self._dsn)

    def _failure(self, exc: BaseException) -> StoreError:
        if isinstance(exc, _MISSING_SCHEMA):
            return StoreError(
                f"relaybus tables are missing in schema {self.schema!r} (prefix "
                f"{self.prefix!r}): run `await store.migrate()` or `relaybus migrate` "
                f"({self._describe(exc)})"
            )
        return StoreError(f"PostgreSQL is unavailable: {self._describe(exc)}")

    async def _check_schema(self) -> None:
        try:
            exists = await self._pool.fetchval(
                self._q["migrations_table_exists"], f"{self.schema}.{self.prefix}migrations"
            )
            versions = (
                {r[0] for r in await self._pool.fetch(self._q["applied_versions"])}
                if exists
                else set()
            )
        except _WRAPPED as exc:
            _logger.warning("could not check the relaybus schema: %s", self._describe(exc))
            return
        missing = [v for v, _, _ in _MIGRATIONS if v not in versions]
        if missing:
            _logger.warning(
                "relaybus schema %r (prefix %r) lacks migrations %s: run `await store.migrate()` "
                "or `relaybus migrate`",
                self.schema,
                self.prefix,
                missing,
            )

    # ------------------------------------------------------------------------------ migrations
    async def migrate(self) -> None:
        """Apply the missing migrations, in one transaction, under an advisory lock (two
        processes migrating at once: one waits, then finds nothing to do). Idempotent."""
        if self._pool is not None:
            try:
                async with self._borrow() as conn:
                    await self._migrate_on(conn)
            except _WRAPPED as exc:
                raise self._migrate_failure(exc) from None
            return
        try:
            conn = await asyncpg.connect(
                self._dsn, timeout=_CONNECT_TIMEOUT, server_settings={"timezone": "UTC"}
            )
        except Exception as exc:
            raise StoreError(f"cannot connect to migrate: {self._describe(exc)}") from None
        try:
            await self._migrate_on(conn)
        except _WRAPPED as exc:
            raise self._migrate_failure(exc) from None
        finally:
            await conn.close()

    def _migrate_failure(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"migrating schema {self.schema!r} (prefix {self.prefix!r}) failed: "
            f"{self._describe(exc)}"
        )

    async def _migrate_on(self, conn: Any) -> None:
        q = self._q
        async with conn.transaction():
            await conn.execute(q["migrate_lock"], self._lock_key)
            if not await conn.fetchval(q["schema_exists"], self.schema.lower()):
                await conn.execute(q["create_schema"])
            applied: set[int] = set()
            if await conn.fetchval(
                q["migrations_table_exists"], f"{self.schema}.{self.prefix}migrations"
            ):
                applied = {r[0] for r in await conn.fetch(q["applied_versions"])}
            for version, name, sql in _MIGRATIONS:
                if version in applied:
                    continue
                _logger.info("applying migration %04d_%s to %s", version, name, self.schema)
                await conn.execute(render(sql, prefix=self.prefix, schema=self.schema))
                await conn.execute(q["record_version"], version, name)

    # ------------------------------------------------------------------------------- producing
    async def insert_many(self, jobs: Sequence[NewJob], conn: Any = None) -> list[Inserted]:
        pool = self._check_open()
        if not jobs:
            return []
        if conn is not None and not isinstance(
            conn, (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy)
        ):
            raise StoreError(
                "PostgresStore takes conn= as an asyncpg Connection (or a pool's connection), "
                f"not {type(conn).__name__}"
            )
        now = self._now()
        if not any(job.unique_key is not None and job.unique_states for job in jobs):
            try:
                return await self._insert_plain(pool if conn is None else conn, jobs, now)
            except _WRAPPED as exc:
                if conn is not None:
                    raise
                raise self._failure(exc) from exc
        return await self._insert_unique(pool, conn, jobs, now)

    async def _insert_plain(
        self, target: Any, jobs: Sequence[NewJob], now: datetime | None
    ) -> list[Inserted]:
        if len(jobs) == 1:
            job = jobs[0]
            row = await target.fetchrow(
                self._q_insert_one,
                now,
                job.handler,
                job.event,
                job.queue,
                job.priority,
                job.max_attempts,
                job.payload.decode(),
                job.meta.decode(),
                job.timeout,
                job.delay,
                job.at,
                self._channel,
            )
            return [Inserted(row[0], "inserted")]
        metas, meta = _column(jobs, _get_meta)
        row = await target.fetchrow(
            self._q_insert_plain,
            now,
            [j.payload.decode() for j in jobs],
            *_column(jobs, _get_handler),
            *_column(jobs, _get_event),
            *_column(jobs, _get_queue),
            *_column(jobs, _get_priority),
            *_column(jobs, _get_max_attempts),
            None if metas is None else [m.decode() for m in metas],
            None if meta is None else meta.decode(),
            *_column(jobs, _get_timeout),
            *_column(jobs, _get_delay),
            *_column(jobs, _get_at),
            self._channel,
        )
        ids = row[0]
        if len(ids) != len(jobs):  # pragma: no cover - a plain insert inserts every row
            raise StoreError(f"inserted {len(ids)} rows for {len(jobs)} jobs")
        return [Inserted(job_id, "inserted") for job_id in ids]

    async def _insert_unique(
        self, pool: Any, conn: Any, jobs: Sequence[NewJob], now: datetime | None
    ) -> list[Inserted]:
        """Entries apply in input order as if inserted one by one. Entries sharing a key run in
        successive rounds (one statement each, in one transaction); an entry whose key another
        process took meanwhile comes back unresolved and runs again in the next round."""
        keys: list[bytes | None] = []
        periods: list[float | None] = []
        groups: list[tuple[bytes, float | None] | None] = []
        for job in jobs:
            if job.unique_key is None or not job.unique_states:
                keys.append(None)
                periods.append(None)
                groups.append(None)
            elif now is not None:  # injected clock: the final key, exactly as bucket_key
                keys.append(bucket_key(job.unique_key, job.unique_period, now.timestamp()))
                periods.append(None)
                groups.append((job.unique_key, job.unique_period))
            else:  # database clock: the statement adds the bucket of its now()
                keys.append(job.unique_key)
                periods.append(job.unique_period)
                groups.append((job.unique_key, job.unique_period))
        seen: set[tuple[bytes, float | None]] = set()
        multi = False
        for group in groups:
            if group is not None:
                if group in seen:
                    multi = True
                    break
                seen.add(group)
        if len(jobs) == 1:
            return [await self._insert_unique_one(pool, conn, jobs[0], keys[0], periods[0], now)]
        run = _UniqueRun(self, jobs, keys, periods, groups, now)
        if conn is not None:
            if multi:
                async with conn.transaction():
                    await run.rounds(conn)
            else:
                await run.rounds(conn)
            return run.results()
        for attempt in range(5):
            try:
                async with self._borrow() as own:
                    if multi:
                        run.reset()
                        async with own.transaction():
                            await run.rounds(own)
                    else:
                        await run.rounds(own)
                return run.results()
            except _TXN_RETRY:
                if attempt == 4:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
            except _WRAPPED as exc:
                raise self._failure(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _insert_unique_one(
        self,
        pool: Any,
        conn: Any,
        job: NewJob,
        key: bytes | None,
        period: float | None,
        now: datetime | None,
    ) -> Inserted:
        args = (
            now,
            job.handler,
            job.event,
            job.queue,
            job.priority,
            job.max_attempts,
            job.payload.decode(),
            job.meta.decode(),
            job.timeout,
            job.delay,
            job.at,
            self._channel,
            key,
            period,
            job.unique_states,
            _mask_for(job.replace, JobState.AVAILABLE),
            _mask_for(job.replace, JobState.SCHEDULED),
            _mask_for(job.replace, JobState.RETRYABLE),
        )
        query = self._q_insert_unique_one
        target = pool if conn is None else conn
        for _ in range(_MAX_ROUNDS_EXTRA):
            try:
                row = await target.fetchrow(query, *args)
            except _TXN_RETRY:
                if conn is not None:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.01))
                continue
            except _WRAPPED as exc:
                if conn is not None:
                    raise
                raise self._failure(exc) from exc
            if row is not None:
                return Inserted(row[0], row[1])
            # The key was taken after this statement's snapshot: the next one sees the holder.
        raise StoreError("unique insert kept losing races with concurrent writers; try again")

    async def fetch(self, params: FetchParams) -> list[Claimed]:
        pool = self._check_open()
        node = params.node
        if node in self._suspect and not self._inflight.get(node):
            await self._release_orphans(node)
        self._inflight[node] = self._inflight.get(node, 0) + 1
        try:
            if params.complete:  # finish the last runs and claim the next: one statement
                done = params.complete
                rows = await pool.fetch(
                    self._q_complete_fetch,
                    params.queue,
                    params.limit,
                    params.node,
                    params.isolate_after,
                    params.idle,
                    self._now(),
                    [c.id for c in done],
                    [c.attempt for c in done],
                    [c.kind for c in done],
                    [_error_text(c.error) for c in done],
                    [float(c.delay) for c in done],
                    self._channel,
                    _RUNNING,
                )
            else:
                rows = await pool.fetch(
                    self._q_fetch,
                    params.queue,
                    params.limit,
                    params.node,
                    params.isolate_after,
                    params.idle,
                    self._now(),
                )
        except _WRAPPED as exc:
            self._suspect.add(node)  # the claim may have committed without an answer
            raise self._failure(exc) from exc
        except BaseException:
            self._suspect.add(node)
            raise
        finally:
            self._inflight[node] -= 1
        handed = self._handed
        for c in params.complete:
            if handed.get(c.id, (None, None))[1] == c.attempt:
                del handed[c.id]
        for r in rows:
            handed[r[0]] = (node, r[5])
        claimed = [
            Claimed(
                id=r[0],
                handler=r[1],
                event=r[2],
                queue=r[3],
                priority=r[4],
                attempt=r[5],
                max_attempts=r[6],
                payload=r[7].encode(),
                meta=decode_json(r[8]) if r[8] != "{}" else {},
                inserted_at=r[9],
                scheduled_at=r[10],
                timeout=r[11],
                rescues=r[12],
            )
            for r in rows
        ]
        if len(claimed) > 1:
            claimed.sort(key=lambda c: (c.priority, c.scheduled_at, c.id))
        return claimed

    async def complete_many(self, completions: Sequence[Completion]) -> list[int]:
        pool = self._check_open()
        if not completions:
            return []
        try:
            row = await pool.fetchrow(
                self._q_complete,
                self._now(),
                [c.id for c in completions],
                [c.attempt for c in completions],
                [c.kind for c in completions],
                [_error_text(c.error) for c in completions],
                [float(c.delay) for c in completions],
                self._channel,
                _RUNNING,
            )
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        handed = self._handed
        for c in completions:
            if handed.get(c.id, (None, None))[1] == c.attempt:
                del handed[c.id]
        ids = row[0]
        if ids is None:
            return []
        if len(ids) == len(completions):
            return [c.id for c in completions]
        applied = set(ids)
        return [c.id for c in completions if c.id in applied]

    # --------------------------------------------------------------------- nodes and maintenance
    async def heartbeat(self, params: HeartbeatParams) -> list[int]:
        pool = self._check_open()
        if params.node in self._suspect and not self._inflight.get(params.node):
            await self._release_orphans(params.node)
        try:
            rows = await pool.fetch(
                self._q["heartbeat"],
                self._now(),
                params.node,
                float(params.ttl),
                [r[0] for r in params.running],
                [r[1] for r in params.running],
                _RUNNING,
            )
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        lost = [r[0] for r in rows]
        if lost:
            attempts = dict(params.running)
            for job_id in lost:
                if self._handed.get(job_id) == (params.node, attempts.get(job_id)):
                    del self._handed[job_id]
        return lost

    async def _release_orphans(self, node: str) -> int:
        """Return to ``available`` the jobs ``node`` claimed in fetches whose answer was lost.

        A fetch that failed with the connection (or was cancelled) may have committed its claim:
        those jobs are ``running`` on a live node that never got them, and neither the node nor
        the rescuer would ever finish them. The store knows every job it handed to the node and
        that was not finished since; once no fetch of the node is in flight, any other job
        running there is such an orphan. Called before the node's next fetch or heartbeat.
        """
        handed = [job_id for job_id, (owner, _) in self._handed.items() if owner == node]
        try:
            released = await self._check_open().fetchval(
                self._q["release_orphans"], node, handed, self._channel
            )
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        self._suspect.discard(node)
        if released:
            _logger.warning(
                "returned %d job(s) claimed by node %s in a fetch whose answer was lost",
                released,
                node,
            )
        return int(released)

    async def release_node(self, node: str) -> None:
        pool = self._check_open()
        self._suspect.discard(node)
        for job_id in [j for j, (owner, _) in self._handed.items() if owner == node]:
            del self._handed[job_id]
        try:
            await pool.execute(self._q["release_node"], node)
        except _WRAPPED as exc:
            raise self._failure(exc) from exc

    async def elect(self, params: ElectParams) -> bool:
        pool = self._check_open()
        try:
            row = await pool.fetchrow(self._q["elect"], self._now(), params.node, float(params.ttl))
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        return row is not None

    async def resign(self, node: str) -> None:
        pool = self._check_open()
        try:
            await pool.execute(self._q["resign"], node)
        except _WRAPPED as exc:
            raise self._failure(exc) from exc

    async def stage(self, params: StageParams) -> list[str]:
        pool = self._check_open()
        for attempt in range(10):
            try:
                rows = await pool.fetch(self._q["stage"], self._now(), params.limit, self._channel)
                return [r[0] for r in rows]
            except asyncpg.UniqueViolationError:
                # A job that does not hold its key met a holder committed after the
                # statement's snapshot: run again, and that holder is seen.
                if attempt == 9:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.01))
            except _WRAPPED as exc:
                raise self._failure(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def rescue(self, params: RescueParams) -> int:
        pool = self._check_open()
        try:
            count = await pool.fetchval(
                self._q["rescue"],
                self._now(),
                float(params.grace),
                params.max_rescues,
                params.limit,
            )
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        return int(count)

    async def prune(self, params: PruneParams) -> int:
        pool = self._check_open()
        states = [JobState(state).value for state in params.retention]
        keep = [float(params.retention[state]) for state in params.retention]
        if not states:
            return 0
        try:
            count = await pool.fetchval(self._q["prune"], self._now(), states, keep, params.limit)
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        return int(count)

    async def subscribe(self, on_insert: Callable[[str], None]) -> Callable[[], Any] | None:
        self._check_open()
        listener = _Listener(self, on_insert)
        self._listeners.add(listener)
        await listener.start()
        return listener.stop

    async def _listen_connection(self) -> tuple[Any, Callable[[], Awaitable[None]]]:
        """A connection for LISTEN: a dedicated one from the DSN, or one held from the
        user's pool; and how to give it back."""
        if self._dsn is not None:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=_CONNECT_TIMEOUT,
                server_settings={"application_name": "relaybus-listen"},
            )

            async def close() -> None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)
                conn.terminate()

            return conn, close
        pool = self._check_open()
        conn = await pool.acquire()

        async def release() -> None:
            try:
                await asyncio.wait_for(pool.release(conn), 5)
            except Exception:
                with contextlib.suppress(Exception):
                    conn.terminate()

        return conn, release

    # ----------------------------------------------------------------------------------- admin
    async def get(self, job_id: int) -> Job | None:
        pool = self._check_open()
        try:
            row = await pool.fetchrow(self._q["get"], job_id)
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        return None if row is None else _to_job(row)

    async def list(self, params: ListParams) -> list[Job]:
        pool = self._check_open()
        try:
            rows = await pool.fetch(
                self._q["list"],
                None if params.state is None else JobState(params.state).value,
                params.queue,
                params.handler,
                params.limit,
            )
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        return [_to_job(r) for r in rows]

    async def retry(self, job_id: int) -> Job:
        self._check_open()
        q = self._q
        try:
            async with self._borrow() as conn:
                for _ in range(5):
                    try:
                        async with conn.transaction():
                            row = await conn.fetchrow(q["lock_job"], job_id)
                            if row is None:
                                raise JobNotFound(job_id)
                            state, contested = row
                            if state in (_RUNNING, _AVAILABLE):
                                break
                            if contested:
                                holder = await conn.fetchval(q["key_holder"], job_id)
                                if holder is not None:
                                    raise UniqueConflict(job_id, holder)
                            await conn.fetchrow(q["retry"], self._now(), job_id, self._channel)
                        break
                    except asyncpg.UniqueViolationError:
                        # A holder committed after the check: name it (or try again if gone).
                        holder = await conn.fetchval(q["key_holder"], job_id)
                        if holder is not None:
                            raise UniqueConflict(job_id, holder) from None
                row = await conn.fetchrow(q["get"], job_id)
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        if row is None:
            raise JobNotFound(job_id)
        return _to_job(row)

    async def cancel(self, job_id: int) -> Job:
        self._check_open()
        try:
            async with self._borrow() as conn:
                for attempt in range(10):
                    try:
                        await conn.fetchval(self._q["cancel"], self._now(), job_id)
                        break
                    except asyncpg.UniqueViolationError:
                        # A holder committed after the statement's snapshot: run again.
                        if attempt == 9:
                            raise
                row = await conn.fetchrow(self._q["get"], job_id)
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        if row is None:
            raise JobNotFound(job_id)
        return _to_job(row)

    async def stats(self) -> dict[str, dict[str, int]]:
        pool = self._check_open()
        try:
            rows = await pool.fetch(self._q["stats"])
        except _WRAPPED as exc:
            raise self._failure(exc) from exc
        counts: dict[str, dict[str, int]] = {}
        for queue, state, count in rows:
            counts.setdefault(queue, {})[state] = count
        return counts


class _UniqueRun:
    """The state of one insert_many with unique jobs, across rounds (and retries)."""

    def __init__(
        self,
        store: PostgresStore,
        jobs: Sequence[NewJob],
        keys: list[bytes | None],
        periods: list[float | None],
        groups: list[tuple[bytes, float | None] | None],
        now: datetime | None,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.keys = keys
        self.periods = periods
        self.groups = groups
        self.now = now
        self.reset()

    def reset(self) -> None:
        self.done: list[Inserted | None] = [None] * len(self.jobs)
        self.pending: list[int] = list(range(len(self.jobs)))

    def results(self) -> list[Inserted]:
        out = [r for r in self.done if r is not None]
        if len(out) != len(self.jobs):  # pragma: no cover - rounds() resolves every entry
            raise StoreError("unique insert left entries unresolved")
        return out

    async def rounds(self, conn: Any) -> None:
        budget = len(self.jobs) + _MAX_ROUNDS_EXTRA
        while self.pending:
            budget -= 1
            if budget < 0:
                raise StoreError(
                    "unique insert kept losing races with concurrent writers; try again"
                )
            seen: set[tuple[bytes, float | None]] = set()
            batch: list[int] = []
            later: list[int] = []
            for i in self.pending:
                group = self.groups[i]
                if group is None:
                    batch.append(i)
                elif group in seen:
                    later.append(i)
                else:
                    seen.add(group)
                    batch.append(i)
            rows = await self._round(conn, batch)
            unresolved: list[int] = []
            for ord_, job_id, outcome, _ in rows:
                index = batch[ord_ - 1]
                if job_id is None:
                    unresolved.append(index)
                else:
                    self.done[index] = Inserted(job_id, outcome)
            self.pending = sorted(unresolved + later)

    async def _round(self, conn: Any, batch: list[int]) -> list[Any]:
        jobs = [self.jobs[i] for i in batch]
        return list(
            await conn.fetch(
                self.store._q_insert_unique,
                self.now,
                [j.handler for j in jobs],
                [j.event for j in jobs],
                [j.queue for j in jobs],
                [j.priority for j in jobs],
                [j.max_attempts for j in jobs],
                [j.payload.decode() for j in jobs],
                [j.meta.decode() for j in jobs],
                [j.timeout for j in jobs],
                [j.delay for j in jobs],
                [j.at for j in jobs],
                [self.keys[i] for i in batch],
                [self.periods[i] for i in batch],
                [j.unique_states for j in jobs],
                [_mask_for(j.replace, JobState.AVAILABLE) for j in jobs],
                [_mask_for(j.replace, JobState.SCHEDULED) for j in jobs],
                [_mask_for(j.replace, JobState.RETRYABLE) for j in jobs],
                self.store._channel,
            )
        )


_get_handler = operator.attrgetter("handler")
_get_event = operator.attrgetter("event")
_get_queue = operator.attrgetter("queue")
_get_priority = operator.attrgetter("priority")
_get_max_attempts = operator.attrgetter("max_attempts")
_get_meta = operator.attrgetter("meta")
_get_timeout = operator.attrgetter("timeout")
_get_delay = operator.attrgetter("delay")
_get_at = operator.attrgetter("at")


def _column(jobs: Sequence[NewJob], get: Callable[[NewJob], Any]) -> tuple[list[Any] | None, Any]:
    """One column of insert_plain: ``(values, None)``, or ``(None, value)`` when every job has
    the same value (a batch of one event type mostly does: then only the payloads go as an
    array, which asyncpg encodes element by element)."""
    values = list(map(get, jobs))
    first = values[0]
    if values.count(first) == len(values):
        return None, first
    return values, None


def _mask_for(replace: Mapping[JobState, tuple[str, ...]], state: JobState) -> int:
    fields = replace.get(state)
    return _replace_mask(tuple(fields)) if fields else 0


def _to_job(row: Any) -> Job:
    return Job(
        id=row[0],
        handler=row[1],
        event=row[2],
        queue=row[3],
        priority=row[4],
        state=_STATES[row[5]],
        attempt=row[6],
        max_attempts=row[7],
        payload=decode_payload(row[8]),
        meta=decode_json(row[9]) or {},
        errors=decode_errors(row[10]),
        inserted_at=row[11],
        scheduled_at=row[12],
        attempted_at=row[13],
        attempted_by=row[14],
        finalized_at=row[15],
    )


def _set_event(event: asyncio.Event, *_: Any) -> None:
    event.set()


class _Listener:
    """LISTEN on the store's channel; call ``on_insert(queue)`` per notification. Reconnects by
    itself, with backoff, when the connection drops (a database restart, a terminated backend,
    a half-open socket found by a periodic ping)."""

    def __init__(self, store: PostgresStore, on_insert: Callable[[str], None]) -> None:
        self._store = store
        self._on_insert = on_insert
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._queues: set[str] = set()
        self.ping_interval = _LISTEN_PING
        self.connections = 0  # how many times LISTEN was (re)established

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relaybus-postgres-listen")
        try:
            async with asyncio.timeout(10):
                await self._ready.wait()
        except TimeoutError:
            _logger.warning("LISTEN is not established yet; polling until it is")

    async def stop(self) -> None:
        self._stopping = True
        self._store._listeners.discard(self)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if len(self._queues) < 1024:
            self._queues.add(payload)
        try:
            self._on_insert(payload)
        except Exception:
            _logger.exception("on_insert callback failed for queue %r", payload)

    async def _give_back(self, conn: Any, release: Callable[[], Awaitable[None]]) -> None:
        if not conn.is_closed():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await conn.remove_listener(self._store._channel, self._notified)
        await release()

    async def _run(self) -> None:
        store = self._store
        delay = 0.05
        while not self._stopping:
            release: Callable[[], Awaitable[None]] | None = None
            conn: Any = None
            try:
                conn, release = await store._listen_connection()
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await conn.add_listener(store._channel, self._notified)
                self.connections += 1
                if self.connections > 1:
                    _logger.info("LISTEN re-established on %s", store._channel)
                    for queue in list(self._queues):  # whatever was missed meanwhile
                        self._notified(conn, 0, store._channel, queue)
                self._ready.set()
                delay = 0.05
                while not lost.is_set():
                    try:
                        async with asyncio.timeout(self.ping_interval):
                            await lost.wait()
                    except TimeoutError:
                        async with asyncio.timeout(max(self.ping_interval, 5.0)):
                            await conn.fetchval(store._q["ping"])
                raise ConnectionError("the LISTEN connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    break
                _logger.warning(
                    "LISTEN connection lost (%s); reconnecting in %.2fs",
                    store._describe(exc),
                    delay,
                )
            finally:
                if release is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._give_back(conn, release))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 5.0)


def _error_text(error: JobError | None) -> str | None:
    """A job error as the JSON object the queries append to ``errors``."""
    return None if error is None else _encode.encode(error_to_builtins(error)).decode()
