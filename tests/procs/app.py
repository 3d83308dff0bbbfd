"""A worker process for the multi-process tests: ``python -m tests.procs.app worker ...``.

Handlers append one line per run start/end to ``--log`` (O_APPEND writes of one line are
atomic), so the tests can count executions per job across processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

import relaybus as rb
from relaybus.cli import store_for_dsn


@dataclass(frozen=True)
class Work(rb.Event, name="procs.work"):
    n: int
    mode: str = "noop"  # noop | slow_first | always_exit | sleep
    seconds: float = 0.0


def log_line(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def build_bus(dsn: str, schema: str | None, log: str, *, small: bool = False) -> rb.Bus[Any]:
    """The app's bus; ``small``: one connection (50 inserting processes share the server's
    100 connections)."""
    if small and dsn.startswith("postgresql://"):
        store: Any = rb.PostgresStore(dsn, schema=schema or "public", min_size=1, max_size=1)
    elif small and dsn.startswith("mysql://"):
        store = rb.MySQLStore(dsn, min_size=1, max_size=1)
    else:
        store = store_for_dsn(dsn, prefix="relaybus_", schema=schema)
    bus: rb.Bus[Any] = rb.Bus(store=store)

    @bus.job(Work, name="procs.run", max_attempts=5, timeout=None, backoff=rb.Constant(0))
    async def run(event: Work, ctx: rb.Context[Any]) -> None:
        assert ctx.job is not None
        log_line(log, f"start {ctx.job.id} {ctx.job.attempt} {os.getpid()}")
        if event.mode == "always_exit":
            os._exit(3)
        if event.mode == "slow_first" and ctx.job.attempt == 1:
            await asyncio.sleep(event.seconds)
        if event.mode == "sleep":
            await asyncio.sleep(event.seconds)
        log_line(log, f"end {ctx.job.id} {ctx.job.attempt} {os.getpid()}")

    return bus


async def worker(args: argparse.Namespace) -> None:
    bus = build_bus(args.dsn, args.schema, args.log)
    async with bus:
        w = bus.worker(
            queues={"default": args.concurrency},
            node=args.node,
            poll_interval=0.2,
            heartbeat_interval=args.heartbeat,
            node_ttl=args.ttl,
            rescue_interval=args.heartbeat,
            max_rescues=args.max_rescues,
            grace=args.grace,
            handle_signals=True,
            **(
                {"prune_interval": 0.2, "retention": rb.Retention(completed=0)}
                if args.prune
                else {}
            ),
        )
        log_line(args.log, f"worker {os.getpid()} {w.node.id}")
        await w.run()


async def insert(args: argparse.Namespace) -> None:
    """Say "ready", wait for a line on stdin, then dispatch one unique job; print the outcome."""
    bus = build_bus(args.dsn, args.schema, args.log, small=True)

    @bus.job(Work, name="procs.unique", unique=rb.Unique())
    async def unique(event: Work, ctx: rb.Context[Any]) -> None:
        return None

    async with bus:
        await bus.jobs.stats()  # connected and warm
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the test releases every process at once
        result = await bus.dispatch(Work(0, "noop"))
        outcome = next(r for r in result.jobs if r.handler == "procs.unique")
        print(f"{outcome.outcome} {outcome.id}", flush=True)


async def flood(args: argparse.Namespace) -> None:
    """Dispatch ``--count`` jobs in batches of 10 and single dispatches, as fast as it can."""
    bus = build_bus(args.dsn, args.schema, args.log, small=True)
    async with bus:
        sent = 0
        while sent < args.count:
            if sent % 20 == 0:
                await bus.dispatch(Work(sent))
                sent += 1
            else:
                await bus.dispatch_many([Work(sent + i) for i in range(10)])
                sent += 10
        print(f"sent {sent}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["worker", "insert", "flood"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", default=None)
    parser.add_argument("--log", required=True)
    parser.add_argument("--node", default="proc")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--heartbeat", type=float, default=0.3)
    parser.add_argument("--ttl", type=float, default=1.5)
    parser.add_argument("--max-rescues", type=int, default=3)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--prune", action="store_true")
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    commands = {"worker": worker, "insert": insert, "flood": flood}
    asyncio.run(commands[args.command](args))


if __name__ == "__main__":
    main()
