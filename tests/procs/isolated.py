"""Process handlers for tests/test_process_isolation.py; its worker children import ``bus``.

The handlers are module-level ``def`` functions (what ``isolation="process"`` requires);
``register`` puts them on any bus, so a test's own bus and this module's ``bus`` (the one a
child imports) have the same handlers by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import relaybus as rb
from relaybus.cli import store_for_dsn


@dataclass(frozen=True)
class Crunch(rb.Event, name="tests.isolated.crunch"):
    mode: str  # ok | busy | fail | exit | snooze
    path: str = ""  # "ok" appends "JOB_ID ATTEMPT PID" here


def crunch(event: Crunch, ctx: rb.Context[Any]) -> None:
    assert ctx.job is not None
    if event.mode == "busy":
        while True:  # a CPU-bound loop no thread could stop
            pass
    if event.mode == "fail":
        raise ValueError(f"bad input for job {ctx.job.id}")
    if event.mode == "exit":
        os._exit(7)
    if event.mode == "snooze":
        raise rb.Snooze(60)
    with open(event.path, "a") as out:
        out.write(f"{ctx.job.id} {ctx.job.attempt} {os.getpid()} {ctx.meta.get('tenant')}\n")


def register(bus: rb.Bus[Any]) -> None:
    bus.job(
        Crunch,
        name="tests.isolated.crunch",
        queue="cpu",
        timeout=3,
        max_attempts=1,
        isolation="process",
    )(crunch)


def _store() -> Any:
    dsn = os.environ.get("ISOLATED_DSN")  # the command test: a SQLite file shared with it
    return None if dsn is None else store_for_dsn(dsn, prefix="relaybus_", schema=None)


bus: rb.Bus[Any] = rb.Bus(store=_store())
register(bus)

#: A bus without the process handler: a worker whose children import it cannot start.
empty: rb.Bus[Any] = rb.Bus()
