"""Rows to records, once for every SQL dialect.

Query columns are part of the vocabulary: every dialect's ``fetch``/``claim`` queries return
:data:`CLAIM_COLUMNS` and its ``get_job``/``list_jobs`` queries :data:`JOB_COLUMNS`, in that order.
Stored JSON is decoded defensively: a row corrupted outside relaybus never breaks a listing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from ..._codec import decode_errors, decode_json, decode_payload
from ..._driver import Claimed
from ..._types import Job, JobError, JobState

__all__ = ["CLAIM_COLUMNS", "JOB_COLUMNS", "RowCodec", "to_claimed", "to_job"]

CLAIM_COLUMNS = (
    "id", "handler", "event", "queue", "priority", "attempt", "max_attempts", "payload", "meta",
    "inserted_at", "scheduled_at", "timeout", "rescues",
)  # fmt: skip
JOB_COLUMNS = (
    "id", "handler", "event", "queue", "priority", "state", "attempt", "max_attempts", "payload",
    "meta", "errors", "inserted_at", "scheduled_at", "attempted_at", "attempted_by",
    "finalized_at",
)  # fmt: skip
_STATES = {state.value: state for state in JobState}


class RowCodec:
    """How a dialect's values read back: times and JSON text."""

    def __init__(
        self, decode_time: Callable[[Any], datetime], as_bytes: Callable[[Any], bytes]
    ) -> None:
        self.decode_time = decode_time
        self.as_bytes = as_bytes

    def opt_time(self, value: Any) -> datetime | None:
        return None if value is None else self.decode_time(value)


def meta_object(data: bytes | str | None) -> dict[str, Any]:
    if not data or data == b"{}" or data == "{}":
        return {}
    try:
        value = decode_json(data)
    except msgspec.DecodeError:
        return {}  # a corrupted row: the job still runs, without its meta
    return value if isinstance(value, dict) else {}


def errors_of(data: bytes | str | None) -> tuple[JobError, ...]:
    try:
        return decode_errors(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ()


def to_claimed(row: Any, codec: RowCodec) -> Claimed:
    return Claimed(
        id=row[0],
        handler=row[1],
        event=row[2],
        queue=row[3],
        priority=row[4],
        attempt=row[5],
        max_attempts=row[6],
        payload=codec.as_bytes(row[7]),
        meta=meta_object(row[8]),
        inserted_at=codec.decode_time(row[9]),
        scheduled_at=codec.decode_time(row[10]),
        timeout=row[11],
        rescues=row[12],
    )


def to_job(row: Any, codec: RowCodec) -> Job:
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
        meta=meta_object(row[9]),
        errors=errors_of(row[10]),
        inserted_at=codec.decode_time(row[11]),
        scheduled_at=codec.decode_time(row[12]),
        attempted_at=codec.opt_time(row[13]),
        attempted_by=row[14],
        finalized_at=codec.opt_time(row[15]),
    )
