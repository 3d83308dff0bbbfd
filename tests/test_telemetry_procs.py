"""Telemetry across real processes: one OpenTelemetry trace from a dispatching process to the
job's runs in a worker process (PostgreSQL), and HTTP scrapes of ``/metrics`` from running
``relaybus worker --metrics-port`` processes showing the counters move."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.procs.cliapp import Task
from tests.stores import PG_DSN, server_missing
from tests.test_cli_worker import app_bus

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def wait_until(what: str, check: Callable[[], Any], limit: float = 60.0) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    asyncpg = pytest.importorskip("asyncpg")
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        server_missing("PostgreSQL", exc)
    schema = f"otel_{uuid.uuid4().hex[:10]}"
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "relaybus", "migrate", "--dsn", PG_DSN, "--schema", schema],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stderr
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def test_one_trace_from_dispatch_to_the_job_runs_across_two_processes(
    pg_schema: str, tmp_path: Path
) -> None:
    env = dict(os.environ, OTELAPP_DSN=PG_DSN, OTELAPP_SCHEMA=pg_schema, PYTHONPATH=str(ROOT))
    worker_out, dispatch_out = tmp_path / "worker.json", tmp_path / "dispatch.json"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.procs.otelapp", "worker", str(worker_out)],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        sent = subprocess.run(
            [sys.executable, "-m", "tests.procs.otelapp", "dispatch", str(dispatch_out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        _, err = worker.communicate(timeout=90)
        assert worker.returncode == 0, err
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    job_id = str(json.loads(sent.stdout)["job_id"])
    dispatched = {s["name"]: s for s in json.loads(dispatch_out.read_text())}
    runs = json.loads(worker_out.read_text())

    send = dispatched["send otelapp.traced"]
    assert send["kind"] == "PRODUCER" and send["parent_id"] is None
    assert send["attributes"]["messaging.system"] == "relaybus"
    assert send["attributes"]["messaging.operation.type"] == "send"
    assert send["attributes"]["messaging.destination.name"] == "otelapp.traced"
    insert = dispatched["insert traced"]
    assert (insert["trace_id"], insert["parent_id"]) == (send["trace_id"], send["span_id"])
    assert insert["attributes"]["messaging.message.id"] == job_id
    assert insert["attributes"]["relaybus.insert.outcome"] == "inserted"
    inline = dispatched["process otelapp.inline"]
    assert (inline["trace_id"], inline["parent_id"]) == (send["trace_id"], send["span_id"])
    assert inline["attributes"]["relaybus.job.outcome"] == "completed"

    # The worker process's spans: one per run, each a child of the dispatch span.
    assert [r["name"] for r in runs] == ["process traced", "process traced"]
    assert {r["pid"] for r in runs} != {send["pid"]}
    for run, attempt in zip(runs, (1, 2), strict=True):
        assert run["kind"] == "CONSUMER"
        assert (run["trace_id"], run["parent_id"]) == (send["trace_id"], send["span_id"])
        attrs = run["attributes"]
        assert attrs["messaging.message.id"] == job_id
        assert attrs["messaging.destination.name"] == "traced"
        assert attrs["messaging.operation.type"] == "process"
        assert attrs["relaybus.job.handler"] == "otelapp.job"
        assert attrs["relaybus.job.attempt"] == attempt
    failed, completed = runs
    assert failed["attributes"]["relaybus.job.outcome"] == "retried"
    assert failed["status"] == "ERROR" and failed["events"] == ["exception"]
    assert failed["attributes"]["error.type"] == "RuntimeError"
    assert completed["attributes"]["relaybus.job.outcome"] == "completed"
    assert completed["status"] == "UNSET" and completed["events"] == []


def free_ports(count: int) -> int:
    """A first port such that it and the next ``count - 1`` are free now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free ports")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``http://127.0.0.1:port/metrics``: (name, labels) → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, found), value in samples.items()
        if sample == name and set(labels.items()) <= set(found)
    )


def scrape_or_none(port: int) -> dict[Any, float] | None:
    try:
        return scrape(port)
    except OSError:
        return None


async def test_metrics_of_running_worker_processes_move(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    env = dict(
        os.environ, CLIAPP_LOG=str(log), PYTHONPATH=str(ROOT),
        CLIAPP_DSN=f"sqlite:///{tmp_path / 'jobs.db'}",
    )  # fmt: skip
    bus = app_bus(env)
    port = free_ports(2)
    async with bus:
        await bus.dispatch_many([Task(i) for i in range(3)])  # waiting before the workers
        parent = subprocess.Popen(
            [
                sys.executable, "-m", "relaybus", "worker", "tests.procs.cliapp:bus",
                "--queues", "work=2", "--processes", "2", "--node", "metrics",
                "--metrics-port", str(port), "--metrics-addr", "127.0.0.1",
                "--node-ttl", "3", "--poll-interval", "0.1", "--grace", "5",
            ],
            cwd=ROOT, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            # Each child serves its own port: child i on port + i - 1.
            first = [
                wait_until(f"/metrics on {p}", lambda p=p: scrape_or_none(p))
                for p in (port, port + 1)
            ]
            assert all(("relaybus_leader", ()) in s for s in first)

            def completed(samples: list[dict[Any, float]]) -> float:
                return sum(total(s, "relaybus_jobs_completed_total", queue="work") for s in samples)

            wait_until("the first jobs", lambda: completed([scrape(port), scrape(port + 1)]) >= 3)
            before = [scrape(port), scrape(port + 1)]
            await bus.dispatch_many([Task(i) for i in range(10, 20)])
            await bus.dispatch(Task(99, fail=True))  # 3 attempts, then discarded

            def settled() -> list[dict[Any, float]] | None:
                now = [scrape(port), scrape(port + 1)]
                discarded = sum(total(s, "relaybus_jobs_discarded_total") for s in now)
                return now if completed(now) >= 13 and discarded >= 1 else None

            after = wait_until("the counters to move", settled)
        finally:
            parent.terminate()
            assert parent.wait(timeout=30) == 0

    assert completed(before) >= 3 and completed(after) == 13
    labels = {"queue": "work", "handler": "cliapp.run"}
    assert sum(total(s, "relaybus_jobs_retried_total", **labels) for s in after) == 2
    assert sum(total(s, "relaybus_jobs_discarded_total", **labels) for s in after) == 1
    assert sum(total(s, "relaybus_job_duration_seconds_count", **labels) for s in after) == 16
    assert sum(total(s, "relaybus_job_queue_wait_seconds_count", **labels) for s in after) == 16
    # The queue depth comes from the leader only: one process exports it.
    leaders = [s for s in after if total(s, "relaybus_leader") == 1]
    assert len(leaders) == 1
    assert ("relaybus_queue_jobs", (("queue", "work"), ("state", "available"))) in leaders[0]
    assert total(leaders[0], "relaybus_nodes_alive") >= 1
    follower = next(s for s in after if s is not leaders[0])
    assert total(follower, "relaybus_queue_jobs") == 0
