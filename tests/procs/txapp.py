"""A worker process whose handler writes its effect with ``ctx.transaction()``:
``python -m tests.procs.txapp --dsn ... --log ...``.

The handler inserts one row ``(job id, attempt, pid)`` into ``lc_effects`` on the transaction's
connection, logs ``wrote``, and on attempt 1 of a ``pause_before_commit`` job waits (the test
SIGKILLs the process there, between the write and the commit); after the block it logs
``committed`` and, on attempt 1 of a ``pause_after_commit`` job, waits again (SIGKILL after the
commit). Log lines are single O_APPEND writes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import dataclass
from typing import Any

import relaybus as rb
from relaybus.cli import store_for_dsn
from tests.procs.app import log_line


@dataclass(frozen=True)
class Effect(rb.Event, name="procs.effect"):
    n: int
    mode: str = "plain"  # plain | pause_before_commit | pause_after_commit | always_exit


def effects_table(dsn: str, schema: str | None) -> str:
    return f'"{schema}".lc_effects' if dsn.startswith("postgresql") else "lc_effects"


async def write_effect(conn: Any, dsn: str, table: str, row: tuple[int, int, int]) -> None:
    if dsn.startswith("postgresql"):
        await conn.execute(f"INSERT INTO {table} (job_id, attempt, pid) VALUES ($1, $2, $3)", *row)
    elif dsn.startswith("mysql"):
        async with conn.cursor() as cur:
            await cur.execute(
                f"INSERT INTO {table} (job_id, attempt, pid) VALUES (%s, %s, %s)", row
            )
    else:
        conn.execute(f"INSERT INTO {table} (job_id, attempt, pid) VALUES (?, ?, ?)", row)


def build_bus(dsn: str, schema: str | None, log: str) -> rb.Bus[Any]:
    store = store_for_dsn(dsn, prefix="relaybus_", schema=schema)
    bus: rb.Bus[Any] = rb.Bus(store=store, lifecycle_events=True)
    table = effects_table(dsn, schema)

    @bus.job(rb.JobDiscarded, name="procs.dead_letter", queue="dead", timeout=None)
    async def dead_letter(event: rb.JobDiscarded, ctx: rb.Context[Any]) -> None:
        assert ctx.job is not None
        job = event.job
        log_line(log, f"dead {job.id} {job.errors[-1].kind} {ctx.job.id} {os.getpid()}")

    @bus.job(Effect, name="procs.effect", max_attempts=5, timeout=None, backoff=rb.Constant(0))
    async def effect(event: Effect, ctx: rb.Context[Any]) -> None:
        assert ctx.job is not None
        job, attempt, pid = ctx.job.id, ctx.job.attempt, os.getpid()
        if event.mode == "always_exit":
            os._exit(3)  # the job kills its process, every time (a poison job)
        async with ctx.transaction() as conn:
            await write_effect(conn, dsn, table, (job, attempt, pid))
            log_line(log, f"wrote {job} {attempt} {pid}")
            if event.mode == "pause_before_commit" and attempt == 1:
                await asyncio.sleep(600)  # SIGKILLed here: the write is not committed
        log_line(log, f"committed {job} {attempt} {pid}")
        if event.mode == "pause_after_commit" and attempt == 1:
            await asyncio.sleep(600)  # SIGKILLed here: committed, the job is completed

    return bus


async def worker(args: argparse.Namespace) -> None:
    bus = build_bus(args.dsn, args.schema, args.log)
    async with bus:
        w = bus.worker(
            queues={"default": 2, "dead": 1},
            node=args.node,
            poll_interval=0.2,
            heartbeat_interval=0.3,
            node_ttl=1.5,
            rescue_interval=0.3,
            handle_signals=True,
        )
        log_line(args.log, f"worker {os.getpid()} {w.node.id}")
        await w.run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", default=None)
    parser.add_argument("--log", required=True)
    parser.add_argument("--node", default="tx")
    asyncio.run(worker(parser.parse_args()))


if __name__ == "__main__":
    main()
