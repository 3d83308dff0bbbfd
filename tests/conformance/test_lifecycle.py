"""Lifecycle events (``Bus(lifecycle_events=True)``): ``rb.JobDiscarded`` and ``rb.JobCancelled``
on every path that discards or cancels a job, exactly one per state change, carrying the job's
record, handled by ordinary job handlers; none for a job that handles a lifecycle event.

Every test counts the lifecycle jobs in the store itself (``bus.jobs.list(handler=...)``), so
"exactly one" is checked on the rows, not on what a handler happened to see.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import relaybus as rb
from relaybus._driver import Completion, FetchParams

from ._support import Ping, beat, claim, job_of, one_id

S = rb.JobState
TTL = 30


class Seen:
    """The lifecycle handlers of one bus and what they saw."""

    def __init__(self, bus: rb.Bus[Any]) -> None:
        self.bus = bus
        self.discarded: list[rb.Job] = []
        self.cancelled: list[rb.Job] = []

        @bus.job(rb.JobDiscarded, name="conf.life.on_discard", queue="life")
        async def on_discard(event: rb.JobDiscarded, ctx: rb.Context) -> None:
            self.discarded.append(event.job)

        @bus.job(rb.JobCancelled, name="conf.life.on_cancel", queue="life")
        async def on_cancel(event: rb.JobCancelled, ctx: rb.Context) -> None:
            self.cancelled.append(event.job)

    async def rows(self, handler: str) -> list[rb.Job]:
        return await self.bus.jobs.list(handler=handler, limit=1000)

    async def counts(self) -> tuple[int, int]:
        """How many lifecycle jobs exist: (discarded, cancelled)."""
        discarded = await self.rows("conf.life.on_discard")
        cancelled = await self.rows("conf.life.on_cancel")
        return len(discarded), len(cancelled)


def _bus(store: Any) -> tuple[rb.Bus[Any], Seen]:
    bus: rb.Bus[Any] = rb.Bus(store=store, lifecycle_events=True)
    return bus, Seen(bus)


async def test_a_discard_raises_one_job_discarded_with_the_record(store, clock) -> None:
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.discards")
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise rb.Discard("no such customer")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(7), meta={"tenant": "acme"}))
        assert await rb.testing.drain(bus) == 2  # the job, then its lifecycle event
        assert await seen.counts() == (1, 0)
        [record] = seen.discarded
        assert record == await job_of(bus, job_id)
        assert record.state is S.DISCARDED
        assert record.handler == "conf.life.discards"
        assert record.payload == {"n": 7}
        assert record.meta == {"tenant": "acme"}
        assert [(e.kind, e.message) for e in record.errors] == [("discarded", "no such customer")]
        [row] = await seen.rows("conf.life.on_discard")
        assert row.event == "relaybus.job_discarded"
        assert row.queue == "life"
        assert row.state is S.COMPLETED


async def test_exhausted_attempts_raise_one_job_discarded(store, clock) -> None:
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.exhausts", max_attempts=2, backoff=rb.Constant(10))
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise ValueError(f"attempt {ctx.job.attempt}")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        assert await rb.testing.drain(bus) == 1
        assert await seen.counts() == (0, 0)  # a retry raises nothing
        clock.advance(10)
        assert await rb.testing.drain(bus) == 2
        assert await seen.counts() == (1, 0)
        [record] = seen.discarded
        assert record.id == job_id
        assert [e.message for e in record.errors] == ["attempt 1", "attempt 2"]


async def test_a_cancel_raises_one_job_cancelled(store, clock) -> None:
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.cancels")
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise rb.Cancel("order withdrawn")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        assert await rb.testing.drain(bus) == 2
        assert await seen.counts() == (0, 1)
        [record] = seen.cancelled
        assert (record.id, record.state) == (job_id, S.CANCELLED)
        assert record.errors[-1].message == "order withdrawn"


async def test_completions_snoozes_and_returns_raise_nothing(store, clock) -> None:
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.quiet")
    async def h(event: Ping, ctx: rb.Context) -> None:
        if event.n == 1 and ctx.job.attempt == 1:
            raise rb.Snooze(5)

    async with bus:
        await bus.dispatch_many([Ping(1), Ping(2)])
        await rb.testing.drain(bus)
        clock.advance(5)
        await rb.testing.drain(bus)
        assert await seen.counts() == (0, 0)


async def test_a_completion_carried_by_a_fetch_raises_one_event(store, clock) -> None:
    """The producer's path: a fetch finishes the node's last runs and claims the next ones
    (PostgreSQL: end_runs_and_fetch); a discard among them raises its event exactly once."""
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.carried")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(1), Ping(2), Ping(3)])]
        await beat(store, "node-a")
        first = await claim(store, "node-a", limit=2)
        assert sorted(c.id for c in first) == ids[:2]
        error = rb.JobError(clock.now(), 1, "discarded", "carried away")
        done = [
            Completion(first[0].id, 1, "discard", error),
            Completion(first[1].id, 1, "completed"),
        ]
        params = FetchParams("default", 5, "node-a", 2, False, done)
        nxt = await store.fetch(params)
        assert [c.id for c in nxt] == [ids[2]]
        assert (await job_of(bus, first[0].id)).state is S.DISCARDED
        assert (await job_of(bus, first[1].id)).state is S.COMPLETED
        assert await seen.counts() == (1, 0)
        # The same completions again (a lost answer, retried): stale, nothing more.
        assert await store.fetch(FetchParams("default", 5, "node-a", 2, False, done)) == []
        assert await store.complete_many(done) == []
        assert await seen.counts() == (1, 0)
        assert await rb.testing.drain(bus, queues=["life"]) == 1
        assert [j.id for j in seen.discarded] == [first[0].id]


async def test_a_carried_completion_with_nothing_to_claim_still_raises(store, clock) -> None:
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.carried_last")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        await beat(store, "node-a")
        [c] = await claim(store, "node-a")
        error = rb.JobError(clock.now(), 1, "cancelled", "stop")
        done = [Completion(job_id, c.attempt, "cancel", error)]
        assert await store.fetch(FetchParams("default", 0, "node-a", 2, False, done)) == []
        assert (await job_of(bus, job_id)).state is S.CANCELLED
        assert await seen.counts() == (0, 1)


async def test_a_worker_carrying_completions_raises_each_event_once(store, clock) -> None:
    """End to end with a worker: runs that end in a discard while the producer keeps fetching."""
    bus, seen = _bus(store)
    done = 0

    @bus.job(Ping, name="conf.life.worker", max_attempts=1)
    async def h(event: Ping, ctx: rb.Context) -> None:
        nonlocal done
        done += 1
        if event.n % 2:
            raise ValueError("odd")

    async with bus:
        await bus.dispatch_many([Ping(n) for n in range(10)])
        async with bus.worker(queues={"default": 3, "life": 2}, poll_interval=0.05):
            for _ in range(400):
                if len(seen.discarded) >= 5 and done >= 10:
                    break
                await _tick()
        assert await seen.counts() == (5, 0)
        assert sorted(j.payload["n"] for j in seen.discarded) == [1, 3, 5, 7, 9]


async def _tick() -> None:
    await asyncio.sleep(0.02)


@pytest.mark.parametrize("max_rescues", [1, 3])
async def test_a_rescue_that_discards_raises_one_job_discarded(store, clock, max_rescues) -> None:
    """A job lost with its node ``max_rescues`` times (worker_lost), or lost on its last
    attempt, is discarded by the rescuer: one event. A rescue back to retryable raises none."""
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.rescued", max_attempts=2)
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = bus.worker(queues={"default": 1}, node_ttl=TTL, max_rescues=max_rescues)
        job_id = one_id(await bus.dispatch(Ping(1)))
        for round_ in range(2):
            await w.stager.run_once()
            assert [c.id for c in await claim(store, f"dead-{round_}")] == [job_id]
            clock.advance(TTL + 1)
            assert await w.rescuer.run_once() == 1
            job = await job_of(bus, job_id)
            if job.state is S.DISCARDED:
                break
            assert job.state is S.RETRYABLE
            assert await seen.counts() == (0, 0)
        assert job.state is S.DISCARDED
        kind = "worker_lost" if max_rescues == 1 else "rescued"
        assert job.errors[-1].kind == kind
        assert await w.rescuer.run_once() == 0
        assert await seen.counts() == (1, 0)
        assert await rb.testing.drain(bus, queues=["life"]) == 1
        assert seen.discarded[0].errors[-1].kind == kind


async def test_a_unique_conflict_when_staged_raises_one_job_discarded(store, clock) -> None:
    bus, seen = _bus(store)
    blocking = frozenset({S.SCHEDULED, S.AVAILABLE, S.RUNNING})

    @bus.job(
        Ping,
        name="conf.life.unique",
        unique=rb.Unique(states=blocking),
        backoff=rb.Constant(60),
    )
    async def h(event: Ping, ctx: rb.Context) -> None:
        if ctx.job.attempt == 1:
            raise ValueError("fail once")

    async with bus:
        old = one_id(await bus.dispatch(Ping(2)))
        await rb.testing.drain(bus)
        assert (await job_of(bus, old)).state is S.RETRYABLE
        holder = one_id(await bus.dispatch(Ping(2), delay=3600))
        clock.advance(60)
        w = bus.worker(queues={"default": 1})
        await w.stager.run_once()
        job = await job_of(bus, old)
        assert job.state is S.DISCARDED
        assert job.errors[-1].kind == "unique_conflict"
        await w.stager.run_once()
        assert await seen.counts() == (1, 0)
        assert await rb.testing.drain(bus, queues=["life"]) == 1
        [record] = seen.discarded
        assert record.id == old
        assert str(holder) in record.errors[-1].message


async def test_an_admin_cancel_raises_one_job_cancelled(store, clock) -> None:
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.admin")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        pending = one_id(await bus.dispatch(Ping(1), delay=60))
        running = one_id(await bus.dispatch(Ping(2)))
        await beat(store, "node-a")
        assert [c.id for c in await claim(store, "node-a")] == [running]
        for job_id in (pending, running):
            assert (await bus.jobs.cancel(job_id)).state is S.CANCELLED
            assert (await bus.jobs.cancel(job_id)).state is S.CANCELLED  # again: no change
        assert await seen.counts() == (0, 2)
        # The cancelled run's late completion is stale: no event.
        assert await store.complete_many([Completion(running, 1, "discard")]) == []
        assert await seen.counts() == (0, 2)
        assert await rb.testing.drain(bus, queues=["life"]) == 2
        assert sorted(j.id for j in seen.cancelled) == [pending, running]
        assert all(j.errors[-1].kind == "cancelled" for j in seen.cancelled)


async def test_a_bulk_cancel_raises_one_job_cancelled_per_job(store, clock) -> None:
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.bulk")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(n) for n in range(4)], delay=60)]
        assert await bus.jobs.cancel_many(handler="conf.life.bulk") == 4
        assert await bus.jobs.cancel_many(handler="conf.life.bulk") == 0
        assert await seen.counts() == (0, 4)
        assert await rb.testing.drain(bus, queues=["life"]) == 4
        assert sorted(j.id for j in seen.cancelled) == ids


async def test_a_lifecycle_handler_that_fails_raises_no_event_about_itself(store, clock) -> None:
    """No loops: a dead-letter handler that is discarded or cancelled itself raises nothing."""
    bus: rb.Bus[Any] = rb.Bus(store=store, lifecycle_events=True)
    runs: list[int] = []

    @bus.job(Ping, name="conf.life.source")
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise rb.Discard("bad")

    @bus.job(rb.JobDiscarded, name="conf.life.failing_alert", max_attempts=1, queue="life")
    async def alert(event: rb.JobDiscarded, ctx: rb.Context) -> None:
        runs.append(event.job.id)
        raise RuntimeError("the pager is down")

    @bus.job(rb.JobCancelled, name="conf.life.cancelling_alert", queue="life")
    async def cancel_alert(event: rb.JobCancelled, ctx: rb.Context) -> None:
        raise rb.Cancel("not today")

    async with bus:
        source = one_id(await bus.dispatch(Ping(1)))
        assert await rb.testing.drain(bus) == 2
        assert runs == [source]
        [alert_job] = await bus.jobs.list(handler="conf.life.failing_alert")
        assert alert_job.state is S.DISCARDED
        assert await bus.jobs.list(handler="conf.life.cancelling_alert") == []
        # An admin cancel of a pending lifecycle job raises nothing either.
        other = one_id(await bus.dispatch(Ping(2)))
        await rb.testing.drain(bus, queues=["default"])
        [pending] = [
            j
            for j in await bus.jobs.list(handler="conf.life.failing_alert")
            if j.state is S.AVAILABLE
        ]
        assert pending.payload["job"]["id"] == other
        await bus.jobs.cancel(pending.id)
        assert await bus.jobs.list(handler="conf.life.cancelling_alert") == []
        assert len(await bus.jobs.list(handler="conf.life.failing_alert")) == 2


async def test_every_handler_of_the_event_gets_a_job(store, clock) -> None:
    bus: rb.Bus[Any] = rb.Bus(store=store, lifecycle_events=True)
    got: list[str] = []

    @bus.job(Ping, name="conf.life.fanout")
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise rb.Discard("x")

    @bus.job(rb.JobDiscarded, name="conf.life.alert")
    async def alert(event: rb.JobDiscarded, ctx: rb.Context) -> None:
        got.append("alert")

    @bus.job(rb.JobDiscarded, name="conf.life.archive", queue="archive")
    async def archive(event: rb.JobDiscarded, ctx: rb.Context) -> None:
        got.append("archive")

    async with bus:
        await bus.dispatch(Ping(1))
        assert await rb.testing.drain(bus) == 3
        assert sorted(got) == ["alert", "archive"]


async def test_lifecycle_events_are_off_by_default(store, clock) -> None:
    bus: rb.Bus[Any] = rb.Bus(store=store)
    seen = Seen(bus)

    @bus.job(Ping, name="conf.life.off")
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise rb.Discard("x")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        await rb.testing.drain(bus)
        await bus.jobs.cancel(one_id(await bus.dispatch(Ping(2), delay=60)))
        assert (await job_of(bus, job_id)).state is S.DISCARDED
        assert await seen.counts() == (0, 0)


async def test_without_handlers_a_state_change_raises_no_rows(store, clock) -> None:
    bus: rb.Bus[Any] = rb.Bus(store=store, lifecycle_events=True)

    @bus.job(Ping, name="conf.life.nobody")
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise rb.Discard("x")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        assert await rb.testing.drain(bus) == 1
        assert [j.id for j in await bus.jobs.list()] == [job_id]


async def test_lifecycle_events_take_job_handlers_only(store) -> None:
    bus: rb.Bus[Any] = rb.Bus(store=store, lifecycle_events=True)
    with pytest.raises(rb.ConfigurationError, match="job handler"):

        @bus.on(rb.JobDiscarded)
        async def inline(event: rb.JobDiscarded, ctx: rb.Context) -> None: ...

    with pytest.raises(rb.ConfigurationError, match="another bus"):
        rb.Bus(store=store, lifecycle_events=True)


class Exploding:
    """A lifecycle planner that fails: the state change must roll back with its event."""

    calls = 0

    def jobs_for(self, event: str, job: rb.Job) -> list[Any]:
        Exploding.calls += 1
        raise RuntimeError(f"cannot plan {event} for job {job.id}")


async def test_a_state_change_commits_only_with_its_lifecycle_event(store, clock) -> None:
    """Atomicity, path by path: when the event's jobs cannot be inserted, the change that
    raised them is rolled back too (the job is left as it was)."""
    bus, seen = _bus(store)
    blocking = frozenset({S.SCHEDULED, S.AVAILABLE, S.RUNNING})

    @bus.job(Ping, name="conf.life.atomic", unique=rb.Unique(states=blocking))
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        planner = store.lifecycle
        w = bus.worker(queues={"default": 1}, node_ttl=TTL, max_rescues=1)
        ids = [one_id(r) for r in await bus.dispatch_many([Ping(n) for n in range(3)])]
        await beat(store, "node-a", ttl=3600)
        claimed = {c.id: c for c in await claim(store, "node-a")}
        error = rb.JobError(clock.now(), 1, "discarded", "no")
        store.lifecycle = Exploding()
        discard = [Completion(ids[0], 1, "discard", error)]
        with pytest.raises(RuntimeError, match="cannot plan"):
            await store.complete_many(discard)
        assert (await job_of(bus, ids[0])).state is S.RUNNING
        with pytest.raises(RuntimeError, match="cannot plan"):
            await store.fetch(FetchParams("default", 1, "node-a", 2, False, discard))
        assert (await job_of(bus, ids[0])).state is S.RUNNING
        with pytest.raises(RuntimeError, match="cannot plan"):
            await bus.jobs.cancel(ids[1])
        assert (await job_of(bus, ids[1])).state is S.RUNNING
        await beat(store, "node-a", ttl=0.001)
        clock.advance(1)
        with pytest.raises(RuntimeError, match="cannot plan"):
            await w.rescuer.run_once()
        assert {(await job_of(bus, i)).state for i in ids} == {S.RUNNING}
        # With the planner back, every change applies once, with its event.
        store.lifecycle = planner
        assert await store.complete_many(discard) == [ids[0]]
        assert (await bus.jobs.cancel(ids[1])).state is S.CANCELLED
        assert await w.rescuer.run_once() == 1
        assert (await job_of(bus, ids[2])).errors[-1].kind == "worker_lost"
        assert await seen.counts() == (2, 1)
        assert len(claimed) == 3


async def test_racing_changes_of_one_job_raise_one_event(store, clock) -> None:
    """Ten concurrent admin cancels, a stale completion and a rescue of the same job (on the
    server stores, each on its own connection): one change wins, one event exists."""
    bus, seen = _bus(store)

    @bus.job(Ping, name="conf.life.race")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = bus.worker(queues={"default": 1}, node_ttl=TTL, max_rescues=1)
        job_id = one_id(await bus.dispatch(Ping(1)))
        [run] = await claim(store, "dead-node")
        clock.advance(TTL + 1)
        error = rb.JobError(clock.now(), 1, "discarded", "late")
        results = await asyncio.gather(
            *(bus.jobs.cancel(job_id) for _ in range(10)),
            store.complete_many([Completion(job_id, run.attempt, "discard", error)]),
            w.rescuer.run_once(),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        job = await job_of(bus, job_id)
        assert job.state in (S.CANCELLED, S.DISCARDED)
        assert sum(await seen.counts()) == 1
        expected = (1, 0) if job.state is S.DISCARDED else (0, 1)
        assert await seen.counts() == expected


async def test_lifecycle_handlers_on_a_bus_without_them_are_warned_about(store, caplog) -> None:
    bus: rb.Bus[Any] = rb.Bus(store=store)
    Seen(bus)
    async with bus:
        pass
    assert any("lifecycle_events=False" in r.getMessage() for r in caplog.records)
