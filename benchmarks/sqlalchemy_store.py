# ruff: noqa: ASYNC110, ASYNC220 - a harness: it starts worker processes and polls the database
"""SQLAlchemyStore against the native store on the same database, in one run:
``python -m benchmarks.sqlalchemy_store [--quick] [--databases postgres,mariadb,sqlite]``.

Pairs (same tables, same prefix, emptied before each measurement): PostgresStore vs
SQLAlchemyStore on ``postgresql+asyncpg``; MySQLStore (asyncmy) vs ``mysql+asyncmy`` on
MariaDB; SQLiteStore vs ``sqlite+aiosqlite``. Per store and round (rounds interleave the
stores, so noise on the shared machine falls on all):

- **batch**: 20 x ``await bus.dispatch_many(1,000 events)``;
- **process**: that backlog run by one worker *process* (concurrency 10, no-op handler), timed
  from the start signal until no job is unfinished.

Target: SQLAlchemyStore at least 0.75x its native store on both, on each database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import relaybus as rb

from ._common import GroupResult, Table, fmt_num, machine_facts

PG_DSN = os.environ.get("RELAYBUS_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_DSN = os.environ.get("RELAYBUS_BENCH_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")
SQLITE_PATH = Path(tempfile.gettempdir()) / f"relaybus-bench-sa-{os.getuid()}.db"
PREFIX = "bench_sa_"
DATABASES = ("postgres", "mariadb", "sqlite")
TABLES = ("jobs", "nodes", "leader", "queue_pauses")


def _url(database: str) -> str:
    if database == "postgres":
        return "postgresql+asyncpg://" + PG_DSN.split("://", 1)[1]
    if database == "mariadb":
        return "mysql+asyncmy://" + MYSQL_DSN.split("://", 1)[1]
    return f"sqlite+aiosqlite:///{SQLITE_PATH}"


@dataclass(frozen=True)
class Tick(rb.Event, name="bench.sa.tick"):
    n: int


class Stores:
    """The store of ``kind`` (``database/native`` or ``database/sqlalchemy``) and its engine."""

    def __init__(self, kind: str) -> None:
        self.database, self.flavour = kind.split("/")
        self.engine: AsyncEngine | None = None

    def make(self) -> Any:
        if self.flavour == "sqlalchemy":
            self.engine = create_async_engine(_url(self.database), pool_size=10)
            return rb.SQLAlchemyStore(self.engine, prefix=PREFIX)
        if self.database == "postgres":
            return rb.PostgresStore(PG_DSN, prefix=PREFIX)
        if self.database == "mariadb":
            return rb.MySQLStore(MYSQL_DSN, prefix=PREFIX)
        return rb.SQLiteStore(SQLITE_PATH, prefix=PREFIX)

    async def dispose(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()


def make_bus(store: Any) -> rb.Bus[None]:
    bus: rb.Bus[None] = rb.Bus(store=store)

    @bus.job(Tick, name="bench.noop", timeout=None)
    async def noop(event: Tick, ctx: rb.Context[None]) -> None:
        return None

    return bus


async def fresh(database: str) -> None:
    """Empty, migrated tables (shared by both stores of ``database``)."""
    engine = create_async_engine(_url(database))
    try:
        store = rb.SQLAlchemyStore(engine, prefix=PREFIX)
        await store.migrate()
        # TRUNCATE where there is one: no dead rows left for the next measurement.
        empty = "DELETE FROM" if database == "sqlite" else "TRUNCATE TABLE"
        async with engine.begin() as conn:
            for table in TABLES:
                await conn.exec_driver_sql(f"{empty} {PREFIX}{table}")
    finally:
        await engine.dispose()


#: "Anything unfinished?" through an index (not a count of every row every 10 ms).
_UNFINISHED = (
    f"SELECT 1 FROM {PREFIX}jobs"  # noqa: S608 - a constant prefix
    " WHERE state IN ('available', 'running', 'retryable', 'scheduled') LIMIT 1"
)


async def remaining(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return (await conn.exec_driver_sql(_UNFINISHED)).first() is not None


async def batch(kind: str, batches: int, size: int = 1000) -> float:
    stores = Stores(kind)
    await fresh(stores.database)
    try:
        async with make_bus(stores.make()) as bus:
            started = time.perf_counter()
            for b in range(batches):
                await bus.dispatch_many([Tick(b * size + i) for i in range(size)])
            return batches * size / (time.perf_counter() - started)
    finally:
        await stores.dispose()


async def process(kind: str, n: int) -> float:
    stores = Stores(kind)
    await fresh(stores.database)
    try:
        async with make_bus(stores.make()) as bus:
            for b in range(0, n, 1000):
                await bus.dispatch_many([Tick(b + i) for i in range(min(1000, n - b))])
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.sqlalchemy_store", "--worker", kind],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == b"ready"
            started = time.perf_counter()
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            watch = create_async_engine(_url(stores.database), pool_size=1)
            try:
                while await remaining(watch):
                    await asyncio.sleep(0.01)
                elapsed = time.perf_counter() - started
            finally:
                await watch.dispose()
            proc.terminate()
            proc.wait(timeout=30)
            return n / elapsed
    finally:
        await stores.dispose()


async def worker_main(kind: str) -> None:
    stores = Stores(kind)
    try:
        async with make_bus(stores.make()) as bus:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            async with bus.worker(queues={"default": 10}, poll_interval=1.0):
                await asyncio.to_thread(sys.stdin.readline)
    finally:
        await stores.dispose()


async def run(quick: bool, databases: tuple[str, ...]) -> dict[str, dict[str, float]]:
    rounds = 1 if quick else 3
    batches, process_n = (5, 5000) if quick else (20, 20000)
    kinds = [f"{db}/{flavour}" for db in databases for flavour in ("native", "sqlalchemy")]
    results: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}
    for r in range(rounds):
        for kind in kinds:
            measures = {
                "batch/s": await batch(kind, batches),
                "process/s": await process(kind, process_n),
            }
            for key, value in measures.items():
                results[kind].setdefault(key, []).append(value)
            print(f"round {r + 1} {kind}: {measures}", file=sys.stderr, flush=True)
    return {k: {m: statistics.median(v) for m, v in ms.items()} for k, ms in results.items()}


def table(medians: dict[str, dict[str, float]]) -> str:
    metrics = ["batch/s", "process/s"]
    lines = ["| store | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for kind, values in medians.items():
        database, flavour = kind.split("/")
        base = medians.get(f"{database}/native", {})
        cells = []
        for m in metrics:
            cell = f"{values[m]:,.0f}"
            if flavour == "sqlalchemy" and m in base:
                cell += f" ({values[m] / base[m]:.2f}x)"
            cells.append(cell)
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


NOTE = (
    "On SQLite the native store runs each unit of work (look, `BEGIN IMMEDIATE`, run ends, "
    "claim, `COMMIT`) in one hop to its connection thread; so does SQLAlchemyStore on "
    "`sqlite+aiosqlite` for its own work (on aiosqlite's thread, with the engine's DBAPI "
    "connection), where SQLAlchemy's adapter would take about three hops per statement. On "
    "PostgreSQL and MariaDB the database dominates."
)
#: SQLAlchemyStore against its native store (issue target), per database and metric.
TARGET = 0.75


def run_group(*, quick: bool) -> GroupResult:
    """Group E of ``python -m benchmarks``: the table above and the targets."""
    medians = asyncio.run(run(quick, DATABASES))
    headers = ["store", "batch/s", "process/s"]
    rows = []
    targets: list[tuple[str, str, bool | None]] = []
    for kind, values in medians.items():
        database, flavour = kind.split("/")
        base = medians[f"{database}/native"]
        cells = [kind]
        for metric in headers[1:]:
            cell = fmt_num(values[metric], 0)
            if flavour == "sqlalchemy":
                ratio = values[metric] / base[metric]
                cell += f" ({ratio:.2f}x)"
                targets.append((
                    f"SQLAlchemyStore on {database} {metric}: >= {TARGET}x its native store",
                    f"{fmt_num(values[metric], 0)} vs {fmt_num(base[metric], 0)} = {ratio:.2f}x",
                    ratio >= TARGET,
                ))  # fmt: skip
            cells.append(cell)
        rows.append(cells)
    rounds = 1 if quick else 3
    return GroupResult(
        name="sqlalchemy",
        title="E. SQLAlchemyStore next to the native store on the same database",
        intro=[
            "`python -m benchmarks --only sqlalchemy` (or `python -m benchmarks.sqlalchemy_store "
            "[--quick]` for the table alone). Each database's native store and SQLAlchemyStore "
            "(`postgresql+asyncpg`, `mysql+asyncmy` on MariaDB, `sqlite+aiosqlite`) on the same "
            f"tables, interleaved in every round ({rounds} round(s)): batch enqueue (1,000 per "
            "`dispatch_many`) and processing by one worker process (concurrency 10, no-op "
            "handler, timed until no job is unfinished). Ratios are against the native store in "
            "the same run.",
            NOTE,
        ],
        tables=[Table("SQLAlchemyStore and the native stores (medians of rounds)", headers, rows)],
        facts=machine_facts(),
        raw={"medians": medians},
        targets=targets,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--worker", default=None)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(args.worker))
        return
    medians = asyncio.run(run(args.quick, tuple(args.databases.split(","))))
    print(table(medians))


if __name__ == "__main__":
    main()
