# ruff: noqa: ASYNC110, ASYNC220 - a harness: it starts worker processes and polls the database
"""Group D: relaybus on MySQL/MariaDB (asyncmy and aiomysql) next to relaybus on PostgreSQL, in
one run, one table: ``python -m benchmarks.mysql [--quick]``.

Per store and round (rounds interleave the stores, so noise on the shared machine falls on all):

- **single**: N ``await bus.dispatch(e)`` one after another (each its own transaction);
- **batch**: 20 x ``await bus.dispatch_many(1,000 events)``;
- **process (1 / 2 workers)**: that backlog run by 1 or 2 worker *processes* (concurrency 10
  each, no-op handler), timed from the start signal until no job is unfinished;
- **latency p50**: one idle worker process; jobs enqueued at a steady 100/s for 5 s carry
  ``time.time()``; the handler reports enqueue-to-start.

relaybus only (no MySQL peer exists for Python outside Django). Fresh tables per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import relaybus as rb

from ._common import GroupResult, Table, fmt_num, machine_facts

PG_DSN = os.environ.get("RELAYBUS_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_DSN = os.environ.get("RELAYBUS_BENCH_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")
STORES = ("postgres", "mysql-asyncmy", "mysql-aiomysql")


@dataclass(frozen=True)
class Tick(rb.Event, name="bench.mysql.tick"):
    n: int
    sent: float = 0.0


def make_store(kind: str, prefix: str = "bench_") -> Any:
    if kind == "postgres":
        return rb.PostgresStore(PG_DSN, prefix=prefix)
    driver = kind.split("-", 1)[1]
    return rb.MySQLStore(MYSQL_DSN, prefix=prefix, driver=driver)


def make_bus(store: Any, on_run: Any = None) -> rb.Bus[None]:
    bus: rb.Bus[None] = rb.Bus(store=store)

    @bus.job(Tick, name="bench.noop", timeout=None)
    async def noop(event: Tick, ctx: rb.Context[None]) -> None:
        if on_run is not None:
            on_run(event)

    return bus


async def fresh(kind: str) -> None:
    """Empty tables for ``kind`` (migrated)."""
    store = make_store(kind)
    await store.migrate()
    await store.open()
    try:
        if kind == "postgres":
            async with store.pool.acquire() as conn:
                await conn.execute("TRUNCATE bench_jobs, bench_nodes, bench_leader")
        else:
            async with store._executor.pool.borrow() as conn, conn.cursor() as cur:
                for table in ("bench_jobs", "bench_nodes", "bench_leader", "bench_queue_pauses"):
                    await cur.execute(f"TRUNCATE TABLE {table}")
    finally:
        await store.close()


#: Whether any job is unfinished: one row through an index, cheap enough to ask every 10 ms
#: while workers run (the admin API's stats count every row, which would load the server
#: being measured). Benchmark code, not the library: it may read the tables directly.
_UNFINISHED = (
    "SELECT 1 FROM bench_jobs"
    " WHERE state IN ('available', 'running', 'retryable', 'scheduled') LIMIT 1"
)


async def remaining(store: Any) -> bool:
    if isinstance(store, rb.PostgresStore):
        async with store.pool.acquire() as conn:
            return await conn.fetchval(_UNFINISHED) is not None
    async with store._executor.pool.borrow() as conn, conn.cursor() as cur:
        await cur.execute(_UNFINISHED)
        return bool(await cur.fetchall())


async def single(kind: str, n: int) -> float:
    await fresh(kind)
    async with make_bus(make_store(kind)) as bus:
        started = time.perf_counter()
        for i in range(n):
            await bus.dispatch(Tick(i))
        return n / (time.perf_counter() - started)


async def batch(kind: str, batches: int, size: int = 1000) -> float:
    await fresh(kind)
    async with make_bus(make_store(kind)) as bus:
        started = time.perf_counter()
        for b in range(batches):
            await bus.dispatch_many([Tick(b * size + i) for i in range(size)])
        return batches * size / (time.perf_counter() - started)


def _worker_cmd(kind: str, mode: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.mysql", "--worker", kind, "--mode", mode]


async def process(kind: str, workers: int, n: int) -> float:
    await fresh(kind)
    async with make_bus(make_store(kind)) as bus:
        for b in range(0, n, 1000):
            await bus.dispatch_many([Tick(b + i) for i in range(min(1000, n - b))])
        procs = [
            subprocess.Popen(_worker_cmd(kind, "process"), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
            for _ in range(workers)
        ]  # fmt: skip
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        started = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        while await remaining(bus.store):
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        return n / elapsed


async def latency(kind: str, seconds: float, rate: float) -> float:
    await fresh(kind)
    proc = subprocess.Popen(_worker_cmd(kind, "latency"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == b"ready"
    async with make_bus(make_store(kind)) as bus:
        count = int(seconds * rate)
        start = time.perf_counter()
        for i in range(count):
            await bus.dispatch(Tick(i, time.time()))
            delay = start + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        while await remaining(bus.store):
            await asyncio.sleep(0.01)
    proc.stdin.write(b"stop\n")
    proc.stdin.flush()
    out, _ = proc.communicate(timeout=30)
    samples = json.loads(out.decode().strip().splitlines()[-1])
    return statistics.median(samples) * 1000


async def worker_main(kind: str, mode: str) -> None:
    lat: list[float] = []

    def on_run(event: Tick) -> None:
        if event.sent:
            lat.append(time.time() - event.sent)

    bus = make_bus(make_store(kind), on_run)
    async with bus:
        print("ready", flush=True)
        if mode == "process":
            await asyncio.to_thread(sys.stdin.readline)
        async with bus.worker(queues={"default": 10}, poll_interval=1.0):
            await asyncio.to_thread(sys.stdin.readline)
    print(json.dumps(lat), flush=True)


async def run(quick: bool, stores: tuple[str, ...]) -> dict[str, dict[str, float]]:
    rounds = 1 if quick else 3
    single_n, batches, process_n = (300, 5, 5000) if quick else (1000, 20, 20000)
    results: dict[str, dict[str, list[float]]] = {s: {} for s in stores}
    for r in range(rounds):
        for kind in stores:
            measures = {
                "single/s": await single(kind, single_n),
                "batch/s": await batch(kind, batches),
                "process 1w/s": await process(kind, 1, process_n),
                "process 2w/s": await process(kind, 2, process_n),
                "latency p50 ms": await latency(kind, 5.0, 100.0),
            }
            for key, value in measures.items():
                results[kind].setdefault(key, []).append(value)
            print(f"round {r + 1} {kind}: {measures}", file=sys.stderr, flush=True)
    return {k: {m: statistics.median(v) for m, v in ms.items()} for k, ms in results.items()}


def table(medians: dict[str, dict[str, float]]) -> str:
    metrics = ["single/s", "batch/s", "process 1w/s", "process 2w/s", "latency p50 ms"]
    lines = ["| store | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    base = medians.get("postgres", {})
    for kind, values in medians.items():
        cells = []
        for m in metrics:
            cell = f"{values[m]:,.1f}"
            if kind != "postgres" and m in base:
                cell += f" ({values[m] / base[m]:.2f}x)"
            cells.append(cell)
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: (metric, need, higher is better): MySQLStore on the default driver against PostgresStore,
#: measured in the same rounds (issue targets).
TARGETS = (
    ("process 1w/s", 0.5, True),
    ("process 2w/s", 0.5, True),
    ("batch/s", 0.5, True),
    ("latency p50 ms", 2.0, False),
)


def run_group(*, quick: bool) -> GroupResult:
    """Group D of ``python -m benchmarks``: the table above, the targets, the driver choice."""
    medians = asyncio.run(run(quick, STORES))
    base = medians["postgres"]
    headers = ["store", "single/s", "batch/s", "process 1w/s", "process 2w/s", "latency p50 ms"]
    rows = []
    for kind, values in medians.items():
        cells = [kind]
        for metric in headers[1:]:
            cell = fmt_num(values[metric], 1 if "latency" in metric else 0)
            if kind != "postgres":
                cell += f" ({values[metric] / base[metric]:.2f}x)"
            cells.append(cell)
        rows.append(cells)
    mine = medians["mysql-asyncmy"]
    targets: list[tuple[str, str, bool | None]] = []
    for metric, need, higher in TARGETS:
        ratio = mine[metric] / base[metric]
        what = f">= {need}x PostgresStore" if higher else f"<= {need}x PostgresStore's"
        targets.append((
            f"MySQLStore (asyncmy) {metric}: {what}",
            f"{fmt_num(mine[metric], 1)} vs {fmt_num(base[metric], 1)} = {ratio:.2f}x",
            ratio >= need if higher else ratio <= need,
        ))
    rounds = 1 if quick else 3
    return GroupResult(
        name="mysql",
        title="D. MySQL/MariaDB: relaybus on MySQLStore next to PostgresStore",
        intro=[
            "`python -m benchmarks --only mysql` (or `python -m benchmarks.mysql [--quick]` for "
            "the table alone). relaybus on PostgreSQL and on MariaDB with each driver, the stores "
            f"interleaved in every round ({rounds} round(s)): single enqueue, batch enqueue "
            "(1,000 per `dispatch_many`), processing by 1 and 2 worker processes (concurrency 10 "
            "each, no-op handler, timed until no job is unfinished), and the p50 enqueue-to-start "
            "latency of an idle worker process while jobs arrive at 100/s. Ratios are against "
            "PostgresStore in the same run. No Python peer runs on MySQL outside Django.",
        ],
        tables=[Table("MySQLStore and PostgresStore (medians of rounds)", headers, rows)],
        facts=machine_facts(),
        raw={"medians": medians},
        targets=targets,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--worker", default=None)
    parser.add_argument("--mode", default="process")
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(args.worker, args.mode))
        return
    medians = asyncio.run(run(args.quick, tuple(args.stores.split(","))))
    print(table(medians))


if __name__ == "__main__":
    main()
