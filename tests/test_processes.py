"""Real multi-process tests: separate worker processes, each with its own connections.

Crash recovery is proven end to end here: SIGKILL, SIGSTOP/SIGCONT, a job that kills its
process, concurrent unique inserts, two nodes racing over one backlog, a database restart.
These tests wait on conditions in the database (with a deadline), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import relaybus as rb
from tests.private_mysql import PrivateMariaDB
from tests.private_pg import PrivatePostgres
from tests.procs.app import Work, build_bus
from tests.stores import MYSQL_DSN, PG_DSN, mysql_admin, mysql_dsn_for, mysql_sql, server_missing

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@dataclass
class Target:
    """Where the processes meet: a SQLite file or a PostgreSQL schema."""

    kind: str
    dsn: str
    schema: str | None
    log: Path

    def args(self) -> list[str]:
        extra = ["--schema", self.schema] if self.schema else []
        return ["--dsn", self.dsn, "--log", str(self.log), *extra]

    def bus(self) -> rb.Bus[Any]:
        return build_bus(self.dsn, self.schema, str(self.log))


@asynccontextmanager
async def make_target(kind: str, tmp_path: Path, dsn: str = PG_DSN) -> AsyncIterator[Target]:
    log = tmp_path / "runs.log"
    if kind == "sqlite":
        path = tmp_path / "jobs.db"
        target = Target("sqlite", f"sqlite:///{path}", None, log)
        async with target.bus() as bus:  # sets the file up
            await bus.store.migrate()
        yield target
        return
    if kind == "mysql":
        database = f"procs_{uuid.uuid4().hex[:10]}"
        mysql_base = MYSQL_DSN if dsn == PG_DSN else dsn
        admin = await mysql_admin(mysql_base)
        try:
            await mysql_sql(admin, f"CREATE DATABASE `{database}`")
        finally:
            admin.close()
        try:
            target = Target("mysql", mysql_dsn_for(database, mysql_base), None, log)
            await target.bus().store.migrate()
            yield target
        finally:
            admin = await mysql_admin(mysql_base)  # a fresh one: the server may have restarted
            try:
                await mysql_sql(admin, f"DROP DATABASE IF EXISTS `{database}`")
            finally:
                admin.close()
        return
    asyncpg = pytest.importorskip("asyncpg")
    schema = f"procs_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        server_missing("PostgreSQL", exc)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        target = Target("postgres", dsn, schema, log)
        await target.bus().store.migrate()
        yield target
    finally:
        if conn.is_closed():
            conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    async with make_target(request.param, tmp_path) as made:
        yield made


@pytest.fixture
async def pg_target(tmp_path: Path) -> AsyncIterator[Target]:
    async with make_target("postgres", tmp_path) as made:
        yield made


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL server (fresh initdb, own port and directory) for the tests that
    crash or restart a server: the shared one serves every test run on the machine and is
    never stopped by a test. Stopped, killed if need be, and removed at teardown."""
    with PrivatePostgres.running() as server:
        yield server


@pytest.fixture
async def private_pg_target(private_pg: PrivatePostgres, tmp_path: Path) -> AsyncIterator[Target]:
    """A migrated schema on the private server."""
    async with make_target("postgres", tmp_path, dsn=private_pg.dsn) as made:
        yield made


class Processes:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.procs: list[subprocess.Popen[bytes]] = []

    def worker(self, node: str, **options: Any) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "tests.procs.app", "worker", *self.target.args()]
        cmd += ["--node", node]
        for key, value in options.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        proc = subprocess.Popen(cmd, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with _suppress():
                    os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


@pytest.fixture
def procs(target: Target) -> Iterator[Processes]:
    processes = Processes(target)
    yield processes
    processes.stop_all()


def runs(log: Path) -> list[tuple[str, int, int, int]]:
    """(kind, job id, attempt, pid) for every start/end line."""
    if not log.exists():
        return []
    result = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in ("start", "end"):
            result.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
    return result


async def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def states(bus: rb.Bus[Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for by_state in (await bus.jobs.stats()).values():
        counts.update(by_state)
    return counts


async def test_sigkill_mid_job_is_rescued_and_completes_once(
    target: Target, procs: Processes
) -> None:
    async with target.bus() as bus:
        job_id = (await bus.dispatch(Work(1, "slow_first", 120))).jobs[0].id
        first = procs.worker("a")
        await wait_until(lambda: any(r[0] == "start" for r in runs(target.log)), 30, "a start")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        procs.worker("b")

        async def completed() -> bool:
            job = await bus.jobs.get(job_id)
            return job is not None and job.state is rb.JobState.COMPLETED

        await wait_until(completed, 30, "the rescued job to complete")
        job = await bus.jobs.get(job_id)
        assert job is not None
        assert job.attempt == 2
        assert [e.kind for e in job.errors] == ["rescued"]
        ends = [r for r in runs(target.log) if r[0] == "end"]
        assert [(r[1], r[2]) for r in ends] == [(job_id, 2)]  # completed once, by attempt 2


async def test_two_nodes_race_over_one_backlog(target: Target, procs: Processes) -> None:
    total = 3_000 if target.kind == "sqlite" else 10_000
    async with target.bus() as bus:
        for start in range(0, total, 1000):
            await bus.dispatch_many([Work(n) for n in range(start, start + 1000)])
        one, two = procs.worker("one"), procs.worker("two")

        async def all_done() -> bool:
            return (await states(bus))["completed"] == total

        await wait_until(all_done, 120, f"{total} completions")
        starts = Counter(r[1] for r in runs(target.log) if r[0] == "start")
        assert len(starts) == total
        assert set(starts.values()) == {1}  # no job ran twice
        by_pid = Counter(r[3] for r in runs(target.log) if r[0] == "end")
        assert set(by_pid) == {one.pid, two.pid}  # both nodes worked


def freeze(proc: subprocess.Popen[bytes], target: Target) -> None:
    """SIGSTOP ``proc``. On SQLite, never inside one of its writes: a process frozen holding
    the single write lock stalls every other writer (docs/store-sqlite.md, "The frozen-writer
    caveat"), which is not what these tests are about. So the lock is probed after each stop,
    and a stop that caught a write is undone (SIGCONT) and tried again a moment later."""
    for _ in range(200):
        os.kill(proc.pid, signal.SIGSTOP)
        if target.kind != "sqlite" or _write_lock_free(target):
            return
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError("the process held SQLite's write lock at every one of 200 stops")


def _write_lock_free(target: Target) -> bool:
    path = target.dsn.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # database is locked: the stop caught a write
        return False
    finally:
        conn.close()


async def test_stale_node_after_sigstop_changes_nothing(target: Target, procs: Processes) -> None:
    async with target.bus() as bus:
        job_id = (await bus.dispatch(Work(1, "slow_first", 1))).jobs[0].id
        stale = procs.worker("stale")
        await wait_until(lambda: any(r[0] == "start" for r in runs(target.log)), 30, "start")
        freeze(stale, target)  # frozen past its lease (ttl 1.5 s)
        procs.worker("fresh")

        async def completed() -> rb.Job | None:
            job = await bus.jobs.get(job_id)
            return job if job is not None and job.state is rb.JobState.COMPLETED else None

        done = await wait_until(completed, 30, "the other node to complete the job")
        assert done.attempt == 2
        os.kill(stale.pid, signal.SIGCONT)
        # Its 1 s sleep is long over: the stale run finishes attempt 1 and writes its
        # completion (or its heartbeat learns first that the job moved on). Either way it must
        # change nothing. A graceful exit flushes every write it still had.
        stale.send_signal(signal.SIGTERM)
        assert stale.wait(timeout=30) == 0  # graceful exit, code 0
        after = await bus.jobs.get(job_id)
        assert after == done


async def test_job_that_kills_its_process_is_discarded_after_max_rescues(
    target: Target, procs: Processes
) -> None:
    async with target.bus() as bus:
        poison = (await bus.dispatch(Work(0, "always_exit"))).jobs[0].id
        others = [r.jobs[0].id for r in await bus.dispatch_many([Work(n) for n in range(1, 21)])]
        supervisor_deadline = time.monotonic() + 90
        restarts = 0
        while True:  # a supervisor: restart the worker whenever the poison job kills it
            job = await bus.jobs.get(poison)
            assert job is not None
            if job.state is rb.JobState.DISCARDED:
                break
            alive = [p for p in procs.procs if p.poll() is None]
            if not alive:
                procs.worker(f"w{restarts}", max_rescues=3)
                restarts += 1
            assert time.monotonic() < supervisor_deadline, f"poison job still {job.state}"
            await asyncio.sleep(0.05)
        job = await bus.jobs.get(poison)
        assert job is not None
        assert job.errors[-1].kind == "worker_lost"
        assert [e.kind for e in job.errors].count("rescued") == 2

        async def others_done() -> bool:
            jobs = [await bus.jobs.get(i) for i in others]
            return all(j is not None and j.state is rb.JobState.COMPLETED for j in jobs)

        if not [p for p in procs.procs if p.poll() is None]:
            procs.worker("after")
        await wait_until(others_done, 60, "the other jobs to complete")
        for other in others:
            job = await bus.jobs.get(other)
            assert job is not None and job.state is rb.JobState.COMPLETED
            assert all(e.kind != "worker_lost" for e in job.errors)


async def test_concurrent_unique_inserts_from_many_processes(target: Target) -> None:
    count = 20 if target.kind == "sqlite" else 50
    cmd = [sys.executable, "-m", "tests.procs.app", "insert", *target.args()]
    started = [
        subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(count)
    ]
    for proc in started:  # every process connected and waiting
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
    for proc in started:  # release them together
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    outcomes = []
    for proc in started:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        outcomes.append(out.decode().split())
    ids = {int(job_id) for _, job_id in outcomes}
    assert len(ids) == 1  # every caller got the one job's id
    kinds = Counter(outcome for outcome, _ in outcomes)
    assert kinds["inserted"] == 1
    assert kinds["duplicate"] == count - 1
    async with target.bus() as bus:
        assert len(await bus.jobs.list(handler="procs.unique")) == 1


async def test_database_restart_under_load(
    private_pg: PrivatePostgres, private_pg_target: Target
) -> None:
    """Workers on a private server that is restarted (-m immediate: a crash, then recovery)
    under load; never the shared server."""
    target = private_pg_target
    procs = Processes(target)
    try:
        await _restart_under_load(private_pg, target, procs)
    finally:
        procs.stop_all()


async def _restart_under_load(server: PrivatePostgres, target: Target, procs: Processes) -> None:
    total = 3000
    async with target.bus() as bus:
        for start in range(0, total, 1000):
            await bus.dispatch_many([Work(n, "sleep", 0.002) for n in range(start, start + 1000)])
        procs.worker("one")
        procs.worker("two")

        async def some_done() -> bool:
            return (await states(bus))["completed"] >= total // 10

        await wait_until(some_done, 60, "work under way")
        await asyncio.to_thread(server.restart, "immediate")

        async def all_done() -> bool:
            try:
                counts = await states(bus)
            except Exception:  # our own connections died with the server too
                return False
            return counts["completed"] == total

        await wait_until(all_done, 120, "every job to complete after the restart")
        counts = await states(bus)
        assert counts == Counter({"completed": total})  # nothing lost, nothing left running
        ends = {r[1] for r in runs(target.log) if r[0] == "end"}
        assert len(ends) == total


@pytest.fixture(scope="module")
def private_mariadb() -> Iterator[PrivateMariaDB]:
    """A private MariaDB server (fresh datadir, own port and socket) for the test that kills
    one: never the shared server. Killed and removed at teardown."""
    with PrivateMariaDB.running() as server:
        yield server


async def test_mariadb_killed_under_load(private_mariadb: PrivateMariaDB, tmp_path: Path) -> None:
    """Workers on a private MariaDB that is SIGKILLed under load and started again (InnoDB
    crash recovery): nothing lost, none left running, each job completed once."""
    async with make_target("mysql", tmp_path, dsn=private_mariadb.dsn) as target:
        procs = Processes(target)
        try:
            total = 3000
            async with target.bus() as bus:
                for start in range(0, total, 1000):
                    batch = [Work(n, "sleep", 0.002) for n in range(start, start + 1000)]
                    await bus.dispatch_many(batch)
                procs.worker("one")
                procs.worker("two")

                async def some_done() -> bool:
                    return (await states(bus))["completed"] >= total // 10

                await wait_until(some_done, 60, "work under way")
                await asyncio.to_thread(private_mariadb.restart_after_kill)

                async def all_done() -> bool:
                    try:
                        counts = await states(bus)
                    except Exception:  # our own connections died with the server too
                        return False
                    return counts["completed"] == total

                await wait_until(all_done, 90, "every job to complete after the crash")
                assert await states(bus) == Counter({"completed": total})
                ends = [r[1] for r in runs(target.log) if r[0] == "end"]
                assert set(ends) == set(range(1, total + 1)) or len(set(ends)) == total
        finally:
            procs.stop_all()


async def test_mysql_contention_never_reaches_the_user(tmp_path: Path) -> None:
    """4 worker processes, 4 inserting processes and the pruner at once on one table: no
    deadlock (1213) or lock wait timeout (1205) reaches an inserting caller or a worker's
    log."""
    async with make_target("mysql", tmp_path) as target:
        procs = Processes(target)
        logs = [tmp_path / f"worker{i}.err" for i in range(4)]
        try:
            for i, log in enumerate(logs):
                cmd = [sys.executable, "-m", "tests.procs.app", "worker", *target.args()]
                cmd += ["--node", f"w{i}", "--prune"]
                with open(log, "wb") as err:
                    procs.procs.append(subprocess.Popen(cmd, cwd=ROOT, stderr=err))
            per = 1500
            cmd = [sys.executable, "-m", "tests.procs.app", "flood", *target.args()]
            cmd += ["--count", str(per)]
            floods = [
                subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(4)
            ]
            sent = 0
            for proc in floods:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err.decode()[-3000:]
                sent += int(out.split()[1])
            async with target.bus() as bus:

                async def all_done() -> bool:
                    return (await states(bus))["completed"] == 0 and len(
                        [r for r in runs(target.log) if r[0] == "end"]
                    ) >= sent

                await wait_until(all_done, 50, "every job to run and be pruned")
        finally:
            procs.stop_all()
        for log in logs:
            text = log.read_text(errors="replace")
            for needle in ("1213", "1205", "Deadlock", "Lock wait timeout"):
                assert needle not in text, text[-3000:]
