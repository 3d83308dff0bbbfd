"""Rows to records, once for every SQL dialect.

Query columns are part of the vocabulary: every dialect's claim queries (``fetch``, ``claim``
...) return :data:`CLAIM_COLUMNS` and its ``get_job``/``list_jobs`` queries :data:`JOB_COLUMNS`,
in that order. Stored values are decoded defensively: a row corrupted outside relaybus (text
that is not UTF-8, JSON that does not decode or nests too deeply, meta that is not an object)
never breaks a fetch or a listing. A claimed job carries the problem (``Claimed.problem``), and
the runtime records it as that job's error; its neighbours run as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..._codec import UNDECODABLE, decode_errors, decode_payload, meta_object
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


class _Problems:
    """The fields of one row that did not decode."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: list[str] = []

    def text(self, column: str, value: Any) -> str:
        """A text column; bytes (SQLite reads text columns as BLOB) must be UTF-8."""
        if not isinstance(value, bytes):
            return str(value)
        try:
            return value.decode()
        except UnicodeDecodeError:
            self.found.append(f"the {column} column is not UTF-8 text")
            return value.decode("utf-8", "replace")

    def meta(self, data: bytes | str | None) -> dict[str, Any]:
        value, problem = meta_object(data)
        if problem is not None:
            self.found.append(problem)
        return value

    def summary(self) -> str | None:
        return "; ".join(self.found) if self.found else None


def errors_of(data: bytes | str | None) -> tuple[JobError, ...]:
    try:
        return decode_errors(data)
    except UNDECODABLE:  # msgspec.ValidationError is a DecodeError
        return ()


def to_claimed(row: Any, codec: RowCodec) -> Claimed:
    handler, event, queue, meta_text = row[1], row[2], row[3], row[8]
    meta: dict[str, Any] = {}
    problem = None
    if type(handler) is not str or type(event) is not str or type(queue) is not str:
        try:  # text read as bytes (SQLite): it must be UTF-8
            handler, event, queue = handler.decode(), event.decode(), queue.decode()
        except UnicodeDecodeError:
            problems = _Problems()
            handler = problems.text("handler", handler)
            event = problems.text("event", event)
            queue = problems.text("queue", queue)
            problem = problems.summary()
    if meta_text and meta_text != "{}" and meta_text != b"{}":
        meta, meta_problem = meta_object(meta_text)
        if meta_problem is not None:
            problem = meta_problem if problem is None else f"{problem}; {meta_problem}"
    return Claimed(
        id=row[0],
        handler=handler,
        event=event,
        queue=queue,
        priority=row[4],
        attempt=row[5],
        max_attempts=row[6],
        payload=codec.as_bytes(row[7]),
        meta=meta,
        inserted_at=codec.decode_time(row[9]),
        scheduled_at=codec.decode_time(row[10]),
        timeout=row[11],
        rescues=row[12],
        problem=problem,
    )


def to_job(row: Any, codec: RowCodec) -> Job:
    problems = _Problems()  # an admin record shows what it can; nothing here raises
    return Job(
        id=row[0],
        handler=problems.text("handler", row[1]),
        event=problems.text("event", row[2]),
        queue=problems.text("queue", row[3]),
        priority=row[4],
        state=_STATES[problems.text("state", row[5])],
        attempt=row[6],
        max_attempts=row[7],
        payload=decode_payload(row[8]),
        meta=problems.meta(row[9]),
        errors=errors_of(row[10]),
        inserted_at=codec.decode_time(row[11]),
        scheduled_at=codec.decode_time(row[12]),
        attempted_at=codec.opt_time(row[13]),
        attempted_by=None if row[14] is None else problems.text("attempted_by", row[14]),
        finalized_at=codec.opt_time(row[15]),
    )
