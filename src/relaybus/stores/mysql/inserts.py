"""The MySQL insert algorithm: runs of jobs without a unique key as one statement each
(``INSERT ... SELECT ... FROM JSON_TABLE(:jobs)`` over one JSON array), unique jobs one by one
in between, all in one transaction, in input order (ids increase in input order).

A unique job is a plain INSERT: the unique index on the generated ``unique_holder`` column
refuses it (1062) when another job holds the key -- InnoDB then rolls back that statement
only, also inside a caller's transaction -- and the holder is looked up, locked, and reported
as the duplicate or replaced with the fields its state lists (:mod:`relaybus._jobrules`). A
holder that left its blocking states in between makes the insert run again.

Ids of a batch: MariaDB returns them (``INSERT ... RETURNING``). MySQL 8 has no RETURNING; there
(UNTESTED here: no MySQL 8 server on the test machines) a batch is one statement only when the
server allocates one statement's ids consecutively (``innodb_autoinc_lock_mode`` 0 or 1), and
row by row otherwise (the MySQL 8 default, 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ..._driver import Inserted, NewJob
from ..._errors import StoreError
from ..._jobrules import due_state
from ..._options import bucket_key
from ..._types import JobState
from .._sql.base import RERUNS
from .._sql.executor import Tx
from .._sql.inserts import resolve_conflict

if TYPE_CHECKING:
    from .dialect import MySQLDialect

__all__ = ["insert_jobs", "needs_now"]

_encode = msgspec.json.Encoder()
#: A batch statement carries at most this many bytes of payload and meta (the server's
#: max_allowed_packet is 16 MiB by default on MariaDB, 64 MiB on MySQL 8).
BATCH_BYTES = 4 * 1024 * 1024
_AVAILABLE = JobState.AVAILABLE.value


class InsertTx(Tx, Protocol):
    async def insert(self, name: str, args: Any) -> int: ...


def needs_now(job: NewJob) -> bool:
    """Whether inserting ``job`` needs "now" in Python (its due time or its key's bucket)."""
    return (
        job.at is not None
        or bool(job.delay)
        or (
            job.unique_key is not None and bool(job.unique_states) and job.unique_period is not None
        )
    )


def _time(dialect: MySQLDialect, value: datetime | None) -> str | None:
    encoded = dialect.encode_time(value)
    return None if encoded is None else encoded.isoformat(" ", "microseconds")


async def insert_jobs(
    tx: InsertTx, dialect: MySQLDialect, jobs: Sequence[NewJob], now: datetime | None
) -> list[Inserted]:
    """Insert ``jobs`` (``now`` None: the server's clock, and no job needs it in Python)."""
    results: list[Inserted] = []
    plain: list[list[Any]] = []
    size = 0
    for job in jobs:
        scheduled_at: datetime | None = None
        state = _AVAILABLE
        if now is not None:
            due = job.at or (now + timedelta(seconds=job.delay) if job.delay else now)
            scheduled_at = due
            state = due_state(due > now).value
        if job.unique_key is None or not job.unique_states:
            if size > BATCH_BYTES:
                results.extend(await _insert_plain(tx, dialect, plain, now))
                size = 0
            plain.append(
                [
                    job.handler, job.event, job.queue, job.priority, state, job.max_attempts,
                    job.payload.decode(), job.meta.decode(), job.timeout,
                    _time(dialect, scheduled_at),
                ]
            )  # fmt: skip
            size += len(job.payload) + len(job.meta)
            continue
        if plain:
            results.extend(await _insert_plain(tx, dialect, plain, now))
            size = 0
        results.append(await _insert_unique(tx, dialect, job, state, scheduled_at, now))
    if plain:
        results.extend(await _insert_plain(tx, dialect, plain, now))
    return results


async def _insert_plain(
    tx: InsertTx, dialect: MySQLDialect, rows: list[list[Any]], now: datetime | None
) -> list[Inserted]:
    count = len(rows)
    now_arg = dialect.encode_time(now)
    server = dialect.server
    try:
        if count == 1:
            return [Inserted(await tx.insert("insert_job", _one_row(rows[0], now_arg)), "inserted")]
        args = {"jobs": _encode.encode(rows).decode(), "now": now_arg}
        if server is None or server.mariadb:
            ids = sorted(row[0] for row in await tx.fetch("insert_batch", args))
            if len(ids) != count:  # pragma: no cover - an INSERT ... SELECT inserts every row
                raise StoreError(f"a batch of {count} jobs inserted {len(ids)}")
            return [Inserted(job_id, "inserted") for job_id in ids]
        # MySQL 8 (untested here): no RETURNING.
        if server.autoinc_lock_mode in (0, 1):
            first = await tx.insert("insert_batch_consecutive", args)
            step = server.autoinc_increment
            return [Inserted(first + i * step, "inserted") for i in range(count)]
        return [
            Inserted(await tx.insert("insert_job", _one_row(row, now_arg)), "inserted")
            for row in rows
        ]
    finally:
        rows.clear()


def _one_row(row: list[Any], now_arg: Any) -> dict[str, Any]:
    handler, event, queue, priority, state, max_attempts, payload, meta, timeout, sched = row
    return {
        "handler": handler,
        "event": event,
        "queue": queue,
        "priority": priority,
        "state": state,
        "max_attempts": max_attempts,
        "payload": payload,
        "meta": meta,
        "timeout": timeout,
        "scheduled_at": sched,
        "now": now_arg,
        "unique_key": None,
        "unique_states": 0,
    }


async def _insert_unique(
    tx: InsertTx,
    dialect: MySQLDialect,
    job: NewJob,
    state: str,
    scheduled_at: datetime | None,
    now: datetime | None,
) -> Inserted:
    assert job.unique_key is not None
    if job.unique_period is None:
        key = job.unique_key
    else:
        assert now is not None  # needs_now: the caller read the server's clock
        key = bucket_key(job.unique_key, job.unique_period, now.timestamp())
    sched = _time(dialect, scheduled_at)
    now_arg = dialect.encode_time(now)
    payload, meta = job.payload.decode(), job.meta.decode()
    args = {
        "handler": job.handler,
        "event": job.event,
        "queue": job.queue,
        "priority": job.priority,
        "state": state,
        "max_attempts": job.max_attempts,
        "payload": payload,
        "meta": meta,
        "timeout": job.timeout,
        "scheduled_at": sched,
        "now": now_arg,
        "unique_key": key,
        "unique_states": job.unique_states,
    }
    due_later = state != _AVAILABLE
    for _ in range(RERUNS):
        try:
            return Inserted(await tx.insert("insert_job", args), "inserted")
        except Exception as exc:
            if dialect.classify(exc) != "unique":
                raise
        holder = await tx.fetchrow("find_holder", {"unique_key": key})
        if holder is None:
            continue  # the holder left its blocking states meanwhile: insert again
        values = {"payload": payload, "meta": meta, "scheduled_at": sched, "now": now_arg}
        return await resolve_conflict(
            tx, job, int(holder[0]), JobState(holder[1]), due_later, values
        )
    raise StoreError(f"inserting a unique {job.handler} job kept meeting concurrent holders")
