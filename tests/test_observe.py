"""bus.observe: the runtime events (memory store, fake clock)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest

import relaybus as rb
from relaybus.testing import FakeClock
from tests.conformance._support import claim, wait_for


@dataclass(frozen=True)
class Work(rb.Event, name="obs.work"):
    n: int = 0
    mode: str = "ok"


class Recorder:
    def __init__(self) -> None:
        self.events: list[rb.RuntimeEvent] = []
        self.finished = asyncio.Event()
        self.want_finished = 1

    def __call__(self, event: rb.RuntimeEvent) -> None:
        self.events.append(event)
        done = [e for e in self.events if isinstance(e, rb.JobFinished)]
        if len(done) >= self.want_finished:
            self.finished.set()

    def of(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


def make_bus(clock: FakeClock) -> rb.Bus[None]:
    bus: rb.Bus[None] = rb.Bus(store=rb.MemoryStore(clock=clock))

    @bus.job(Work, name="obs.handler", queue="q", max_attempts=2, backoff=rb.Constant(10))
    async def handler(event: Work, ctx: rb.Context[None]) -> None:
        clock.advance(2.5)  # the run takes 2.5 s of fake time
        if event.mode == "fail":
            raise RuntimeError("boom")
        if event.mode == "snooze":
            raise rb.Snooze(30)
        if event.mode == "cancel":
            raise rb.Cancel("no")
        if event.mode == "discard":
            raise rb.Discard("never")

    return bus


async def test_a_job_is_inserted_claimed_and_finished(clock: FakeClock) -> None:
    bus = make_bus(clock)
    seen = Recorder()
    bus.observe(seen)
    async with bus:
        result = await bus.dispatch(Work(1), delay=4)
        job_id = result.jobs[0].id
        [inserted] = seen.of(rb.JobsInserted)
        assert inserted.jobs == (rb.InsertedJob(job_id, "obs.handler", "q", "inserted"),)
        assert inserted.started_at == clock.now()
        assert inserted.error is None
        assert inserted.duration >= 0
        clock.advance(7)  # due 4 s after insert; claimed 3 s late
        async with bus.worker(queues={"q": 1}, node="obs") as w:
            await w.stager.run_once()
            await wait_for(seen.finished)
    [started] = seen.of(rb.NodeStarted)
    assert started.node == w.node.id and started.queues == {"q": 1}
    [claimed] = seen.of(rb.JobClaimed)
    assert (claimed.node, claimed.job_id, claimed.handler, claimed.queue, claimed.attempt) == (
        w.node.id, job_id, "obs.handler", "q", 1,
    )  # fmt: skip
    assert claimed.priority == 2
    assert claimed.wait == 3.0
    [finished] = seen.of(rb.JobFinished)
    assert (finished.job_id, finished.outcome, finished.error) == (job_id, "completed", None)
    assert finished.duration == 2.5
    assert seen.of(rb.NodeStopped) == [rb.NodeStopped(w.node.id)]
    kinds = [type(e).__name__ for e in seen.events]
    assert kinds.index("NodeStarted") < kinds.index("JobClaimed") < kinds.index("JobFinished")
    assert kinds[-1] == "NodeStopped"


@pytest.mark.parametrize(
    ("mode", "attempts", "outcome", "error_kind"),
    [
        ("fail", 1, "retried", "RuntimeError"),
        ("fail", 2, "discarded", "RuntimeError"),
        ("snooze", 1, "snoozed", None),
        ("cancel", 1, "cancelled", "cancelled"),
        ("discard", 1, "discarded", "discarded"),
    ],
)
async def test_finished_carries_the_outcome(
    clock: FakeClock, mode: str, attempts: int, outcome: str, error_kind: str | None
) -> None:
    bus = make_bus(clock)
    seen = Recorder()
    bus.observe(seen)
    async with bus:
        await bus.dispatch(Work(1, mode))
        async with bus.worker(queues={"q": 1}) as w:
            await wait_for(seen.finished)
            for n in range(1, attempts):
                seen.finished.clear()
                seen.want_finished = n + 1
                await w.completer.flush()  # the retry is written
                clock.advance(11)  # past the constant backoff
                await w.stager.run_once()
                await wait_for(seen.finished)
    last = seen.of(rb.JobFinished)[-1]
    assert (last.attempt, last.outcome) == (attempts, outcome)
    assert (last.error.kind if last.error else None) == error_kind


async def test_timeout_and_shutdown(clock: FakeClock) -> None:
    bus: rb.Bus[None] = rb.Bus(store=rb.MemoryStore(clock=clock))
    release = asyncio.Event()

    @bus.job(Work, name="obs.slow", timeout=0.05)
    async def slow(event: Work, ctx: rb.Context[None]) -> None:
        await asyncio.sleep(60)

    @bus.job(Work, name="obs.stuck", queue="stuck", timeout=None)
    async def stuck(event: Work, ctx: rb.Context[None]) -> None:
        release.set()
        await asyncio.sleep(60)

    seen = Recorder()
    seen.want_finished = 1
    bus.observe(seen)
    async with bus:
        await bus.dispatch(Work(1))
        async with bus.worker(queues={"default": 1}):
            await wait_for(seen.finished)
        [timed_out] = seen.of(rb.JobFinished)
        assert timed_out.outcome == "retried"
        assert timed_out.error is not None and timed_out.error.kind == "timeout"
        seen.events.clear()
        w = bus.worker(queues={"stuck": 1}, grace=0)
        async with w:
            await wait_for(release)
        [returned] = seen.of(rb.JobFinished)
        assert (returned.handler, returned.outcome) == ("obs.stuck", "returned")
        assert returned.error is None


async def test_rescue_and_leadership(clock: FakeClock) -> None:
    bus = make_bus(clock)
    seen = Recorder()
    bus.observe(seen)
    async with bus:
        job_id = (await bus.dispatch(Work(1))).jobs[0].id
        await claim(bus.store, "ghost", queue="q")  # a node that never heartbeats
        w = bus.worker(queues={"q": 1}, node="leader", node_ttl=30)
        assert await w.elector.run_once() is True
        assert await w.elector.run_once() is True  # renewed: reported once
        assert seen.of(rb.LeadershipGained) == [rb.LeadershipGained(w.node.id)]
        assert await w.rescuer.run_once() == 1
        [rescued] = seen.of(rb.JobRescued)
        assert (rescued.node, rescued.job_id, rescued.handler, rescued.queue) == (
            w.node.id, job_id, "obs.handler", "q",
        )  # fmt: skip
        assert (rescued.attempt, rescued.state) == (1, rb.JobState.RETRYABLE)

        other = bus.worker(queues={"q": 1}, node="other", node_ttl=30)
        clock.advance(31)  # the lease ran out
        assert await other.elector.run_once() is True
        assert await w.elector.run_once() is False
        assert seen.of(rb.LeadershipLost) == [rb.LeadershipLost(w.node.id)]
        await other.elector.resign()
        assert seen.of(rb.LeadershipLost)[-1] == rb.LeadershipLost(other.node.id)


async def test_a_failing_observer_is_logged_and_changes_nothing(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus(clock)
    seen = Recorder()

    def broken(event: rb.RuntimeEvent) -> None:
        raise ValueError("observer bug")

    bus.observe(broken)
    bus.observe(seen)
    with caplog.at_level(logging.ERROR, "relaybus"):
        async with bus:
            await bus.dispatch(Work(1))
            async with bus.worker(queues={"q": 1}):
                await wait_for(seen.finished)
    assert seen.of(rb.JobFinished)[0].outcome == "completed"
    assert any("observer" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


async def test_unsubscribe_and_bad_observer(clock: FakeClock) -> None:
    bus = make_bus(clock)
    seen = Recorder()
    remove = bus.observe(seen)
    remove()
    remove()  # idempotent
    assert not bus.observers
    with pytest.raises(rb.ConfigurationError, match="callable"):
        bus.observe("not callable")  # type: ignore[arg-type]
    async with bus:
        await bus.dispatch(Work(1))
    assert seen.events == []


async def test_a_failed_insert_is_reported_with_its_error(clock: FakeClock) -> None:
    bus = make_bus(clock)
    seen = Recorder()
    bus.observe(seen)
    async with bus:
        pass  # closed: the insert fails
    with pytest.raises(rb.StoreClosed):
        await bus.dispatch(Work(1))
    [failed] = seen.of(rb.JobsInserted)
    assert failed.jobs == () and isinstance(failed.error, rb.StoreClosed)


async def test_an_observer_of_some_kinds_gets_only_those(clock: FakeClock) -> None:
    """``kinds=``: only events of those classes reach the observer (the runtime builds no
    event that nobody takes); a bad kind is a clear error."""
    bus = make_bus(clock)
    everything, inserts, finishes = Recorder(), Recorder(), Recorder()
    bus.observe(everything)
    bus.observe(inserts, kinds=[rb.JobsInserted])
    remove = bus.observe(finishes, kinds=(rb.JobFinished, rb.NodeStopped))
    for bad in (rb.JobFinished, (), ("JobFinished",), (int,)):
        with pytest.raises(rb.ConfigurationError, match="RuntimeEvent classes"):
            bus.observe(Recorder(), kinds=bad)  # type: ignore[arg-type]
    async with bus:
        await bus.dispatch(Work(1))
        async with bus.worker(queues={"q": 1}):
            await wait_for(everything.finished)
        assert {type(e) for e in inserts.events} == {rb.JobsInserted}
        assert {type(e) for e in finishes.events} == {rb.JobFinished, rb.NodeStopped}
        assert {rb.JobsInserted, rb.JobClaimed, rb.JobFinished, rb.NodeStarted} <= {
            type(e) for e in everything.events
        }
        remove()
        finishes.events.clear()
        everything.want_finished = 2
        everything.finished.clear()
        await bus.dispatch(Work(2))
        async with bus.worker(queues={"q": 1}):
            await wait_for(everything.finished)
    assert finishes.events == []
    assert len(inserts.of(rb.JobsInserted)) == 2
