"""An app module for the ``relaybus worker`` command tests: ``relaybus worker
tests.procs.cliapp:bus``. The store is the SQLite file or PostgreSQL DSN in ``CLIAPP_DSN``
(``CLIAPP_SCHEMA`` for a PostgreSQL schema); each run appends ``start|end JOB ATTEMPT PID`` to
the file ``CLIAPP_LOG`` (one O_APPEND write per line: atomic across processes)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import relaybus as rb
from relaybus.cli import store_for_dsn
from tests.procs.app import log_line


@dataclass(frozen=True)
class Task(rb.Event, name="cliapp.task"):
    n: int
    seconds: float = 0.0
    fail: bool = False


DSN = os.environ.get("CLIAPP_DSN", "sqlite:///cliapp.db")
LOG = os.environ.get("CLIAPP_LOG", os.devnull)

bus: rb.Bus[Any] = rb.Bus(
    store=store_for_dsn(DSN, prefix="relaybus_", schema=os.environ.get("CLIAPP_SCHEMA"))
)
not_a_bus = object()


@bus.job(
    Task, name="cliapp.run", queue="work", max_attempts=3, timeout=None, backoff=rb.Constant(0)
)
async def run(event: Task, ctx: rb.Context[Any]) -> None:
    assert ctx.job is not None
    log_line(LOG, f"start {ctx.job.id} {ctx.job.attempt} {os.getpid()}")
    ctx.logger.info("running task %s", event.n)
    await asyncio.sleep(event.seconds)
    if event.fail:
        raise RuntimeError(f"task {event.n} failed on purpose")
    log_line(LOG, f"end {ctx.job.id} {ctx.job.attempt} {os.getpid()}")
