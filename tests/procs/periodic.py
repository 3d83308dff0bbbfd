"""A worker process with a schedule every half second: ``python -m tests.procs.periodic ...``.

Its job handler appends ``run SLOT PID`` to ``--log`` for every run, so the test can count
executions per slot across processes; the database's jobs say how often each slot was
dispatched.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import relaybus as rb
from tests.procs.app import log_line


@dataclass(frozen=True)
class Beat(rb.Event, name="procs.beat"):
    slot: str


def build_bus(dsn: str, schema: str, log: str, missed: str = "all") -> rb.Bus[Any]:
    bus: rb.Bus[Any] = rb.Bus(store=rb.PostgresStore(dsn, schema=schema))

    def beat(slot: datetime) -> Beat:
        return Beat(slot.isoformat())

    bus.every(0.5, beat, name="procs.every-half-second", missed=missed)

    @bus.job(Beat, name="procs.beat", timeout=None, backoff=rb.Constant(0))
    async def run(event: Beat, ctx: rb.Context[Any]) -> None:
        log_line(log, f"run {event.slot} {os.getpid()}")

    return bus


async def worker(args: argparse.Namespace) -> None:
    bus = build_bus(args.dsn, args.schema, args.log, args.missed)
    async with bus:
        w = bus.worker(
            node=args.node,
            poll_interval=0.2,
            heartbeat_interval=0.2,
            node_ttl=args.ttl,
            rescue_interval=0.5,
            handle_signals=True,
        )
        log_line(args.log, f"worker {os.getpid()} {w.node.id}")
        await w.run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--node", default="proc")
    parser.add_argument("--ttl", type=float, default=1.0)
    parser.add_argument("--missed", default="all")
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    asyncio.run(worker(parser.parse_args()))


if __name__ == "__main__":
    main()
