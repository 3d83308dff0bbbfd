"""JSON helpers shared by stores: job errors, meta objects, admin records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ._types import JobError

__all__ = [
    "UNDECODABLE",
    "decode_errors",
    "decode_json",
    "decode_payload",
    "encode_error",
    "encode_errors",
    "error_to_builtins",
    "meta_object",
    "shorten",
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


#: What decoding stored JSON can raise: not JSON, or nested deeper than the decoder recurses.
UNDECODABLE: tuple[type[Exception], ...] = (msgspec.DecodeError, RecursionError, ValueError)


def decode_payload(data: bytes | str | None) -> Any:
    """A stored payload for the admin API: decoded JSON, or its raw text when the row holds no
    JSON that decodes (rows can be corrupted outside relaybus, or nest deeper than any decoder
    recurses; that must never crash a listing)."""
    if data is None:
        return None
    try:
        return _decode_any.decode(data)
    except UNDECODABLE:
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def meta_object(data: bytes | str | None) -> tuple[dict[str, Any], str | None]:
    """A job's stored meta as a dict, and what is wrong with it when it is not a JSON object
    (then the dict is empty)."""
    if not data or data == b"{}" or data == "{}":
        return {}, None
    try:
        value = _decode_any.decode(data)
    except UNDECODABLE as exc:
        return {}, f"meta does not decode: {shorten(str(exc) or type(exc).__name__)}"
    if not isinstance(value, dict):
        return {}, f"meta is a JSON {_JSON_TYPES.get(type(value), 'value')}, not an object"
    return value, None


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def shorten(text: str, limit: int = 100) -> str:
    """``text`` cut to ``limit`` characters, for quoting a bad value in a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
