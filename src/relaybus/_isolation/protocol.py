"""The messages between a worker and its child processes: JSON, each framed by its length.

Nothing is pickled: the event travels as the same JSON bytes a store keeps (``payload``), the
child decodes it into the event class of the app it imported itself.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any, BinaryIO, Literal

import msgspec

__all__ = [
    "HEADER",
    "ChildError",
    "Hello",
    "Reply",
    "Request",
    "Setup",
    "decode",
    "encode",
    "error_kind",
    "frame",
    "read_frame",
]

HEADER = struct.Struct(">I")  # the length of the JSON body that follows
MAX_FRAME = 64 * 1024 * 1024


class Setup(msgspec.Struct, frozen=True):
    """The first message to a child: the app to import and the parent's import path."""

    app: str
    sys_path: list[str]
    parent_pid: int


class Hello(msgspec.Struct, frozen=True):
    """A child's first answer: the app imported (``error`` says why not) and the handlers
    it runs in processes."""

    error: str | None = None
    handlers: list[str] = []


class Request(msgspec.Struct, frozen=True):
    """Run one attempt of a job. ``payload`` is the event's JSON, embedded as is."""

    handler: str
    payload: msgspec.Raw
    meta: dict[str, Any]
    job_id: int
    attempt: int
    max_attempts: int
    queue: str
    priority: int
    inserted_at: datetime
    scheduled_at: datetime


Outcome = Literal["completed", "snooze", "cancel", "discard", "error"]


class Reply(msgspec.Struct, frozen=True):
    """How the attempt ended: ``error`` with the exception's kind, message and traceback,
    or a handler outcome (``snooze`` seconds, ``cancel`` / ``discard`` reason)."""

    outcome: Outcome
    seconds: float = 0.0
    reason: str = ""
    kind: str = ""
    message: str = ""
    traceback: str | None = None


def error_kind(exc: BaseException) -> str:
    """A job error's ``kind`` for ``exc``, spelled as the executor spells it: the class,
    qualified by its module unless builtin."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class ChildError(Exception):
    """What a process handler raised in its child: the error is recorded with the child's
    exception kind, message and traceback (the executor reads these three)."""

    def __init__(self, kind: str, message: str, traceback: str | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.remote_traceback = traceback


_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes, kind: type[Any]) -> Any:
    return msgspec.json.decode(data, type=kind)


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


def read_frame(stream: BinaryIO) -> bytes | None:
    """One frame from a blocking stream (the child's side); None at end of stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes is over the limit")
    body = stream.read(size)
    return body if len(body) == size else None
