"""The default insert algorithm: row by row inside one transaction (select-then-update where a
unique key is taken), for dialects without array statements (SQLite; MySQL).

Consecutive jobs without a unique key go as one ``executemany``. A unique job is inserted with
"do nothing on conflict"; when the unique index refuses it, the holder is looked up and either
reported as the duplicate or replaced with the fields its state lists (:mod:`relaybus._jobrules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ..._driver import Inserted, NewJob
from ..._errors import StoreError
from ..._jobrules import due_state, replace_fields, replaced_state
from ..._options import bucket_key
from ..._types import JobState
from .dialect import Dialect
from .executor import Tx

__all__ = ["INSERT_JOB_BINDS", "insert_rows", "resolve_conflict"]


def _due(job: NewJob, now: datetime) -> datetime:
    if job.at is not None:
        return job.at
    if job.delay:
        return now + timedelta(seconds=job.delay)
    return now


#: The binds of every dialect's ``insert_job``, in placeholder order: plain rows are built as
#: tuples in this order (cheaper than one dict per job; a test checks each dialect agrees).
INSERT_JOB_BINDS = (
    "handler", "event", "queue", "priority", "state", "max_attempts", "payload", "meta", "now",
    "scheduled_at", "timeout",
)  # fmt: skip
_SCHEDULED = due_state(True).value
_AVAILABLE = due_state(False).value


async def insert_rows(
    tx: Tx, dialect: Dialect, jobs: Sequence[NewJob], now: datetime
) -> list[Inserted]:
    results: list[Inserted] = []
    plain: list[tuple[Any, ...]] = []
    enc = dialect.encode_time
    text = dialect.json_text
    now_arg = enc(now)
    meta_of: bytes | None = None  # the jobs of one dispatch share their meta: bound once
    meta_arg: Any = None
    for job in jobs:
        if job.at is None and not job.delay:  # due now: the common case, without a call
            later, state, due = False, _AVAILABLE, now_arg
        else:
            scheduled_at = _due(job, now)
            later = scheduled_at > now
            state = _SCHEDULED if later else _AVAILABLE
            due = now_arg if scheduled_at is now else enc(scheduled_at)
        if job.meta is not meta_of:
            meta_of = job.meta
            meta_arg = text(meta_of)
        row = (
            job.handler, job.event, job.queue, job.priority, state, job.max_attempts,
            text(job.payload), meta_arg, now_arg, due, job.timeout,
        )  # fmt: skip
        if job.unique_key is None or not job.unique_states:
            plain.append(row)
            continue
        if plain:
            results.extend(await _insert_plain(tx, plain))
        args = dict(zip(INSERT_JOB_BINDS, row, strict=True))
        results.append(await _insert_unique(tx, dialect, job, args, later, now))
    if plain:
        results.extend(await _insert_plain(tx, plain))
    return results


async def _insert_plain(tx: Tx, rows: list[tuple[Any, ...]]) -> list[Inserted]:
    """One executemany; the rows got consecutive ids (one writer holds the transaction)."""
    await tx.executemany("insert_job", rows)
    last = (await _one(tx, "last_insert_id", {}))[0]
    count = len(rows)
    rows.clear()
    return [Inserted(i, "inserted") for i in range(last - count + 1, last + 1)]


async def _insert_unique(
    tx: Tx, dialect: Dialect, job: NewJob, row: dict[str, Any], due_later: bool, now: datetime
) -> Inserted:
    assert job.unique_key is not None
    key = bucket_key(job.unique_key, job.unique_period, now.timestamp())
    args = {**row, "unique_key": key, "unique_states": job.unique_states}
    inserted = await tx.fetchrow("insert_unique_job", args)
    if inserted is not None:
        return Inserted(inserted[0], "inserted")
    # The unique index refused it: another job holds the key.
    holder_id, holder_state = await _one(tx, "find_holder", {"unique_key": key})
    return await resolve_conflict(
        tx, job, holder_id, JobState(holder_state), due_later,
        {"payload": row["payload"], "meta": row["meta"], "scheduled_at": row["scheduled_at"]},
    )  # fmt: skip


async def resolve_conflict(
    tx: Tx,
    job: NewJob,
    holder_id: int,
    held: JobState,
    due_later: bool,
    values: dict[str, Any],
) -> Inserted:
    """An insert met ``holder_id`` (in state ``held``) holding its key: report the duplicate,
    or replace the fields the holder's state lists (``_jobrules``) with ``values`` (the new
    job's bound payload, meta and scheduled_at; a dialect may add binds of its own)."""
    fields = replace_fields(job.replace, held)
    if not fields:
        return Inserted(holder_id, "duplicate")
    await tx.execute(
        "replace_job",
        {
            **values,
            "id": holder_id,
            "state": replaced_state(held, fields, due_later).value,
            "set_payload": "payload" in fields,
            "set_meta": "meta" in fields,
            "set_priority": "priority" in fields,
            "priority": job.priority,
            "set_queue": "queue" in fields,
            "queue": job.queue,
            "set_max_attempts": "max_attempts" in fields,
            "max_attempts": job.max_attempts,
            "set_scheduled_at": "scheduled_at" in fields,
        },
    )
    return Inserted(holder_id, "replaced")


async def _one(tx: Tx, name: str, args: dict[str, Any]) -> Any:
    row = await tx.fetchrow(name, args)
    if row is None:  # pragma: no cover - these queries always return a row
        raise StoreError(f"query {name} returned no row")
    return row
