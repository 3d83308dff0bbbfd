"""A real worker process stops gracefully as soon as its running jobs end, well before its
grace runs out: SIGTERM with only short jobs running -> exit code 0 right after they finish."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.procs.app import Work
from tests.test_processes import Processes, Target, make_target, runs, wait_until

pytestmark = pytest.mark.slow

GRACE = 60.0


@pytest.fixture(params=["sqlite", "postgres"])
async def stop_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    async with make_target(request.param, tmp_path) as made:
        yield made


@pytest.fixture
def stop_procs(stop_target: Target) -> Iterator[Processes]:
    processes = Processes(stop_target)
    yield processes
    processes.stop_all()


async def test_sigterm_exits_0_as_soon_as_the_short_jobs_end(
    stop_target: Target, stop_procs: Processes
) -> None:
    async with stop_target.bus() as bus:
        results = await bus.dispatch_many([Work(n, "sleep", 1.0) for n in (1, 2)])
        ids = [r.jobs[0].id for r in results]
        proc = stop_procs.worker("stopper", grace=GRACE, concurrency=4)

        def both_started() -> bool:
            return len({r[1] for r in runs(stop_target.log) if r[0] == "start"}) == 2

        await wait_until(both_started, 30, "both jobs to start")
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await wait_until(lambda: proc.poll() is not None, GRACE / 2, "the worker to exit")
        assert proc.returncode == 0
        assert time.monotonic() - signalled < GRACE / 2  # not the whole grace
        ends = {r[1] for r in runs(stop_target.log) if r[0] == "end"}
        assert ends == set(ids)  # both finished their run before the exit
        for job_id in ids:
            job = await bus.jobs.get(job_id)
            assert job is not None and job.state.value == "completed"
