"""Exactly-once effects across a real crash: a worker process SIGKILLed between its handler's
write in ``ctx.transaction()`` and the commit, and one SIGKILLed right after the commit. The
effect (a row the handler wrote on the transaction's connection) exists exactly once and the job
is completed exactly once, by the run whose transaction committed. And lifecycle events across
real crashes: a poison job discarded as ``worker_lost`` raises one ``JobDiscarded``.

The processes are ``tests.procs.txapp`` workers; the tests wait on conditions in the database
and the run log (with deadlines), never on fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import relaybus as rb
from tests.procs.txapp import Effect, build_bus, effects_table
from tests.stores import mysql_admin, mysql_sql
from tests.test_processes import ROOT, Target, make_target, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(params=["postgres", "mysql", "sqlite"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    async with make_target(request.param, tmp_path) as made:
        await _sql(
            made, f"CREATE TABLE {_table(made)} (job_id INTEGER, attempt INTEGER, pid INTEGER)"
        )
        yield made


def _table(target: Target) -> str:
    return effects_table(target.dsn, target.schema)


async def _sql(target: Target, sql: str) -> list[Any]:
    """Run ``sql`` on a connection of the test's own (never the store's)."""
    if target.kind == "sqlite":
        conn = sqlite3.connect(target.dsn.removeprefix("sqlite:///"))
        try:
            rows = conn.execute(sql).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    if target.kind == "postgres":
        import asyncpg

        pg = await asyncpg.connect(target.dsn)
        try:
            return list(await pg.fetch(sql))
        finally:
            await pg.close()
    my = await mysql_admin(target.dsn)
    try:
        return await mysql_sql(my, sql)
    finally:
        my.close()


async def effects(target: Target) -> list[tuple[int, int, int]]:
    rows = await _sql(target, f"SELECT job_id, attempt, pid FROM {_table(target)}")
    return sorted((int(a), int(b), int(c)) for a, b, c in rows)


def lines(log: Path, kind: str) -> list[tuple[int, int, int]]:
    """(job id, attempt, pid) of every ``kind`` line (wrote / committed)."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == kind:
            out.append((int(parts[1]), int(parts[2]), int(parts[3])))
    return out


class Workers:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, node: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "tests.procs.txapp", *self.target.args(), "--node", node]
        proc = subprocess.Popen(cmd, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(target: Target) -> Iterator[Workers]:
    started = Workers(target)
    yield started
    started.stop_all()


def _bus(target: Target) -> rb.Bus[Any]:
    return build_bus(target.dsn, target.schema, str(target.log))


async def _completed(bus: rb.Bus[Any], job_id: int) -> rb.Job | None:
    job = await bus.jobs.get(job_id)
    return job if job is not None and job.state is rb.JobState.COMPLETED else None


async def test_sigkill_between_the_write_and_the_commit(target: Target, workers: Workers) -> None:
    """The uncommitted write dies with the process; the rescued rerun writes and completes."""
    async with _bus(target) as bus:
        job_id = (await bus.dispatch(Effect(1, "pause_before_commit"))).jobs[0].id
        first = workers.start("a")
        await wait_until(lambda: lines(target.log, "wrote"), 30, "the write of attempt 1")
        assert await effects(target) == []  # written, not committed: invisible to others
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = workers.start("b")
        job = await wait_until(lambda: _completed(bus, job_id), 60, "the rerun to complete")
        assert job.attempt == 2
        assert [e.kind for e in job.errors] == ["rescued"]
        assert await effects(target) == [(job_id, 2, second.pid)]  # exactly once, by attempt 2
        assert lines(target.log, "wrote") == [(job_id, 1, first.pid), (job_id, 2, second.pid)]
        assert lines(target.log, "committed") == [(job_id, 2, second.pid)]


async def test_sigkill_after_the_commit(target: Target, workers: Workers) -> None:
    """The commit completed the job: the crash after it reruns nothing and doubles nothing."""
    async with _bus(target) as bus:
        job_id = (await bus.dispatch(Effect(1, "pause_after_commit"))).jobs[0].id
        first = workers.start("a")
        await wait_until(lambda: lines(target.log, "committed"), 30, "the commit of attempt 1")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        done = await _completed(bus, job_id)
        assert done is not None and done.attempt == 1 and done.errors == ()
        workers.start("b")

        async def a_expired_and_b_works() -> bool:
            # The dead node's lease is over (its running jobs would be rescued now) and the new
            # node has run a later job end to end.
            nodes = [n.node for n in await bus.nodes()]
            return not any(n.startswith("a-") for n in nodes) and any(
                n.startswith("b-") for n in nodes
            )

        await wait_until(a_expired_and_b_works, 60, "node a to expire while b runs")
        sentinel = (await bus.dispatch(Effect(2))).jobs[0].id
        await wait_until(lambda: _completed(bus, sentinel), 60, "a later job to complete")
        assert await bus.jobs.get(job_id) == done  # completed once, never touched again
        assert [e for e in await effects(target) if e[0] == job_id] == [(job_id, 1, first.pid)]
        assert [w for w in lines(target.log, "wrote") if w[0] == job_id] == [(job_id, 1, first.pid)]


async def test_a_poison_job_lost_with_its_processes_raises_one_job_discarded(
    target: Target, workers: Workers
) -> None:
    """A job that kills its worker every time is discarded by the rescuer of a live node
    (``worker_lost``); its JobDiscarded event is inserted with that discard, once, and handled."""
    async with _bus(target) as bus:
        poison = (await bus.dispatch(Effect(0, "always_exit"))).jobs[0].id
        restarts = 0

        async def discarded_while_supervised() -> rb.Job | None:
            nonlocal restarts
            job = await bus.jobs.get(poison)
            if job is not None and job.state is rb.JobState.DISCARDED:
                return job
            if not [p for p in workers.procs if p.poll() is None]:
                workers.start(f"w{restarts}")  # a supervisor: restart the killed worker
                restarts += 1
            return None

        job = await wait_until(discarded_while_supervised, 120, "the poison job's discard")
        assert job.errors[-1].kind == "worker_lost"
        if not [p for p in workers.procs if p.poll() is None]:
            workers.start("after")
        await wait_until(lambda: lines_of(target.log, "dead"), 60, "the dead letter")
        [(kind, dead_job)] = [(d[1], d[0]) for d in lines_of(target.log, "dead")]
        assert (dead_job, kind) == (poison, "worker_lost")
        letters = await bus.jobs.list(handler="procs.dead_letter")
        assert [(j.state, j.payload["job"]["id"]) for j in letters] == [
            (rb.JobState.COMPLETED, poison)
        ]


def lines_of(log: Path, kind: str) -> list[tuple[int, str]]:
    """(job id, error kind) of every ``dead`` line."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == kind:
            out.append((int(parts[1]), parts[2]))
    return out
