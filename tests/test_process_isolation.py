"""isolation="process": plain def handlers in child processes, killed at their timeout.

A busy loop past its timeout is killed and replaced while the worker's other jobs keep
running; no slot leaks; the pool recovers. Registration errors are clear.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import relaybus as rb
from tests.procs.isolated import Crunch, crunch, register

APP = "tests.procs.isolated:bus"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Ping(rb.Event, name="tests.isolation.ping"):
    n: int


def module_level_sync(event: Ping, ctx: rb.Context[Any]) -> None:
    return None


async def module_level_async(event: Ping, ctx: rb.Context[Any]) -> None:
    return None


async def wait_until(check: Callable[[], Any], limit: float, what: str) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.02)


async def state_of(bus: rb.Bus[Any], job_id: int) -> rb.JobState | None:
    job = await bus.jobs.get(job_id)
    return None if job is None else job.state


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- registration


def test_registration_errors_are_clear() -> None:
    bus: rb.Bus[None] = rb.Bus()
    with pytest.raises(rb.ConfigurationError, match="is async: isolation='process' runs plain"):
        bus.job(Ping, name="a", isolation="process")(module_level_async)
    with pytest.raises(rb.ConfigurationError, match="is a lambda"):
        bus.job(Ping, name="b", isolation="process")(lambda event, ctx: None)

    def local(event: Ping, ctx: rb.Context[Any]) -> None:
        return None

    with pytest.raises(rb.ConfigurationError, match="defined inside test_registration_errors"):
        bus.job(Ping, name="c", isolation="process")(local)

    class Callable_:
        def __call__(self, event: Ping, ctx: rb.Context[Any]) -> None:
            return None

    with pytest.raises(rb.ConfigurationError, match="takes a module-level def function"):
        bus.job(Ping, name="d", isolation="process")(Callable_())
    with pytest.raises(rb.ConfigurationError, match="isolation= takes 'process' or None"):
        bus.job(Ping, name="e", isolation="thread")(module_level_sync)  # type: ignore[arg-type]
    module_level_sync.__module__ = "__main__"  # as if defined in a script
    with pytest.raises(rb.ConfigurationError, match=r"defined in a script \(__main__\)"):
        bus.job(Ping, isolation="process")(module_level_sync)
    bus.job(Ping, name="f", isolation="process")(module_level_sync)
    module_level_sync.__module__ = __name__
    assert bus.registry.job_by_name["f"].isolation == "process"
    with pytest.raises(rb.ConfigurationError, match="app= takes 'MODULE:BUS'"):
        bus.worker(app="no-colon")


async def test_a_worker_without_the_app_refuses_to_start() -> None:
    bus: rb.Bus[None] = rb.Bus()
    register(bus)
    async with bus:
        with pytest.raises(rb.ConfigurationError, match=r"bus.worker\(app='module:bus'"):
            async with bus.worker(queues={"cpu": 1}):
                pass
        # a worker that does not serve the handler's queue needs no pool
        async with bus.worker(queues={"default": 1}) as worker:
            assert worker.pool is None


async def test_an_app_without_the_handler_is_a_clear_error() -> None:
    bus: rb.Bus[None] = rb.Bus()
    register(bus)
    async with bus:
        with pytest.raises(rb.ConfigurationError, match="has no process handler"):
            async with bus.worker(queues={"cpu": 1}, app="tests.procs.isolated:empty"):
                pass
        with pytest.raises(rb.ConfigurationError, match="could not import the app"):
            async with bus.worker(queues={"cpu": 1}, app="tests.procs.no_such_module:bus"):
                pass


# -- running


async def test_a_busy_loop_is_killed_at_its_timeout_and_the_pool_recovers(
    tmp_path: Path,
) -> None:
    out = tmp_path / "runs.txt"
    bus: rb.Bus[None] = rb.Bus()
    register(bus)
    pings: list[int] = []

    @bus.job(Ping, name="tests.isolation.ping", timeout=5)
    async def ping(event: Ping, ctx: rb.Context[Any]) -> None:
        pings.append(event.n)

    async with (
        bus,
        bus.worker(
            queues={"cpu": 2, "default": 4}, app=APP, process_pool=2, poll_interval=0.05
        ) as worker,
    ):
        pool = worker.pool
        assert pool is not None and pool.size == 2 and pool.idle == 2
        first_pids = set(pool.pids)
        busy = (await bus.dispatch(Crunch("busy"))).jobs[0].id
        await wait_until(lambda: pool.idle == 1, 10, "the busy job to take a child")
        # While one child spins, the other child and the async jobs keep working.
        ok = (await bus.dispatch(Crunch("ok", str(out)), meta={"tenant": "acme"})).jobs[0].id
        await wait_until(
            lambda: _is(bus, ok, rb.JobState.COMPLETED), 10, "a job in the other child"
        )
        ping_ids = [(await bus.dispatch(Ping(n))).jobs[0].id for n in range(5)]
        await wait_until(lambda: len(pings) == 5, 10, "the async jobs")

        await wait_until(lambda: _is(bus, busy, rb.JobState.DISCARDED), 10, "the timeout")
        job = await bus.jobs.get(busy)
        assert job is not None
        assert [e.kind for e in job.errors] == ["timeout"]
        assert "child process was killed" in job.errors[0].message
        assert pool.replaced == 1
        ok_job = await bus.jobs.get(ok)
        ends = [(await bus.jobs.get(i)).finalized_at for i in ping_ids]  # type: ignore[union-attr]
        assert ok_job is not None and job.finalized_at is not None
        assert all(
            end is not None and end < job.finalized_at for end in [*ends, ok_job.finalized_at]
        )
        await wait_until(lambda: pool.idle == 2, 30, "the replacement child")
        killed = first_pids - set(pool.pids)
        assert len(killed) == 1
        await wait_until(lambda: not alive(next(iter(killed))), 10, "the killed child to go")

        # The pool recovered: both children run jobs again.
        ids = [
            (await bus.dispatch(Crunch("ok", str(out)), meta={"tenant": "acme"})).jobs[0].id
            for _ in range(4)
        ]
        await wait_until(
            lambda: _all(bus, ids, rb.JobState.COMPLETED), 20, "jobs after the recovery"
        )
        assert not worker.node.runs  # no run left behind
        lines = [line.split() for line in out.read_text().splitlines()]
        assert len(lines) == 5
        assert {int(line[2]) for line in lines} <= set(pool.pids) | first_pids
        assert os.getpid() not in {int(line[2]) for line in lines}
        assert {line[3] for line in lines} == {"acme"}  # meta reached the child
        assert all(line[1] == "1" for line in lines)
        producer = worker.producers["cpu"]
        await wait_until(lambda: producer._idle_slots == 2, 5, "both cpu slots idle")
    assert not any(alive(pid) for pid in pool.pids)  # the worker stopped its children


async def test_errors_outcomes_and_crashes_of_a_child(tmp_path: Path) -> None:
    bus: rb.Bus[None] = rb.Bus()
    register(bus)
    async with bus, bus.worker(queues={"cpu": 1}, app=APP, poll_interval=0.05) as worker:
        pool = worker.pool
        assert pool is not None
        fail = (await bus.dispatch(Crunch("fail"))).jobs[0].id
        snooze = (await bus.dispatch(Crunch("snooze"))).jobs[0].id
        crash = (await bus.dispatch(Crunch("exit"))).jobs[0].id
        await wait_until(lambda: _is(bus, fail, rb.JobState.DISCARDED), 20, "the failure")
        await wait_until(lambda: _is(bus, snooze, rb.JobState.SCHEDULED), 20, "the snooze")
        await wait_until(lambda: _is(bus, crash, rb.JobState.DISCARDED), 20, "the crash")
        failed = await bus.jobs.get(fail)
        assert failed is not None
        error = failed.errors[0]
        assert (error.kind, error.message) == ("ValueError", f"bad input for job {fail}")
        assert error.traceback is not None and "def crunch" not in error.traceback
        assert "tests/procs/isolated.py" in error.traceback  # the child's own traceback
        crashed = await bus.jobs.get(crash)
        assert crashed is not None
        assert "exited with code 7" in crashed.errors[0].message
        await wait_until(lambda: pool.idle == 1, 30, "the replacement child")
        ok = (await bus.dispatch(Crunch("ok", str(tmp_path / "o.txt")))).jobs[0].id
        await wait_until(lambda: _is(bus, ok, rb.JobState.COMPLETED), 20, "a job after it")


async def test_drain_runs_a_process_handler_in_a_thread(tmp_path: Path) -> None:
    bus: rb.Bus[None] = rb.Bus()
    register(bus)
    out = tmp_path / "drained.txt"
    async with bus:
        await bus.dispatch(Crunch("ok", str(out)))
        await rb.testing.drain(bus)
    assert out.read_text().split()[2] == str(os.getpid())
    assert crunch.__module__ == "tests.procs.isolated"


async def _is(bus: rb.Bus[Any], job_id: int, state: rb.JobState) -> bool:
    return await state_of(bus, job_id) is state


async def _all(bus: rb.Bus[Any], ids: list[int], state: rb.JobState) -> bool:
    return all([await state_of(bus, job_id) is state for job_id in ids])


async def test_the_worker_command_gives_its_app_to_the_children(tmp_path: Path) -> None:
    """`relaybus worker MODULE:BUS`: the children import the same MODULE:BUS."""
    dsn = f"sqlite:///{tmp_path / 'jobs.db'}"
    out = tmp_path / "runs.txt"
    bus: rb.Bus[None] = rb.Bus(store=rb.SQLiteStore(tmp_path / "jobs.db"))
    register(bus)
    env = dict(os.environ, ISOLATED_DSN=dsn)
    async with bus:
        busy = (await bus.dispatch(Crunch("busy"))).jobs[0].id
        ok = (await bus.dispatch(Crunch("ok", str(out)))).jobs[0].id
        cmd = [sys.executable, "-m", "relaybus", "worker", APP, "--queues", "cpu=2",
               "--poll-interval", "0.1", "--grace", "2"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
        try:
            await wait_until(lambda: _is(bus, ok, rb.JobState.COMPLETED), 30, "the ok job")
            await wait_until(lambda: _is(bus, busy, rb.JobState.DISCARDED), 30, "the timeout")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        job = await bus.jobs.get(busy)
    assert code == 0
    assert job is not None and [e.kind for e in job.errors] == ["timeout"]
    assert int(out.read_text().split()[2]) not in (os.getpid(), proc.pid)
