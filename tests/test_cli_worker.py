"""``relaybus worker`` end to end, through real processes: a supervised ``--processes 2`` node
group on SQLite and PostgreSQL, one child SIGKILLed and restarted by the parent, then SIGTERM:
exit 0 and no job lost. Waits on conditions with a deadline, never on fixed sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import relaybus as rb
from tests.procs.cliapp import Task
from tests.stores import PG_DSN, server_missing

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

FAST = [
    "--node-ttl", "1", "--heartbeat-interval", "0.2", "--rescue-interval", "0.2",
    "--poll-interval", "0.1", "--grace", "5",
]  # fmt: skip


def wait_until(what: str, check: Callable[[], Any], limit: float = 30.0) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(params=["sqlite", "postgres"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    log = tmp_path / "runs.log"
    base = dict(os.environ, CLIAPP_LOG=str(log), PYTHONPATH=str(ROOT))
    if request.param == "sqlite":
        yield dict(base, CLIAPP_DSN=f"sqlite:///{tmp_path / 'jobs.db'}")
        return
    asyncpg = pytest.importorskip("asyncpg")
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        server_missing("PostgreSQL", exc)
    schema = f"cli_{uuid.uuid4().hex[:10]}"
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "relaybus", "migrate", "--dsn", PG_DSN, "--schema", schema],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stderr
        assert "applying migration 0001_initial" in migrate.stderr
        yield dict(base, CLIAPP_DSN=PG_DSN, CLIAPP_SCHEMA=schema)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def app_bus(env: dict[str, str]) -> rb.Bus[Any]:
    from relaybus.cli import store_for_dsn

    store = store_for_dsn(env["CLIAPP_DSN"], prefix="relaybus_", schema=env.get("CLIAPP_SCHEMA"))
    bus: rb.Bus[Any] = rb.Bus(store=store)

    @bus.job(Task, name="cliapp.run", queue="work", max_attempts=3)  # as the app: inserts only
    async def run(event: Task, ctx: rb.Context[Any]) -> None:
        raise AssertionError("the worker processes run these jobs")

    return bus


async def test_supervised_workers_survive_a_killed_child_and_stop_on_sigterm(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = Path(env["CLIAPP_LOG"])
    stderr_path = tmp_path / "worker.err"
    bus = app_bus(env)
    count = 24
    async with bus:
        await bus.dispatch_many([Task(i, seconds=0.25) for i in range(count)])
        with stderr_path.open("ab") as stderr:
            parent = subprocess.Popen(
                [
                    sys.executable, "-m", "relaybus", "worker", "tests.procs.cliapp:bus",
                    "--queues", "work=2", "--processes", "2", "--node", "cli",
                    "--log-format", "json", "--summary-interval", "0.5", *FAST,
                ],
                cwd=ROOT, env=env, stderr=stderr, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            # A child is running a job: kill it (SIGKILL), mid-job.
            def running_pid() -> int | None:
                started = {}
                for line in lines(log):
                    kind, job, attempt, pid = line.split()
                    key = (job, attempt)
                    if kind == "start":
                        started[key] = int(pid)
                    else:
                        started.pop(key, None)
                return next(iter(started.values()), None)

            victim = wait_until("a child running a job", running_pid)
            os.kill(victim, signal.SIGKILL)

            def restarted() -> bool:
                text = stderr_path.read_text()
                return "restarting it in" in text and "SIGKILL" in text

            wait_until("the parent to restart the killed child", restarted)

            async def settled() -> bool:
                stats = await bus.jobs.stats()
                return stats.get("work", {}).get("completed", 0) == count

            deadline = time.monotonic() + 40
            while not await settled():
                assert time.monotonic() < deadline, await bus.jobs.stats()
                assert parent.poll() is None, "the supervisor died"
                time.sleep(0.1)
            wait_until("a summary line", lambda: "jobs done" in stderr_path.read_text())
            parent.send_signal(signal.SIGTERM)
            assert parent.wait(timeout=30) == 0
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait()

        jobs = await bus.jobs.list(limit=1000)
        assert len(jobs) == count
        assert all(job.state is rb.JobState.COMPLETED for job in jobs)  # nothing lost
        rescued = [job for job in jobs if any(e.kind == "rescued" for e in job.errors)]
        assert rescued, "the killed child's job was rescued"
        assert all("lease of node cli-" in e.message for j in rescued for e in j.errors)
        pids = {line.split()[3] for line in lines(log)}
        assert len(pids) >= 3  # two children, and the restarted one

    records = [json.loads(line) for line in stderr_path.read_text().splitlines() if line]
    assert any(r["message"].startswith("worker process") for r in records)
    handler_lines = [r for r in records if r["logger"] == "relaybus.handler"]
    assert handler_lines and all(
        {"job_id", "handler", "queue", "attempt"} <= r.keys() for r in handler_lines
    )
    assert not any("payload" in r for r in records)


def test_one_worker_process_stops_on_sigterm_and_a_second_signal_cancels_now(
    tmp_path: Path,
) -> None:
    log = tmp_path / "runs.log"
    dsn = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = dict(os.environ, CLIAPP_LOG=str(log), CLIAPP_DSN=dsn, PYTHONPATH=str(ROOT))
    dispatch = (
        "import asyncio\nfrom tests.procs.cliapp import bus, Task\n"
        "async def main():\n    async with bus:\n"
        "        await bus.dispatch(Task(1, seconds=60))\nasyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", dispatch], cwd=ROOT, env=env, check=True, timeout=60)
    worker = subprocess.Popen(
        [sys.executable, "-m", "relaybus", "worker", "tests.procs.cliapp:bus",
         "--queues", "work=1", "--grace", "30", *FAST[:-2]],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until("the job to start", lambda: lines(log))
        worker.send_signal(signal.SIGTERM)  # graceful: the 60 s job would keep it 30 s
        time.sleep(0.3)
        worker.send_signal(signal.SIGINT)  # second signal: stop now
        _, err = worker.communicate(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "second signal" in err
    show = subprocess.run(
        [sys.executable, "-m", "relaybus", "jobs", "show", "1", "--dsn", dsn, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    job = json.loads(show.stdout)
    assert job["state"] == "available" and job["attempt"] == 0  # back, uncharged
