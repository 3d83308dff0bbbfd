"""§2 Replace: on a unique conflict with a job in a listed state, update the listed fields
(outcome "replaced"); a running job is never modified."""

from __future__ import annotations

from datetime import timedelta

import pytest

import relaybus as rb
from relaybus.testing import drain

from ._support import Doc, claim, job_of, one_id, outcomes

S = rb.JobState
BY_KEY = rb.Unique(keys=("key",))


async def test_replace_available_payload_priority_meta(store) -> None:
    bus = rb.Bus(store=store)
    got: list[tuple[dict, dict, int]] = []

    @bus.job(
        Doc,
        name="conf.replace.avail",
        unique=BY_KEY,
        replace=rb.Replace(available=("payload", "priority", "meta")),
    )
    async def h(event: Doc, ctx: rb.Context) -> None:
        got.append((event.body, ctx.meta, ctx.job.priority))

    async with bus:
        first = await bus.dispatch(Doc("k", {"v": 1}), meta={"m": 1}, priority=5)
        job_id = one_id(first)
        again = await bus.dispatch(Doc("k", {"v": 2}), meta={"m": 2}, priority=1)
        assert outcomes(again) == ["replaced"]
        assert one_id(again) == job_id
        job = await job_of(bus, job_id)
        assert job.state is S.AVAILABLE
        assert job.payload == {"key": "k", "body": {"v": 2}}
        assert job.meta == {"m": 2}
        assert job.priority == 1
        assert len(await bus.jobs.list()) == 1
        assert await drain(bus) == 1
        assert got == [({"v": 2}, {"m": 2}, 1)]


async def test_only_the_listed_fields_change(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(
        Doc,
        name="conf.replace.some",
        unique=BY_KEY,
        max_attempts=4,
        replace=rb.Replace(available=("payload",)),
    )
    async def h(event: Doc, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Doc("k", {"v": 1}), meta={"m": 1}, priority=5))
        before = await job_of(bus, job_id)
        r = await bus.dispatch(Doc("k", {"v": 2}), meta={"m": 2}, priority=1, queue="other")
        assert outcomes(r) == ["replaced"]
        after = await job_of(bus, job_id)
        assert after.payload == {"key": "k", "body": {"v": 2}}
        assert after.meta == before.meta
        assert after.priority == before.priority
        assert after.queue == before.queue
        assert after.scheduled_at == before.scheduled_at
        assert after.max_attempts == before.max_attempts


async def test_replace_scheduled_moves_scheduled_at(store, clock) -> None:
    bus = rb.Bus(store=store)
    ran: list[dict] = []

    @bus.job(
        Doc,
        name="conf.replace.sched",
        unique=BY_KEY,
        replace=rb.Replace(scheduled=("scheduled_at", "payload")),
    )
    async def h(event: Doc, ctx: rb.Context) -> None:
        ran.append(event.body)

    async with bus:
        t0 = clock.now()
        job_id = one_id(await bus.dispatch(Doc("k", {"v": 1}), delay=600))
        r = await bus.dispatch(Doc("k", {"v": 2}), delay=60)
        assert (outcomes(r), one_id(r)) == (["replaced"], job_id)
        job = await job_of(bus, job_id)
        assert job.state is S.SCHEDULED
        assert job.scheduled_at == t0 + timedelta(seconds=60)
        clock.advance(60)
        assert await drain(bus) == 1
        assert ran == [{"v": 2}]


async def test_a_state_not_listed_is_a_duplicate(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(
        Doc,
        name="conf.replace.not_listed",
        unique=BY_KEY,
        replace=rb.Replace(available=("payload",)),
    )
    async def h(event: Doc, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Doc("k", {"v": 1}), delay=600))  # scheduled
        before = await job_of(bus, job_id)
        r = await bus.dispatch(Doc("k", {"v": 2}))
        assert (outcomes(r), one_id(r)) == (["duplicate"], job_id)
        assert await job_of(bus, job_id) == before


async def test_replace_retryable(store, clock) -> None:
    bus = rb.Bus(store=store)
    ran: list[tuple[dict, int]] = []

    @bus.job(
        Doc,
        name="conf.replace.retry",
        unique=BY_KEY,
        backoff=rb.Constant(60),
        max_attempts=2,
        replace=rb.Replace(retryable=("payload", "max_attempts")),
    )
    async def h(event: Doc, ctx: rb.Context) -> None:
        ran.append((event.body, ctx.job.max_attempts))
        if event.body.get("v") == 1:
            raise ValueError("v1 fails")

    async with bus:
        job_id = one_id(await bus.dispatch(Doc("k", {"v": 1})))
        await drain(bus)
        job = await job_of(bus, job_id)
        assert job.state is S.RETRYABLE
        retry_at = job.scheduled_at
        r = await bus.dispatch(Doc("k", {"v": 2}))  # registered max_attempts is 2 as well
        assert (outcomes(r), one_id(r)) == (["replaced"], job_id)
        job = await job_of(bus, job_id)
        assert job.state is S.RETRYABLE
        assert job.scheduled_at == retry_at  # scheduled_at was not listed
        assert job.payload["body"] == {"v": 2}
        assert len(job.errors) == 1
        clock.advance(60)
        assert await drain(bus) == 1
        assert ran == [({"v": 1}, 2), ({"v": 2}, 2)]
        assert (await job_of(bus, job_id)).state is S.COMPLETED


async def test_replace_max_attempts(store) -> None:
    first = rb.Bus(store=store)

    @first.job(
        Doc,
        name="conf.replace.max",
        unique=BY_KEY,
        max_attempts=3,
        replace=rb.Replace(available=("max_attempts",)),
    )
    async def h(event: Doc, ctx: rb.Context) -> None: ...

    async with first:
        job_id = one_id(await first.dispatch(Doc("k")))
    second = rb.Bus(store=store)

    @second.job(
        Doc,
        name="conf.replace.max",
        unique=BY_KEY,
        max_attempts=7,
        replace=rb.Replace(available=("max_attempts",)),
    )
    async def h2(event: Doc, ctx: rb.Context) -> None: ...

    async with second:
        r = await second.dispatch(Doc("k"))
        assert (outcomes(r), one_id(r)) == (["replaced"], job_id)
        assert (await job_of(second, job_id)).max_attempts == 7


async def test_replace_queue_moves_the_job(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(
        Doc, name="conf.replace.queue", unique=BY_KEY, replace=rb.Replace(available=("queue",))
    )
    async def h(event: Doc, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Doc("k")))
        r = await bus.dispatch(Doc("k"), queue="elsewhere")
        assert (outcomes(r), one_id(r)) == (["replaced"], job_id)
        assert (await job_of(bus, job_id)).queue == "elsewhere"
        assert await claim(store, "conf-node", queue="default") == []
        assert [c.id for c in await claim(store, "conf-node", queue="elsewhere")] == [job_id]


async def test_a_running_job_is_never_modified(store) -> None:
    bus = rb.Bus(store=store)
    inner: list[rb.DispatchResult] = []
    snapshots: list[rb.Job] = []
    everything = ("payload", "priority", "meta", "scheduled_at", "queue", "max_attempts")

    @bus.job(
        Doc,
        name="conf.replace.running",
        unique=BY_KEY,
        replace=rb.Replace(available=everything, scheduled=everything, retryable=everything),
    )
    async def h(event: Doc, ctx: rb.Context) -> None:
        if event.body.get("v") == 1:
            inner.append(
                await ctx.bus.dispatch(Doc("k", {"v": 2}), meta={"x": 1}, priority=0, queue="q2")
            )
            snapshots.append(await job_of(ctx.bus, ctx.job.id))

    async with bus:
        job_id = one_id(await bus.dispatch(Doc("k", {"v": 1})))
        assert await drain(bus) == 1
        assert (outcomes(inner[0]), one_id(inner[0])) == (["duplicate"], job_id)
        snap = snapshots[0]
        assert snap.state is S.RUNNING
        assert snap.payload["body"] == {"v": 1}
        assert (snap.meta, snap.priority, snap.queue) == ({}, 2, "default")
        job = await job_of(bus, job_id)
        assert job.state is S.COMPLETED
        assert job.payload["body"] == {"v": 1}
        assert len(await bus.jobs.list()) == 1


async def test_dispatch_many_in_batch_replaces_in_input_order(store) -> None:
    bus = rb.Bus(store=store)
    ran: list[dict] = []

    @bus.job(
        Doc, name="conf.replace.batch", unique=BY_KEY, replace=rb.Replace(available=("payload",))
    )
    async def h(event: Doc, ctx: rb.Context) -> None:
        ran.append(event.body)

    async with bus:
        results = await bus.dispatch_many(
            [Doc("k", {"v": 1}), Doc("j", {"v": 1}), Doc("k", {"v": 2}), Doc("k", {"v": 3})]
        )
        assert [outcomes(r) for r in results] == [
            ["inserted"],
            ["inserted"],
            ["replaced"],
            ["replaced"],
        ]
        ids = [one_id(r) for r in results]
        assert ids[0] == ids[2] == ids[3] != ids[1]
        assert (await job_of(bus, ids[0])).payload["body"] == {"v": 3}
        assert await drain(bus) == 2
        assert sorted(b["v"] for b in ran) == [1, 3]


def test_replace_fields_are_validated() -> None:
    with pytest.raises(ValueError):
        rb.Replace(available=("payload", "state"))
    with pytest.raises(ValueError):
        rb.Replace(scheduled=("attempt",))


async def test_replacing_scheduled_at_moves_a_job_between_available_and_scheduled(
    store, clock
) -> None:
    bus = rb.Bus(store=store)
    ran: list[str] = []

    @bus.job(
        Doc,
        name="conf.replace.when",
        unique=BY_KEY,
        replace=rb.Replace(available=("scheduled_at",), scheduled=("scheduled_at",)),
    )
    async def h(event: Doc, ctx: rb.Context) -> None:
        ran.append(event.key)

    async with bus:
        t0 = clock.now()
        now_job = one_id(await bus.dispatch(Doc("a")))
        r = await bus.dispatch(Doc("a"), delay=60)  # available → later
        assert (outcomes(r), one_id(r)) == (["replaced"], now_job)
        job = await job_of(bus, now_job)
        assert job.state is S.SCHEDULED
        assert job.scheduled_at == t0 + timedelta(seconds=60)

        later_job = one_id(await bus.dispatch(Doc("b"), delay=600))
        r = await bus.dispatch(Doc("b"))  # scheduled → now
        assert (outcomes(r), one_id(r)) == (["replaced"], later_job)
        assert (await job_of(bus, later_job)).state is S.AVAILABLE

        assert await drain(bus) == 1
        assert ran == ["b"]
        clock.advance(60)
        assert await drain(bus) == 1
        assert ran == ["b", "a"]
