"""Periodic events across real processes on PostgreSQL: 3 nodes with node_ttl 1 s, the leader
SIGKILLed twice; no slot is dispatched twice and, with missed="all", none is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import relaybus as rb
from tests.procs.periodic import build_bus
from tests.stores import PG_DSN, server_missing
from tests.test_processes import wait_until

ROOT = Path(__file__).resolve().parent.parent
MISSED = "all"  # with "latest" the test fails: each failover spans two slots

pytestmark = pytest.mark.slow


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    asyncpg = pytest.importorskip("asyncpg")
    name = f"periodic_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(PG_DSN)
    except (OSError, asyncpg.PostgresError) as exc:
        server_missing("PostgreSQL", exc)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
        await rb.PostgresStore(PG_DSN, schema=name).migrate()
        yield name
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
    for proc in started:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def jobs_of(bus: rb.Bus[Any], handler: str) -> list[rb.Job]:
    found: list[rb.Job] = []
    while True:
        jobs = await bus.jobs.list(
            handler=handler, limit=500, after_id=found[-1].id if found else None
        )
        found += jobs
        if len(jobs) < 500:
            return found


async def slots_of(bus: rb.Bus[Any], handler: str) -> Counter[str]:
    """How many jobs of ``handler`` exist per slot (any state)."""
    return Counter(str(job.meta["slot"]) for job in await jobs_of(bus, handler))


async def test_leader_sigkilled_twice_no_slot_twice_none_lost(
    schema: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    bus = build_bus(PG_DSN, schema, str(log))

    def start(node: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            "tests.procs.periodic",
            "--dsn",
            PG_DSN,
            "--schema",
            schema,
            "--log",
            str(log),
            "--node",
            node,
            "--ttl",
            "1.0",
            "--missed",
            MISSED,
        ]
        with open(tmp_path / f"{node}.err", "wb") as err:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stderr=err))

    async with bus:
        for node in ("n1", "n2", "n3"):
            start(node)

        async def leader_pid() -> int | None:
            for info in await bus.nodes():
                if info.leader:
                    return int(info.node.rsplit("-", 2)[1])
            return None

        async def dispatched() -> int:
            return len(await slots_of(bus, "procs.beat"))

        killed: list[int] = []
        for _ in range(2):
            before = await dispatched()
            await wait_until(lambda b=before: _more(dispatched, b + 3), 30, "slots dispatched")
            pid = await wait_until(leader_pid, 30, "a leader")
            # Kill between two slots: the failover (about node_ttl) then spans the next two
            # slots, which no leader runs on time.
            await wait_until(lambda: 0.2 < time.time() % 0.5 < 0.3, 5, "between two slots")
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            await wait_until(
                lambda: _new_leader(leader_pid, killed), 30, "a new leader after the kill"
            )
        before = await dispatched()
        await wait_until(lambda: _more(dispatched, before + 3), 30, "slots after the kills")
        for proc in procs:
            if proc.pid not in killed:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)

        slots = await slots_of(bus, "procs.beat")
        record_jobs = await jobs_of(bus, "relaybus.schedule:procs.every-half-second")
        records = Counter(str(job.meta["slot"]) for job in record_jobs)
    assert len(killed) == 2 and len(set(killed)) == 2
    assert max(slots.values()) == 1, "a slot was dispatched twice"
    assert slots == records  # each slot's record and its job went in together
    times = sorted(datetime.fromisoformat(s) for s in slots)
    expected = round((times[-1] - times[0]) / timedelta(seconds=0.5)) + 1
    assert len(times) == expected, "missed='all' lost a slot"  # contiguous, every 0.5 s
    assert len(times) >= 9
    logs = "".join(p.read_text() for p in tmp_path.glob("*.err"))
    assert logs.count("missed slot(s) late") >= 2, "the failovers missed no slot: proved nothing"
    runs = Counter(
        line.split()[1] for line in log.read_text().splitlines() if line.startswith("run ")
    )
    assert set(runs) <= set(slots)


async def _more(count: Any, target: int) -> bool:
    return bool(await count() >= target)


async def _new_leader(leader_pid: Any, killed: list[int]) -> bool:
    pid = await leader_pid()
    return pid is not None and pid not in killed
