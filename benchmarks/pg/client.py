"""One benchmark process driving one system: ``python -m benchmarks.pg.client --system S --dsn D
--mode MODE ...``. Standard library only besides the system's own library (the Oban process runs
under Python 3.12 without relaybus).

Protocol: the process prints JSON lines on stdout. It sets itself up, prints ``{"event":
"ready"}`` and waits for ``go`` on stdin (the start barrier: all processes of a measurement are
ready before any starts). Enqueue modes then run and print ``{"event": "result", ...}`` and exit.
The worker mode prints ``{"event": "first"}`` when its first job starts (and
``{"event": "checkpoint"}`` after ``--checkpoint`` jobs), and runs until ``stop`` arrives on
stdin; it then stops the worker gracefully and prints its result. Enqueue modes keep their
connections open after the result until ``exit`` arrives, so that the PostgreSQL backends' CPU
can still be read.

Modes: ``install``, ``enqueue-single``, ``enqueue-batch``, ``worker``, ``produce`` (a steady
``--rate`` of single enqueues for ``--duration`` seconds, the enqueue time in each payload).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import sys
import threading
import time
from typing import Any

from .._common import cpu_self, now
from . import hooks


def emit(event: str, **data: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


class Commands:
    """Lines from stdin, delivered to the event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, line.strip())
        self.loop.call_soon_threadsafe(self.queue.put_nowait, "eof")

    async def expect(self, word: str) -> None:
        while True:
            got = await self.queue.get()
            if got == word:
                return
            if got == "eof":
                raise SystemExit(f"stdin closed while waiting for {word!r}")


class WorkerStats:
    def __init__(self, checkpoint: int, latency: bool,
                 profile: cProfile.Profile | None = None) -> None:
        self.profile = profile
        self.count = 0
        self.first: float | None = None
        self.last = 0.0
        self.cpu_first = 0.0
        self.checkpoint = checkpoint
        self.latency = latency
        self.latencies: list[float] = []

    def on_job(self, i: int, t: float) -> None:
        stamp = time.time()
        if self.first is None:
            self.first = stamp
            self.cpu_first = cpu_self()
            emit("first", t=stamp)
            if self.profile is not None:  # profile the steady state, not the start-up
                self.profile.enable()
        self.count += 1
        self.last = stamp
        if self.latency and i >= 0:  # negative indexes are the producer's warm-up jobs
            self.latencies.append(stamp - t)
        if self.count == self.checkpoint:
            emit("checkpoint", n=self.count, t=stamp, cpu=cpu_self() - self.cpu_first)


async def main(args: argparse.Namespace) -> None:
    module = importlib.import_module(f"benchmarks.pg.sys_{args.system}")
    adapter = module.Adapter(args.dsn)
    if args.mode == "install":
        await adapter.install()
        emit("result", ok=True)
        return
    commands = Commands()

    if args.mode in ("enqueue-single", "enqueue-batch", "produce"):
        await adapter.open_client()
        # warm up outside the measurement: prepared statements, pool connections
        if args.mode == "enqueue-batch":
            await adapter.enqueue_batch([(-k, 0.0) for k in range(1, 11)])
        else:
            for k in range(1, 11):
                await adapter.enqueue_one(-k, 0.0)
        profile = cProfile.Profile(time.thread_time) if args.profile else None
        emit("ready")
        await commands.expect("go")
        if profile is not None:
            profile.enable()
        c0, t0 = cpu_self(), now()
        lag = 0.0
        if args.mode == "enqueue-single":
            for i in range(args.n):
                await adapter.enqueue_one(i, 0.0)
        elif args.mode == "enqueue-batch":
            for start in range(0, args.n, args.batch):
                items = [(i, 0.0) for i in range(start, min(args.n, start + args.batch))]
                await adapter.enqueue_batch(items)
        else:
            total = int(args.rate * args.duration)
            for i in range(total):
                delay = t0 + i / args.rate - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    lag = max(lag, -delay)
                await adapter.enqueue_one(i, time.time())
        elapsed, cpu = now() - t0, cpu_self() - c0
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        emit("result", elapsed=elapsed, cpu=cpu, lag=lag)
        # keep the connections (and so their PostgreSQL backends) until the CPU is read
        await commands.expect("exit")
        await adapter.close_client()
        return

    if args.mode == "worker":
        profile = cProfile.Profile(time.thread_time) if args.profile else None
        stats = WorkerStats(args.checkpoint, args.latency, profile)
        hooks.set_callback(stats.on_job)
        emit("ready")
        await commands.expect("go")
        await adapter.start_worker(args.concurrency)
        emit("started")
        await commands.expect("stop")
        cpu = cpu_self() - stats.cpu_first if stats.first is not None else 0.0
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        await adapter.stop_worker()
        # what an adapter measured of its own system (relaybus: how long its claims took)
        extra = adapter.worker_figures(stats.first, stats.last) \
            if hasattr(adapter, "worker_figures") and stats.first is not None else {}
        emit(
            "result",
            count=stats.count,
            first=stats.first,
            last=stats.last,
            cpu=cpu,
            latencies=stats.latencies,
            **extra,
        )
        return
    raise SystemExit(f"unknown mode {args.mode!r}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg.client")
    parser.add_argument("--system", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--checkpoint", type=int, default=0)
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--profile", default="", help="worker: write cProfile stats here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
