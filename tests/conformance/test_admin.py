"""Admin API: get / list / retry / cancel / stats, on every store."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

import relaybus as rb
from relaybus._driver import Completion
from relaybus.testing import drain

from ._support import Ping, Pong, beat, claim, job_of, nonzero, one_id

S = rb.JobState


async def test_get_returns_a_frozen_record_or_none(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.get", queue="adm", priority=3, max_attempts=4)
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        assert await bus.jobs.get(987654) is None
        job_id = one_id(await bus.dispatch(Ping(5), meta={"a": [1, 2]}))
        job = await job_of(bus, job_id)
        assert isinstance(job, rb.Job)
        assert (job.id, job.handler, job.event, job.queue, job.priority) == (
            job_id,
            "conf.admin.get",
            "conf.ping",
            "adm",
            3,
        )
        assert (job.state, job.attempt, job.max_attempts) == (S.AVAILABLE, 0, 4)
        assert job.payload == {"n": 5}
        assert job.meta == {"a": [1, 2]}
        assert job.errors == ()
        assert job.inserted_at == job.scheduled_at == clock.now()
        assert job.inserted_at.tzinfo is not None
        with pytest.raises(dataclasses.FrozenInstanceError):
            job.state = S.COMPLETED  # type: ignore[misc]


async def test_unknown_ids_raise_job_not_found(store) -> None:
    bus = rb.Bus(store=store)
    async with bus:
        for call in (bus.jobs.retry, bus.jobs.cancel):
            with pytest.raises(rb.JobNotFound) as info:
                await call(424242)
            assert isinstance(info.value, LookupError)
            assert isinstance(info.value, rb.RelaybusError)


async def test_list_filters_and_limit(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.list_a")
    async def a(event: Ping, ctx: rb.Context) -> None: ...

    @bus.job(Pong, name="conf.admin.list_b", queue="other", max_attempts=1)
    async def b(event: Pong, ctx: rb.Context) -> None:
        raise ValueError("b fails")

    async with bus:
        a_ids = [one_id(await bus.dispatch(Ping(n))) for n in range(3)]
        b_ids = [one_id(await bus.dispatch(Pong(n))) for n in range(2)]
        later = one_id(await bus.dispatch(Ping(9), delay=60))
        assert {j.id for j in await bus.jobs.list()} == {*a_ids, *b_ids, later}
        assert {j.id for j in await bus.jobs.list(handler="conf.admin.list_b")} == set(b_ids)
        assert {j.id for j in await bus.jobs.list(queue="other")} == set(b_ids)
        assert {j.id for j in await bus.jobs.list(state=S.SCHEDULED)} == {later}
        assert {j.id for j in await bus.jobs.list(state="scheduled")} == {later}
        assert len(await bus.jobs.list(limit=2)) == 2
        await drain(bus)
        assert {j.id for j in await bus.jobs.list(state=S.DISCARDED)} == set(b_ids)
        assert {j.id for j in await bus.jobs.list(state=S.COMPLETED, queue="default")} == set(a_ids)
        assert await bus.jobs.list(state=S.COMPLETED, queue="other") == []


async def test_stats_count_by_queue_and_state(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.stats")
    async def h(event: Ping, ctx: rb.Context) -> None:
        if event.n == 1:
            raise ValueError("x")

    async with bus:
        assert nonzero(await bus.jobs.stats()) == {}
        await bus.dispatch(Ping(0))
        await bus.dispatch(Ping(1))
        await bus.dispatch(Ping(2), delay=60)
        await bus.dispatch(Ping(3), queue="q2")
        await bus.dispatch(Ping(4), queue="q2")
        assert nonzero(await bus.jobs.stats()) == {
            "default": {"available": 2, "scheduled": 1},
            "q2": {"available": 2},
        }
        await drain(bus)
        assert nonzero(await bus.jobs.stats()) == {
            "default": {"completed": 1, "retryable": 1, "scheduled": 1},
            "q2": {"completed": 2},
        }


async def test_retry_a_finished_job_makes_it_due_now_and_keeps_errors(store, clock) -> None:
    bus = rb.Bus(store=store)
    attempts: list[int] = []
    fail = [True]

    @bus.job(Ping, name="conf.admin.retry_finished", max_attempts=2, backoff=rb.Constant(10))
    async def h(event: Ping, ctx: rb.Context) -> None:
        attempts.append(ctx.job.attempt)
        if fail[0]:
            raise ValueError("down")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await drain(bus)
        clock.advance(10)
        await drain(bus)
        assert (await job_of(bus, job_id)).state is S.DISCARDED

        clock.advance(100)
        fail[0] = False
        job = await bus.jobs.retry(job_id)
        assert job.state is S.AVAILABLE
        assert job.scheduled_at == clock.now()
        assert job.finalized_at is None
        assert len(job.errors) == 2
        assert await drain(bus) == 1
        job = await job_of(bus, job_id)
        assert job.state is S.COMPLETED
        assert len(job.errors) == 2
        assert attempts == [1, 2, 3]

        # a completed job can be retried too (it runs again)
        job = await bus.jobs.retry(job_id)
        assert job.state is S.AVAILABLE
        assert await drain(bus) == 1
        assert (await job_of(bus, job_id)).state is S.COMPLETED


async def test_retry_a_cancelled_job(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.retry_cancelled")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await bus.jobs.cancel(job_id)
        assert (await bus.jobs.retry(job_id)).state is S.AVAILABLE
        assert await drain(bus) == 1
        assert (await job_of(bus, job_id)).state is S.COMPLETED


async def test_retry_scheduled_and_retryable_jobs_makes_them_due_now(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.retry_pending", backoff=rb.Constant(3600))
    async def h(event: Ping, ctx: rb.Context) -> None:
        if event.n == 1 and ctx.job.attempt == 1:
            raise ValueError("later")

    async with bus:
        scheduled = one_id(await bus.dispatch(Ping(0), delay=3600))
        retryable = one_id(await bus.dispatch(Ping(1)))
        await drain(bus)
        assert (await job_of(bus, retryable)).state is S.RETRYABLE
        clock.advance(5)
        for job_id in (scheduled, retryable):
            job = await bus.jobs.retry(job_id)
            assert job.state is S.AVAILABLE
            assert job.scheduled_at == clock.now()
        assert await drain(bus) == 2
        for job_id in (scheduled, retryable):
            assert (await job_of(bus, job_id)).state is S.COMPLETED


async def test_retry_an_available_job_keeps_its_place(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.retry_available")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        first = one_id(await bus.dispatch(Ping(1)))
        clock.advance(5)
        second = one_id(await bus.dispatch(Ping(2)))
        before = await job_of(bus, first)
        job = await bus.jobs.retry(first)
        assert job.state is S.AVAILABLE
        assert job.scheduled_at == before.scheduled_at
        got = [c.id for c in await claim(store, "conf-node", limit=2)]
        assert got == [first, second]


async def test_retry_a_running_job_does_not_touch_it(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.retry_running")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        assert len(await claim(store, "conf-node")) == 1
        before = await job_of(bus, job_id)
        job = await bus.jobs.retry(job_id)
        assert job.state is S.RUNNING
        assert await job_of(bus, job_id) == before


async def test_retry_blocked_by_a_unique_holder_raises_and_changes_nothing(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.retry_unique", unique=rb.Unique())
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        old = one_id(await bus.dispatch(Ping(1)))
        await drain(bus)
        holder = one_id(await bus.dispatch(Ping(1)))
        assert holder != old
        before = await job_of(bus, old)
        with pytest.raises(rb.UniqueConflict) as info:
            await bus.jobs.retry(old)
        assert info.value.job_id == old
        assert info.value.holder_id == holder
        assert isinstance(info.value, rb.RelaybusError)
        assert await job_of(bus, old) == before
        # once the holder is finished, the retry goes through
        await drain(bus)
        assert (await bus.jobs.retry(old)).state is S.AVAILABLE


async def test_cancel_pending_jobs(store, clock) -> None:
    bus = rb.Bus(store=store)
    ran: list[int] = []

    @bus.job(Ping, name="conf.admin.cancel", backoff=rb.Constant(60))
    async def h(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)
        if event.n == 2:
            raise ValueError("to retryable")

    async with bus:
        retryable = one_id(await bus.dispatch(Ping(2)))
        await drain(bus)
        assert (await job_of(bus, retryable)).state is S.RETRYABLE
        scheduled = one_id(await bus.dispatch(Ping(3), delay=30))
        for job_id in (scheduled, retryable):
            job = await bus.jobs.cancel(job_id)
            assert job.state is S.CANCELLED
            assert job.finalized_at == clock.now()
        clock.advance(3600)
        assert await drain(bus) == 0
        assert ran == [2]
        for job_id in (scheduled, retryable):
            assert (await job_of(bus, job_id)).state is S.CANCELLED


async def test_cancel_an_available_job_and_it_never_runs(store, clock) -> None:
    bus = rb.Bus(store=store)
    ran: list[int] = []

    @bus.job(Ping, name="conf.admin.cancel_available")
    async def h(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        job = await bus.jobs.cancel(job_id)
        assert job.state is S.CANCELLED
        assert await drain(bus) == 0
        assert ran == []


async def test_cancel_a_finished_job_changes_nothing(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.cancel_done")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await drain(bus)
        before = await job_of(bus, job_id)
        job = await bus.jobs.cancel(job_id)
        assert job.state is S.COMPLETED
        assert await job_of(bus, job_id) == before


async def test_cancel_a_running_job_fences_its_node(store, clock) -> None:
    """A running job cancelled by the admin stays cancelled: its node's late completion is
    stale and its heartbeat reports the job as gone."""
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.admin.cancel_running")
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        (claimed,) = await claim(store, "conf-node")
        job = await bus.jobs.cancel(job_id)
        assert job.state is S.CANCELLED
        assert await beat(store, "conf-node", [(job_id, claimed.attempt)]) == [job_id]
        assert await store.complete_many([Completion(job_id, claimed.attempt, "completed")]) == []
        clock.advance(timedelta(hours=1))
        assert (await job_of(bus, job_id)).state is S.CANCELLED
        assert await drain(bus) == 0
