"""JSON helpers shared by stores: job errors, meta objects, admin records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ._types import JobError

__all__ = [
    "decode_errors",
    "decode_json",
    "decode_payload",
    "encode_error",
    "encode_errors",
    "error_to_builtins",
]

_decode_any = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()


class _ErrorRecord(msgspec.Struct):
    at: datetime
    attempt: int
    kind: str
    message: str
    traceback: str | None = None


_decode_error_list = msgspec.json.Decoder(list[_ErrorRecord])


def error_to_builtins(error: JobError) -> dict[str, Any]:
    return {
        "at": error.at.isoformat(),
        "attempt": error.attempt,
        "kind": error.kind,
        "message": error.message,
        "traceback": error.traceback,
    }


def encode_error(error: JobError) -> bytes:
    """One job error as the JSON object stores append to a job's errors."""
    return _encode.encode(error_to_builtins(error))


def encode_errors(errors: list[JobError] | tuple[JobError, ...]) -> bytes:
    return _encode.encode([error_to_builtins(e) for e in errors])


def decode_errors(data: bytes | str | None) -> tuple[JobError, ...]:
    if not data:
        return ()
    records = _decode_error_list.decode(data)
    return tuple(JobError(r.at, r.attempt, r.kind, r.message, r.traceback) for r in records)


def decode_json(data: bytes | str | None) -> Any:
    if data is None:
        return None
    return _decode_any.decode(data)


def decode_payload(data: bytes | str | None) -> Any:
    """A stored payload for the admin API: decoded JSON, or its raw text when the row holds no
    valid JSON (rows can be corrupted outside relaybus; that must never crash a listing)."""
    if data is None:
        return None
    try:
        return _decode_any.decode(data)
    except msgspec.DecodeError:
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
