"""Group C: relaybus on PostgreSQL side by side with PgQueuer, Procrastinate, Chancy and Oban for
Python, in one run, on the same server.

Each system runs in its own processes (``benchmarks/pg/client.py``; Oban under Python 3.12 from
its own venv), through its own public API (``benchmarks/pg/sys_<name>.py`` says how), against its
own database: ``bench_<name>_tpl`` gets the system's schema once per run, and every measurement
starts from a fresh copy of it (``CREATE DATABASE bench_<name> TEMPLATE bench_<name>_tpl``).
Rounds interleave the systems, so noise on this shared 2-core machine falls on all of them.

Per system and round:

- **enqueue one at a time**: one client process, N single enqueues (each its own transaction,
  the system's ordinary call), timed inside the client;
- **enqueue in batches of 1,000**: one client, 20,000 jobs in 20 calls of the system's batch API;
  in the same round relaybus's floors are measured with the same client: a bare prepared asyncpg
  ``INSERT`` (one job) and ``INSERT ... SELECT FROM unnest`` (a batch, ids returned) of the rows
  relaybus inserts, and a bare asyncpg ``COPY`` of the batch rows (no ids returned), all into
  relaybus's own table (``benchmarks/pg/sys_bare_asyncpg.py``, ``sys_bare_copy.py``);
- **processing, 1 and 2 worker processes**: the jobs of a batch enqueue are already there; the
  worker processes (concurrency 10 each) are started and synchronised by a start barrier; the time
  runs from the first handler start to the moment the database shows no unfinished job (polled
  every eighth of the time the rest should take at the rate so far, 2-200 ms apart);
- **latency**: one idle worker process; a client enqueues one job at a time at a steady 200/s for
  10 s, with ``time.time()`` in the payload; the handler takes the difference. In the same
  round relaybus's floor is measured the same way: a bare LISTEN/NOTIFY queue
  (``benchmarks/pg/sys_bare_notify.py``: insert + ``pg_notify`` of the id in one statement; a
  listening connection, and one more that claims the notified id), the least any notify-driven
  queue does per job on this machine;
- **CPU**: the client's or workers' own CPU (``getrusage``, from the first handler start), and
  PostgreSQL's: the sum of the CPU of the backends (and autovacuum workers) of the benchmark
  database, read from /proc over the same window (the poller's own backend excluded; shared
  WAL writer and checkpointer not counted).

The flat-cost check runs relaybus alone (and the fastest peer if asked): a fresh database with a
backlog of 5,000, 200,000 or 1,000,000 jobs, one worker process, CPU of the worker and of
PostgreSQL over its first 5,000 jobs.

Utilisation, per processing row: jobs/s ÷ (cores ÷ (worker + PostgreSQL CPU per job)), i.e. the
share of the rate the machine's CPU would allow if nothing ever waited. For relaybus the worker
also times its claims (``Driver.fetch``: the statement that finishes the last runs and claims
the next, one at a time per node): the share of the run with a claim in flight says how much
of the wait is the worker waiting on that one statement and its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import oban_env
from ._common import (
    PROFILE_HEADERS,
    PROFILE_NOTE,
    ROOT,
    GroupResult,
    PgCpu,
    Stat,
    Table,
    fmt_num,
    fmt_ratio,
    fmt_stat,
    log,
    machine_facts,
    package_version,
    percentile,
    profile_rows,
)

BASE_DSN = os.environ.get("RELAYBUS_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ALL_SYSTEMS = ("relaybus", "pgqueuer", "procrastinate", "chancy", "oban")
PEERS = ("pgqueuer", "procrastinate", "chancy", "oban")
PACKAGES = {
    "relaybus": "relaybus",
    "pgqueuer": "pgqueuer",
    "procrastinate": "procrastinate",
    "chancy": "chancy",
    "oban": "oban",
}
# SQL counting the jobs not yet finished (the completion is visible once this reaches 0).
REMAINING_SQL = {
    "relaybus": "SELECT count(*) FROM relaybus_jobs "
    "WHERE state NOT IN ('completed', 'cancelled', 'discarded')",
    "pgqueuer": "SELECT count(*) FROM pgqueuer",
    "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
    "chancy": "SELECT count(*) FROM chancy_jobs WHERE state NOT IN ('succeeded', 'failed')",
    "oban": "SELECT count(*) FROM oban_jobs "
    "WHERE state NOT IN ('completed', 'discarded', 'cancelled')",
}
SUBPROCESS_TIMEOUT = 600.0
# How each system is driven (the code is in benchmarks/pg/sys_<name>.py).
SETTINGS = {
    "relaybus": "`rb.PostgresStore(dsn)` (asyncpg pool, default sizes); one `@bus.job` handler; "
    "`await bus.dispatch(event)`; `await bus.dispatch_many(events)` for batches; worker "
    "`bus.worker(queues={'default': 10})`, other options default.",
    "pgqueuer": "one asyncpg connection (`AsyncpgDriver`, as PgQueuer's own benchmark "
    "connects); `Queries.enqueue(entrypoint, payload, priority)` and its list form for batches; "
    "worker `PgQueuer.run(batch_size=10)`, its defaults: it has no per-process concurrency "
    "setting but `max_concurrent_tasks`, which must be >= 2x the batch size, and a cap of 10 "
    "(batches of 5) measured 2-3x slower here, so PgQueuer gets its faster default (batches of "
    "10, about 10-20 no-op jobs in flight); durability `durable` (default, logged tables).",
    "procrastinate": "`PsycopgConnector` (psycopg 3 pool, defaults); `task.defer_async(...)`; "
    "`task.batch_defer_async(*kwargs)` for batches; worker "
    "`app.run_worker_async(concurrency=10, listen_notify=True)`, other options default "
    "(finished jobs kept).",
    "chancy": "`Chancy(dsn)` (psycopg 3 pool, default plugins); `chancy.push(job)`; "
    "`chancy.push_many(jobs, batch_size=1000)` for batches; queue `Queue('default', "
    "concurrency=10, executor=Chancy.Executor.Async, polling_interval=1, eager_polling=True)` "
    "(the default process-pool executor and 5 s polling suit CPU-bound jobs, not no-op async "
    "ones); `Worker(chancy)`.",
    "oban": "run under Python 3.12 from `.venv/py312-oban`; `Oban.create_pool(dsn)` (psycopg 3 "
    "pool); `oban.enqueue(Bench.new(args))`; `oban.enqueue_many(jobs)` for batches; worker "
    "`Oban(pool=pool, queues={'default': 10})`, other options default.",
}


@dataclass(frozen=True)
class Plan:
    rounds: int
    single_n: int
    batch_n: int
    process_n: int
    latency_s: float
    latency_rate: float
    flat_backlogs: tuple[int, ...]
    flat_measure: int
    slow_process_rounds: int  # processing rounds for peers well below the fastest peer
    process_deadline: float  # seconds: a slower system's rate is taken over this window
    flat_rounds: int


FULL = Plan(3, 1_500, 20_000, 20_000, 10.0, 200.0, (5_000, 200_000, 1_000_000), 5_000, 1, 20.0,
            3)
QUICK = Plan(1, 300, 1_000, 1_000, 2.0, 200.0, (1_000, 10_000), 1_000, 1, 6.0, 1)


def dsn_for(database: str) -> str:
    parts = urlsplit(BASE_DSN)
    return urlunsplit(parts._replace(path="/" + database))


# -- processes ------------------------------------------------------------------------------------


class Client:
    """One ``benchmarks.pg.client`` process and its JSON-line events."""

    def __init__(self, proc: asyncio.subprocess.Process, label: str) -> None:
        self.proc = proc
        self.label = label
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stderr: list[str] = []
        self._reader = asyncio.create_task(self._read())
        self._err = asyncio.create_task(self._read_err())

    @classmethod
    async def start(cls, system: str, interpreter: str, database: str, mode: str,
                    **options: Any) -> Client:
        args = [interpreter, "-m", "benchmarks.pg.client", "--system", system,
                "--dsn", dsn_for(database), "--mode", mode]
        for key, value in options.items():
            if value is True:
                args.append(f"--{key}")
            elif value is not False and value is not None:
                args.extend([f"--{key}", str(value)])
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # start-up speed of repeated processes
        env["PYTHONPATH"] = str(ROOT)
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=str(ROOT), env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=2**26,
        )
        return cls(proc, f"{system}/{mode}")

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event["_at"] = time.time()
            await self.events.put(event)
        await self.events.put({"event": "exit"})

    async def _read_err(self) -> None:
        assert self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                break
            self.stderr.append(line.decode(errors="replace"))
            del self.stderr[:-40]

    async def expect(self, name: str, within: float = SUBPROCESS_TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get()
                if event["event"] == name:
                    return event
                if event["event"] == "exit":
                    await self.proc.wait()
                    tail = "".join(self.stderr[-25:])
                    raise RuntimeError(
                        f"{self.label} exited (code {self.proc.returncode}) before {name!r}:\n"
                        f"{tail}"
                    )

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((word + "\n").encode())

    async def finish(self) -> None:
        with contextlib.suppress(Exception):
            self.send("exit")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(30):
                await self.proc.wait()
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for task in (self._reader, self._err):
            task.cancel()


# -- databases ------------------------------------------------------------------------------------


class Server:
    def __init__(self) -> None:
        self.admin: Any = None

    async def open(self) -> None:
        import asyncpg

        self.admin = await asyncpg.connect(BASE_DSN)

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.close()

    async def ensure(self) -> None:
        """Reconnect the admin connection if the server dropped it (other sessions' tests on
        this shared server restart PostgreSQL or terminate backends)."""
        if self.admin is not None and not self.admin.is_closed():
            return
        for attempt in range(30):
            try:
                await self.open()
                return
            except (OSError, Exception):
                if attempt == 29:
                    raise
                await asyncio.sleep(1.0)

    async def recreate(self, database: str, template: str | None = None) -> None:
        await self.ensure()
        await self.admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if template is None:
            await self.admin.execute(f'CREATE DATABASE "{database}"')
        else:
            await self.admin.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')

    async def drop(self, database: str) -> None:
        await self.ensure()
        await self.admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    async def facts(self) -> dict[str, str]:
        version = await self.admin.fetchval("SHOW server_version")
        out = {"postgresql": str(version)}
        for name in ("fsync", "synchronous_commit", "wal_level", "shared_buffers",
                     "max_connections"):
            out[name] = str(await self.admin.fetchval(f"SHOW {name}"))
        return out


# -- one system's measurements --------------------------------------------------------------------


@dataclass
class Samples:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.values.setdefault(key, []).append(value)

    def stat(self, key: str) -> Stat | None:
        data = self.values.get(key)
        return Stat.of(data) if data else None


def _poll_wait(initial: int, remaining: int, first_at: float) -> float:
    """How long the end-of-run poller waits before it looks again: an eighth of the time the
    rest should take at the rate so far (2 ms to 200 ms), so that the end is seen within a few
    ms however fast the system drains (a fixed 200 ms step quantised 0.7 s runs)."""
    elapsed = time.time() - first_at
    done = initial - remaining
    if done <= 0 or elapsed <= 0:
        return 0.02
    return min(0.2, max(0.002, remaining / (done / elapsed) / 8))


class Bench:
    def __init__(self, server: Server, system: str, interpreter: str) -> None:
        self.server = server
        self.system = system
        self.interpreter = interpreter
        self.db = f"bench_{system}"
        self.template = f"bench_{system}_tpl"
        self.samples = Samples()
        self.latencies: list[list[float]] = []
        self.partial: set[str] = set()

    async def client(self, mode: str, system: str | None = None, **options: Any) -> Client:
        return await Client.start(system or self.system, self.interpreter, self.db, mode,
                                  **options)

    async def prepare_template(self) -> None:
        await self.server.recreate(self.template)
        c = await Client.start(self.system, self.interpreter, self.template, "install")
        try:
            await c.expect("result", within=180)
        finally:
            await c.finish()

    async def fresh(self) -> None:
        await self.server.recreate(self.db, self.template)

    async def enqueue(self, mode: str, n: int, record: str,
                      profile: Path | None = None, system: str | None = None) -> None:
        """One client enqueues n jobs (``enqueue-single`` or ``enqueue-batch``); ``system``
        runs another adapter on this system's database (the bare asyncpg baseline)."""
        c = await self.client(mode, system, n=n, batch=1000,
                              profile=str(profile) if profile is not None else None)
        try:
            await c.expect("ready", within=120)
            pg = PgCpu(self.db)
            pg.start()
            c.send("go")
            # bounded: a client whose connection another session's test killed may hang
            res = await c.expect("result", within=max(180.0, n / 100))
            pg_cpu = pg.stop()
        finally:
            await c.finish()
        self.samples.add(f"{record}.rate", n / res["elapsed"])
        self.samples.add(f"{record}.cpu_us", res["cpu"] / n * 1e6)
        self.samples.add(f"{record}.pg_us", pg_cpu / n * 1e6)

    async def _poller(self) -> tuple[Any, int]:
        import asyncpg

        conn = await asyncpg.connect(dsn_for(self.db))
        pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
        return conn, pid

    async def process(self, workers: int, n: int, record: str, deadline: float,
                      profile: Path | None = None) -> None:
        """n pre-enqueued jobs (a batch-enqueue measurement first), then ``workers`` processes.

        A system that has not finished ``deadline`` seconds after its first job is stopped
        there, and its rate is the jobs completed (visible in the database) in that window.
        """
        await self.fresh()
        await self.enqueue("enqueue-batch", n, "batch")
        conn, poller_pid = await self._poller()
        clients = [
            await self.client("worker", concurrency=10,
                              profile=str(profile) if profile is not None else None)
            for _ in range(workers)
        ]
        sql = REMAINING_SQL[self.system]
        try:
            initial = int(await conn.fetchval(sql))
            for c in clients:
                await c.expect("ready", within=120)
            pg = PgCpu(self.db, exclude=[poller_pid])
            for c in clients:
                c.send("go")
            firsts = [asyncio.create_task(c.expect("first")) for c in clients]
            done, _ = await asyncio.wait(firsts, return_when=asyncio.FIRST_COMPLETED)
            pg.start()
            first_at = min(t.result()["t"] for t in done)
            stop_at = first_at + deadline
            async with asyncio.timeout(SUBPROCESS_TIMEOUT):
                while True:
                    remaining = int(await conn.fetchval(sql))
                    if remaining == 0 or time.time() >= stop_at:
                        break
                    await asyncio.sleep(min(max(0.001, stop_at - time.time()),
                                            _poll_wait(initial, remaining, first_at)))
            end_at = time.time()
            pg_cpu = pg.stop()
            for t in firsts:
                if not t.done():
                    t.cancel()
            for c in clients:
                c.send("stop")
            results = [await c.expect("result", within=120) for c in clients]
        finally:
            await conn.close()
            for c in clients:
                await c.finish()
        for t in firsts:
            if t.done() and not t.cancelled() and t.exception() is None:
                first_at = min(first_at, t.result()["t"])
        handled = sum(r["count"] for r in results)
        completed = initial - remaining
        elapsed = end_at - first_at
        self.samples.add(f"{record}.rate", completed / elapsed)
        self.samples.add(f"{record}.cpu_us", sum(r["cpu"] for r in results) / handled * 1e6)
        self.samples.add(f"{record}.pg_us", pg_cpu / completed * 1e6)
        self.samples.add(f"{record}.completed", completed)
        busy = [r["fetch_busy"] for r in results if "fetch_busy" in r]
        if busy:  # relaybus: each worker's share of the window with a claim in flight
            self.samples.add(f"{record}.fetch_busy", 100.0 * statistics.mean(busy))
            self.samples.add(f"{record}.fetch_ms", statistics.mean(r["fetch_ms"] for r in results))
            self.samples.add(f"{record}.fetch_jobs",
                             statistics.mean(r.get("fetch_jobs", 0.0) for r in results))
        if remaining:
            self.partial.add(record)

    async def latency(self, seconds: float, rate: float, record: str = "latency",
                      system: str | None = None) -> None:
        """An idle worker; a producer enqueues at ``rate`` for ``seconds``; enqueue-to-start
        percentiles. ``system`` runs another adapter on this system's database (the bare
        LISTEN/NOTIFY baseline)."""
        await self.fresh()
        worker = await self.client("worker", system, concurrency=10, latency=True)
        producer: Client | None = None
        try:
            await worker.expect("ready", within=120)
            worker.send("go")
            await worker.expect("started", within=120)
            await asyncio.sleep(1.0)  # idle: listening, nothing to do
            producer = await self.client("produce", system, rate=rate, duration=seconds)
            await producer.expect("ready", within=120)
            producer.send("go")
            res = await producer.expect("result", within=seconds * 10 + 60)
            await asyncio.sleep(1.0)
            worker.send("stop")
            wres = await worker.expect("result", within=120)
        finally:
            await worker.finish()
            if producer is not None:
                await producer.finish()
        lat = sorted(x * 1000 for x in wres["latencies"])
        expected = int(rate * seconds)
        if record == "latency":
            self.latencies.append(lat)
        self.samples.add(f"{record}.p50", percentile(lat, 50))
        self.samples.add(f"{record}.p95", percentile(lat, 95))
        self.samples.add(f"{record}.p99", percentile(lat, 99))
        self.samples.add(f"{record}.max", lat[-1] if lat else float("nan"))
        self.samples.add(f"{record}.missing", expected - len(lat))
        self.samples.add(f"{record}.producer_rate", expected / res["elapsed"])
        self.samples.add(f"{record}.producer_lag_ms", res["lag"] * 1000)

    async def flat(self, backlog: int, measure: int) -> None:
        await self.fresh()
        c = await self.client("enqueue-batch", n=backlog, batch=1000)
        try:
            await c.expect("ready", within=120)
            c.send("go")
            await c.expect("result", within=max(180.0, backlog / 100))
        finally:
            await c.finish()
        await self.server.ensure()
        await self.server.admin.execute("CHECKPOINT")
        w = await self.client("worker", concurrency=10, checkpoint=measure)
        try:
            await w.expect("ready", within=120)
            pg = PgCpu(self.db)
            w.send("go")
            first = await w.expect("first")
            pg.start()
            mark = await w.expect("checkpoint")
            pg_cpu = pg.stop()
            w.send("stop")
            await w.expect("result", within=300)
        finally:
            await w.finish()
        key = f"flat{backlog}"
        self.samples.add(f"{key}.rate", measure / max(1e-9, mark["t"] - first["t"]))
        self.samples.add(f"{key}.cpu_us", mark["cpu"] / measure * 1e6)
        self.samples.add(f"{key}.pg_us", pg_cpu / measure * 1e6)


# -- the group ---------------------------------------------------------------------------------


def _versions(oban_py: Path | None) -> dict[str, str]:
    out = {name: package_version(pkg) for name, pkg in PACKAGES.items() if name != "oban"}
    out["asyncpg"] = package_version("asyncpg")
    out["psycopg"] = package_version("psycopg")
    if oban_py is not None:
        import subprocess

        res = subprocess.run(
            [str(oban_py), "-c",
             "import importlib.metadata as m, platform;"
             "print(m.version('oban'), platform.python_version())"],
            capture_output=True, text=True,
        )
        if res.returncode == 0:
            version, py = res.stdout.split()
            out["oban"] = f"{version} (Python {py})"
    return out


async def _run(plan: Plan, systems: Sequence[str], quick: bool) -> dict[str, Any]:
    oban_py: Path | None = None
    skipped: dict[str, str] = {}
    if "oban" in systems:
        oban_py, reason = oban_env.ensure(verbose=True)
        if oban_py is None:
            skipped["oban"] = reason
            systems = [s for s in systems if s != "oban"]
    if "relaybus" in systems:
        try:
            import relaybus as rb

            rb.PostgresStore  # noqa: B018 - import check
        except (ImportError, AttributeError) as exc:
            skipped["relaybus"] = f"PostgresStore not available: {exc}"
            systems = [s for s in systems if s != "relaybus"]
    server = Server()
    await server.open()
    facts = await server.facts()
    benches: dict[str, Bench] = {}
    everyone: list[Bench] = []
    failed: dict[str, str] = {}
    try:
        for system in systems:
            interpreter = str(oban_py) if system == "oban" else sys.executable
            bench = Bench(server, system, interpreter)
            everyone.append(bench)
            log(f"[postgres] {system}: installing the schema into {bench.template}")
            try:
                await bench.prepare_template()
            except Exception as exc:
                log(f"[postgres] {system} FAILED to install: {exc}")
                failed[system] = f"install failed: {type(exc).__name__}: {exc}"
                continue
            benches[system] = bench
        profile_paths = {
            kind: ROOT / "benchmarks" / "results" / f"relaybus-pg-{kind}.prof"
            for kind in ("worker", "single", "batch")
        }
        started = time.monotonic()
        for r in range(plan.rounds):
            for system, bench in list(benches.items()):
                log(f"[postgres] round {r + 1}/{plan.rounds}: {system} "
                    f"({time.monotonic() - started:.0f} s)")
                try:
                    await _round(plan, benches, system, bench, r)
                except Exception as exc:  # one system failing must not sink the others
                    log(f"[postgres] {system} FAILED: {exc}")
                    failed[system] = f"{type(exc).__name__}: {str(exc).strip()[-600:]}"
                    del benches[system]
        if "relaybus" in benches:
            bench = benches["relaybus"]
            try:
                for r in range(plan.flat_rounds):
                    for backlog in plan.flat_backlogs:
                        log(f"[postgres] flat cost {r + 1}/{plan.flat_rounds}: relaybus, "
                            f"backlog {backlog:,} ({time.monotonic() - started:.0f} s)")
                        await _retry(f"flat cost {backlog}",
                                     functools.partial(bench.flat, backlog, plan.flat_measure))
                log("[postgres] relaybus: profiled runs (cProfile, untimed)")
                for path in profile_paths.values():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(OSError):
                        path.unlink()

                async def profiled_enqueues() -> None:
                    await bench.fresh()
                    await bench.enqueue("enqueue-single", plan.single_n, "profiled_single",
                                        profile=profile_paths["single"])
                    await bench.fresh()
                    await bench.enqueue("enqueue-batch", plan.batch_n, "profiled_batch",
                                        profile=profile_paths["batch"])

                await _retry("profiled enqueues", profiled_enqueues)
                await _retry("profiled worker run", lambda: bench.process(
                    1, plan.process_n, "profiled", plan.process_deadline,
                    profile=profile_paths["worker"]))
            except Exception as exc:
                log(f"[postgres] relaybus flat-cost/profile run FAILED: {exc}")
                failed["relaybus (flat cost, profile)"] = f"{type(exc).__name__}: {exc}"
    finally:
        for bench in everyone:
            with contextlib.suppress(Exception):
                await server.drop(bench.db)
                await server.drop(bench.template)
        await server.close()
    return {
        "facts": facts,
        "versions": _versions(oban_py),
        "skipped": skipped,
        "failed": failed,
        "plan": plan.__dict__,
        "samples": {b.system: b.samples.values for b in everyone if b.samples.values},
        "partial": {b.system: sorted(b.partial) for b in everyone if b.partial},
        "profiles": {
            kind: profile_rows(str(path), jobs)
            for kind, path, jobs in (
                ("worker", profile_paths["worker"], plan.process_n),
                ("single", profile_paths["single"], plan.single_n),
                ("batch", profile_paths["batch"], plan.batch_n),
            )
            if "relaybus" in benches and path.exists()
        },
    }


async def _retry(what: str, step: Callable[[], Awaitable[None]], attempts: int = 3) -> None:
    """Run one measurement; on a failure (typically the shared server restarted by another
    session's tests) wait and measure again from scratch. The failed attempt records nothing:
    samples are only added once a measurement completes."""
    for attempt in range(1, attempts + 1):
        try:
            await step()
            return
        except Exception as exc:
            if attempt == attempts:
                raise
            log(f"[postgres] {what} failed ({type(exc).__name__}: {exc}); retrying")
            await asyncio.sleep(3.0)


async def _round(plan: Plan, benches: dict[str, Bench], system: str, bench: Bench,
                 r: int) -> None:
    async def single() -> None:
        await bench.fresh()
        await bench.enqueue("enqueue-single", plan.single_n, "single")

    async def batch_only() -> None:
        await bench.fresh()
        await bench.enqueue("enqueue-batch", plan.batch_n, "batch")

    await _retry(f"{system} single enqueue", single)
    if system == "relaybus":  # its baseline, in the same round: a bare prepared INSERT

        async def bare() -> None:
            await bench.fresh()
            await bench.enqueue("enqueue-single", plan.single_n, "bare_single",
                                system="bare_asyncpg")

        await _retry("bare asyncpg single enqueue", bare)

        async def bare_batches() -> None:  # and for batches: INSERT ... unnest, and COPY
            for adapter, record in (("bare_asyncpg", "bare_batch"), ("bare_copy", "bare_copy")):
                await bench.fresh()
                await bench.enqueue("enqueue-batch", plan.batch_n, record, system=adapter)

        await _retry("bare asyncpg batch enqueue", bare_batches)
    if not _is_slow(benches, system) or r < plan.slow_process_rounds:
        await _retry(f"{system} processing, 1 worker",
                     lambda: bench.process(1, plan.process_n, "process1",
                                           plan.process_deadline))
        await _retry(f"{system} processing, 2 workers",
                     lambda: bench.process(2, plan.process_n, "process2",
                                           plan.process_deadline))
    else:
        log(f"[postgres] {system}: processing measured in {plan.slow_process_rounds} "
            "round(s) only (slow)")
        await _retry(f"{system} batch enqueue", batch_only)
    await _retry(f"{system} latency", lambda: bench.latency(plan.latency_s, plan.latency_rate))
    if system == "relaybus":  # its floor, in the same round: bare LISTEN/NOTIFY + claim by id
        await _retry("bare notify latency",
                     lambda: bench.latency(plan.latency_s, plan.latency_rate, "bare_latency",
                                           system="bare_notify"))


def _is_slow(benches: dict[str, Bench], system: str) -> bool:
    """A peer whose 1-process throughput is under 3/4 of the fastest peer's so far: the targets
    are ratios to the fastest peer, so later rounds re-measure processing only for relaybus and
    the peers that could be the fastest (this keeps the full run near 15 minutes)."""
    rates = {
        s: statistics.median(b.samples.values["process1.rate"])
        for s, b in benches.items()
        if b.samples.values.get("process1.rate") and s != "relaybus"
    }
    if system not in rates or system == "relaybus" or len(rates) < 2:
        return False
    return rates[system] < 0.75 * max(rates.values())


# -- report ------------------------------------------------------------------------------------


def _cell(samples: dict[str, list[float]], key: str, digits: int = 0) -> str:
    data = samples.get(key)
    return fmt_stat(Stat.of(data), digits) if data else "n/a"


def _median(samples: dict[str, list[float]], key: str) -> float | None:
    data = samples.get(key)
    return statistics.median(data) if data else None


def run(*, quick: bool, systems: Sequence[str] | None = None) -> GroupResult:
    oban_env.ensure_peers()
    plan = QUICK if quick else FULL
    chosen = [s for s in (systems or ALL_SYSTEMS) if s in ALL_SYSTEMS]
    data = asyncio.run(_run(plan, chosen, quick))
    samples: dict[str, dict[str, list[float]]] = data["samples"]
    measured = list(samples)
    peers = [s for s in measured if s in PEERS]
    cores = os.cpu_count() or 1
    for per_system in samples.values():  # utilisation: jobs/s ÷ (cores ÷ CPU per job)
        for record in ("process1", "process2"):
            rates, cpus, pgs = (per_system.get(f"{record}.{k}", [])
                                for k in ("rate", "cpu_us", "pg_us"))
            if rates and len(rates) == len(cpus) == len(pgs):
                per_system[f"{record}.util"] = [
                    100.0 * rate * (cpu + pg) / 1e6 / cores
                    for rate, cpu, pg in zip(rates, cpus, pgs, strict=True)
                ]

    metrics = [
        ("enqueue one at a time (jobs/s)", "single.rate", 0),
        ("enqueue in batches of 1,000 (jobs/s)", "batch.rate", 0),
        ("process, 1 worker process, concurrency 10 (jobs/s)", "process1.rate", 0),
        ("process, 2 worker processes (jobs/s)", "process2.rate", 0),
        ("latency p50 (ms)", "latency.p50", 1),
        ("latency p95 (ms)", "latency.p95", 1),
        ("latency p99 (ms)", "latency.p99", 1),
        ("latency run: producer's achieved rate (jobs/s)", "latency.producer_rate", 0),
        ("client CPU per single enqueue (µs)", "single.cpu_us", 0),
        ("PostgreSQL CPU per single enqueue (µs)", "single.pg_us", 0),
        ("baseline, bare prepared asyncpg INSERT: enqueue one at a time (jobs/s)",
         "bare_single.rate", 0),
        ("baseline, bare prepared asyncpg INSERT: client CPU per enqueue (µs)",
         "bare_single.cpu_us", 0),
        ("baseline, bare prepared asyncpg INSERT ... unnest: enqueue in batches of 1,000 "
         "(jobs/s)", "bare_batch.rate", 0),
        ("baseline, bare asyncpg COPY (no ids returned): enqueue in batches of 1,000 (jobs/s)",
         "bare_copy.rate", 0),
        ("baseline, bare LISTEN/NOTIFY + claim by id: latency p50 (ms)",
         "bare_latency.p50", 1),
        ("baseline, bare LISTEN/NOTIFY + claim by id: latency p99 (ms)",
         "bare_latency.p99", 1),
        ("client CPU per batch-enqueued job (µs)", "batch.cpu_us", 1),
        ("PostgreSQL CPU per batch-enqueued job (µs)", "batch.pg_us", 1),
        ("worker CPU per job, 1 worker (µs)", "process1.cpu_us", 0),
        ("PostgreSQL CPU per job, 1 worker (µs)", "process1.pg_us", 0),
        ("worker CPU per job, 2 workers (µs)", "process2.cpu_us", 0),
        ("PostgreSQL CPU per job, 2 workers (µs)", "process2.pg_us", 0),
        ("utilisation, 1 worker: jobs/s ÷ (cores ÷ worker+PG CPU per job) (%)",
         "process1.util", 0),
        ("utilisation, 2 workers (%)", "process2.util", 0),
        ("relaybus, 1 worker: share of the run with a claim in flight (%)",
         "process1.fetch_busy", 0),
        ("relaybus, 1 worker: mean claim (finish the last runs + claim the next) (ms)",
         "process1.fetch_ms", 1),
        ("relaybus, 1 worker: mean jobs per claim", "process1.fetch_jobs", 1),
        ("relaybus, 2 workers: share of the run with a claim in flight, per worker (%)",
         "process2.fetch_busy", 0),
    ]
    headers = ["metric", *[_label(s, data["versions"]) for s in measured]]
    partial: dict[str, list[str]] = data.get("partial", {})

    def cell(system: str, key: str, digits: int) -> str:
        text = _cell(samples[system], key, digits)
        if key.split(".")[0] in partial.get(system, ()) and key.endswith(".rate"):
            text += " †"
        return text

    rows = [[label, *[cell(s, key, digits) for s in measured]]
            for label, key, digits in metrics]

    # fastest peer per metric and relaybus's ratio to it
    higher_better = {"single.rate", "batch.rate", "process1.rate", "process2.rate"}
    ratio_rows: list[list[str]] = []
    targets: list[tuple[str, str, bool | None]] = []
    target_ratio = {"process1.rate": 2.5, "process2.rate": 2.5, "batch.rate": 3.0,
                    "single.rate": 2.0}
    best: dict[str, tuple[str, float]] = {}
    for label, key, _digits in metrics:
        if key in ("latency.producer_rate", "process1.util", "process2.util") \
                or ".fetch_" in key:
            continue
        peer_values = {p: _median(samples[p], key) for p in peers}
        valid = {p: v for p, v in peer_values.items() if v is not None}
        if not valid:
            continue
        pick = max if key in higher_better else min
        best_peer = pick(valid, key=lambda p: valid[p])
        best[key] = (best_peer, valid[best_peer])
        rb_value = _median(samples.get("relaybus", {}), key)
        ratio = None
        if rb_value is not None and valid[best_peer]:
            ratio = (rb_value / valid[best_peer] if key in higher_better
                     else valid[best_peer] / rb_value if rb_value else None)
        digits = 1 if "latency" in key else 0
        ratio_rows.append([
            label,
            f"{best_peer} {fmt_num(valid[best_peer], digits)}",
            fmt_num(rb_value, digits) if rb_value is not None else "n/a",
            fmt_ratio(ratio),
        ])
    if "relaybus" in samples and peers:
        rbs = samples["relaybus"]
        for key, need in target_ratio.items():
            if key not in best:
                continue
            peer, value = best[key]
            mine = _median(rbs, key)
            if mine is None:
                continue
            label = next(lbl for lbl, k, _ in metrics if k == key)
            ratio = mine / value
            cpu_note = ""
            if key == "process1.rate":
                cpu_note = (f"; CPU/job worker {fmt_num(_median(rbs, 'process1.cpu_us') or 0)} + "
                            f"PG {fmt_num(_median(rbs, 'process1.pg_us') or 0)} µs")
            bare_rate = _median(rbs, "bare_single.rate")
            if key == "single.rate" and bare_rate:
                cpu_note = (f"; a bare prepared asyncpg INSERT: {fmt_num(bare_rate)} = "
                            f"{bare_rate / value:.2f}x")
            if key == "batch.rate":
                bare_batch = [(what, _median(rbs, f"{record}.rate")) for what, record in
                              (("INSERT ... unnest", "bare_batch"), ("COPY", "bare_copy"))]
                cpu_note = "".join(f"; bare asyncpg {what}: {fmt_num(rate)} = "
                                   f"{rate / value:.2f}x" for what, rate in bare_batch if rate)
            targets.append((f"{label}: >= {need}x the fastest peer ({peer})",
                            f"{fmt_num(mine)} vs {fmt_num(value)} = {ratio:.2f}x{cpu_note}",
                            ratio >= need))
        if "single.cpu_us" in best:
            peer_single_rate = best.get("single.rate", ("", 0.0))[0]
            peer_cpu = _median(samples[peer_single_rate], "single.cpu_us") if peer_single_rate \
                else None
            mine = _median(rbs, "single.cpu_us")
            if peer_cpu and mine:
                targets.append(
                    (f"client CPU per single enqueue <= half the fastest peer's "
                     f"({peer_single_rate})",
                     f"{fmt_num(mine)} vs {fmt_num(peer_cpu)} µs = {mine / peer_cpu:.2f}x",
                     mine <= peer_cpu / 2))
        bare = [cpu / base for cpu, base in zip(rbs.get("single.cpu_us", []),
                                                rbs.get("bare_single.cpu_us", []), strict=False)]
        if bare:
            ratio = statistics.median(bare)
            targets.append(("client CPU per single enqueue <= 1.15x a bare prepared asyncpg "
                            "INSERT", f"{ratio:.2f}x (median of per-round ratios)",
                            ratio <= 1.15))
        for pct in ("p50", "p99"):
            key = f"latency.{pct}"
            fastest = best.get("process1.rate", ("", 0.0))[0]
            if not fastest:
                continue
            peer_lat = _median(samples[fastest], key)
            mine = _median(rbs, key)
            if peer_lat is not None and mine is not None:
                need = 0.6 if pct == "p99" else 1.0
                bound = "no worse than" if need == 1.0 else f"<= {need}x"
                floor = _median(rbs, f"bare_latency.{pct}")
                floor_note = (f"; the bare LISTEN/NOTIFY floor: {floor:.1f} ms = "
                              f"{floor / peer_lat:.2f}x" if floor is not None else "")
                targets.append((f"latency {pct} {bound} the fastest peer's ({fastest})",
                                f"{mine:.1f} ms vs {peer_lat:.1f} ms = {mine / peer_lat:.2f}x"
                                f"{floor_note}", mine <= need * peer_lat))
        for record, workers in (("process1", "1 worker"), ("process2", "2 workers")):
            util = _median(rbs, f"{record}.util")
            busy = _median(rbs, f"{record}.fetch_busy")
            busy_note = (f"; a claim in flight {busy:.0f}% of the run (per worker)"
                         if busy is not None else "")
            if util is not None:
                targets.append((f"utilisation, {workers}: >= 70% of the machine's CPU-bound "
                                "rate", f"{util:.0f}%{busy_note}", util >= 70))
        flats = sorted(int(k.split(".")[0][4:]) for k in rbs if k.startswith("flat")
                       and k.endswith(".cpu_us"))
        if len(flats) >= 2:
            lo, hi = flats[0], flats[-1]
            c_lo = (_median(rbs, f"flat{lo}.cpu_us") or 0) + (_median(rbs, f"flat{lo}.pg_us") or 0)
            c_hi = (_median(rbs, f"flat{hi}.cpu_us") or 0) + (_median(rbs, f"flat{hi}.pg_us") or 0)
            targets.append((f"flat cost: worker + PostgreSQL CPU per job within 1.2x from a "
                            f"{lo:,} to a {hi:,}-job backlog",
                            f"{c_lo:.0f} -> {c_hi:.0f} µs = {c_hi / c_lo:.2f}x" if c_lo else "n/a",
                            (c_hi / c_lo <= 1.2) if c_lo else None))

    tables = [
        Table(
            title="PostgreSQL: relaybus and the peers, side by side (medians of rounds)",
            headers=headers,
            rows=rows,
            notes=_notes(data, measured),
        )
    ]
    if ratio_rows:
        tables.append(Table(
            title="relaybus against the fastest peer of each metric",
            headers=["metric", "fastest peer", "relaybus", "relaybus ratio (>1 = better)"],
            rows=ratio_rows,
        ))
    if "relaybus" in samples:
        rbs = samples["relaybus"]
        flat_rows = []
        for key in sorted({k.split(".")[0] for k in rbs if k.startswith("flat")},
                          key=lambda k: int(k[4:])):
            flat_rows.append([f"{int(key[4:]):,}", _cell(rbs, f"{key}.rate"),
                              _cell(rbs, f"{key}.cpu_us"), _cell(rbs, f"{key}.pg_us")])
        if flat_rows:
            tables.append(Table(
                title="Flat cost: relaybus with a small and a large backlog",
                headers=["backlog (jobs queued)", "jobs/s over the first "
                         f"{plan.flat_measure:,}", "worker CPU µs/job", "PostgreSQL CPU µs/job"],
                rows=flat_rows,
                notes=[f"One worker process, concurrency 10; CPU over its first "
                       f"{plan.flat_measure:,} jobs; {plan.flat_rounds} run(s) per backlog, "
                       "alternating, each on a fresh database filled by batch enqueue and "
                       "CHECKPOINTed before the worker starts."],
            ))
    titles = {
        "worker": "Profile: relaybus worker process on PostgreSQL (1 worker, concurrency 10)",
        "single": "Profile: relaybus client, single enqueue (`await bus.dispatch(event)`)",
        "batch": "Profile: relaybus client, batch enqueue (`await bus.dispatch_many(events)`)",
    }
    for kind, prof_rows in data.get("profiles", {}).items():
        if prof_rows:
            tables.append(Table(
                title=titles[kind] + ", one untimed run",
                headers=PROFILE_HEADERS,
                rows=prof_rows,
                notes=[PROFILE_NOTE + (" Profiled from the first job on." if kind == "worker"
                                       else "")],
            ))
    facts = machine_facts()
    facts.update(data["facts"])
    for name, version in data["versions"].items():
        facts[name] = version
    return GroupResult(
        name="postgres",
        title="C. PostgreSQL: relaybus and the peers",
        intro=[__doc__.split("\n\n", 1)[1].strip()] if __doc__ else [],
        tables=tables,
        facts=facts,
        raw=data,
        targets=targets,
    )


def _label(system: str, versions: dict[str, str]) -> str:
    names = {"relaybus": "relaybus", "pgqueuer": "PgQueuer", "procrastinate": "Procrastinate",
             "chancy": "Chancy", "oban": "Oban for Python"}
    version = versions.get(system, "").split(" ")[0]
    return f"{names.get(system, system)} {version}".strip()


def _notes(data: dict[str, Any], measured: list[str]) -> list[str]:
    plan = data["plan"]
    notes = [
        f"{plan['rounds']} rounds (processing of peers below 3/4 of the fastest peer's rate in "
        f"the first round: {plan['slow_process_rounds']} round, as the targets compare with the "
        f"fastest peer); single enqueue {plan['single_n']:,} jobs, "
        f"batches of 1,000 over {plan['batch_n']:,} jobs (also measured before each "
        f"processing run), processing {plan['process_n']:,} pre-enqueued no-op jobs, latency "
        f"{plan['latency_rate']:.0f} jobs/s for {plan['latency_s']:.0f} s with an idle worker.",
        f"† not finished {plan['process_deadline']:.0f} s after its first job: the rate is the "
        "jobs completed (visible in the database) in that window, i.e. with most of the "
        f"{plan['process_n']:,}-job backlog still queued. A system whose cost per job grows with "
        "the backlog looks slower here than averaged over a full drain (as in the reference "
        "table of shared/reference/peers-performance.md).",
        "Latency: when a system cannot sustain the rate (the producer's achieved rate is below "
        f"{plan['latency_rate']:.0f}/s, or jobs queue up), its percentiles measure a growing "
        "queue, not wake-up latency.",
    ]
    for system, reason in data.get("skipped", {}).items():
        notes.append(f"**{system} not measured**: {reason}.")
    for system, reason in data.get("failed", {}).items():
        notes.append(f"**{system} failed during the run** (figures partial or missing): "
                     f"`{reason.splitlines()[-1] if reason else ''}`.")
    notes.append("How each system is driven (code: `benchmarks/pg/sys_<name>.py`):")
    notes.extend(f"- **{system}**: {SETTINGS[system]}" for system in measured)
    return notes
