"""A child process of a worker's pool: ``python -m relaybus._isolation.child``.

It is a fresh interpreter (spawned, never a fork of the worker's running event loop). It reads
a :class:`Setup` from stdin, imports the app exactly as ``relaybus worker APP:BUS`` does, says
:class:`Hello`, then runs one :class:`Request` at a time — the plain ``def`` handler called
directly, in its main thread — and answers each with a :class:`Reply`. Its stdout carries only
the protocol (a handler's ``print`` goes to stderr). It ignores SIGINT (the worker decides
when to stop), ends at the end of its stdin, and exits on its own when the worker is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, BinaryIO

from .._context import Context
from .._errors import Cancel, Discard, Snooze
from .._types import JobInfo
from ..cli.target import load_app
from .protocol import (
    Hello,
    Reply,
    Request,
    Setup,
    decode,
    encode,
    error_kind,
    frame,
    read_frame,
)

__all__ = ["main", "run_request"]


def _watch_parent(parent_pid: int) -> None:
    """Exit when the worker is gone (even while a handler is busy in the main thread)."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(0)


def run_request(bus: Any, request: Request) -> Reply:
    """One attempt: decode the payload, call the handler, map how it ended."""
    spec = bus.registry.job_by_name.get(request.handler)
    if spec is None or spec.isolation != "process":
        return Reply(
            "error",
            kind="unknown_handler",
            message=f"the app imported in the child has no process handler {request.handler!r}",
        )
    codec = bus.registry.codecs[spec.event]
    try:
        event = codec.decode(bytes(request.payload))
    except Exception as exc:
        return Reply(
            "error",
            kind="decode_error",
            message=f"payload does not decode into {spec.event.__qualname__}: {exc}",
        )
    info = JobInfo(
        request.job_id, request.handler, request.attempt, request.max_attempts, request.queue,
        request.priority, request.meta, request.inserted_at, request.scheduled_at,
    )  # fmt: skip
    ctx: Context[Any] = Context(
        bus.state, bus, event, spec.name, request.meta, bus.handler_logger, info
    )
    try:
        spec.target(event, ctx)
    except Snooze as snooze:
        return Reply("snooze", seconds=snooze.seconds)
    except Cancel as cancel:
        return Reply("cancel", reason=cancel.reason)
    except Discard as discard:
        return Reply("discard", reason=discard.reason)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: a failed attempt
        return Reply(
            "error",
            kind=error_kind(exc),
            message=str(exc) or repr(exc),
            traceback="".join(traceback.format_exception(exc)),
        )
    return Reply("completed")


def _write(out: BinaryIO, body: bytes) -> None:
    out.write(frame(body))
    out.flush()


def main() -> None:
    stdin = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # fd 1 is stderr from now on: only the protocol uses ``out``
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    first = read_frame(stdin)
    if first is None:
        return
    setup: Setup = decode(first, Setup)
    sys.path[:] = [*setup.sys_path, *(p for p in sys.path if p not in setup.sys_path)]
    threading.Thread(target=_watch_parent, args=(setup.parent_pid,), daemon=True).start()
    try:
        bus = load_app(setup.app)
    except BaseException as exc:
        _write(out, encode(Hello(error=f"{type(exc).__name__}: {exc}")))
        return
    names = [n for n, s in bus.registry.job_by_name.items() if s.isolation == "process"]
    _write(out, encode(Hello(handlers=names)))
    while True:
        data = read_frame(stdin)
        if data is None:
            return
        _write(out, encode(run_request(bus, decode(data, Request))))


if __name__ == "__main__":
    main()
