"""§2 Attempts and backoff: attempt counts runs; backoff(n) after a failure at attempt n; default
Exponential 2**n minutes capped, jitter 0.1; default max_attempts 10; every error kept."""

from __future__ import annotations

from datetime import timedelta

import pytest

import relaybus as rb
from relaybus.testing import drain

from ._support import Ping, Pong, job_of, one_id

S = rb.JobState


async def _fail_and_measure(bus: rb.Bus, clock, job_id: int, attempts: int) -> list[float]:
    """Run a job that always fails ``attempts`` times; return each retry delay in seconds."""
    delays = []
    for _ in range(attempts):
        assert await drain(bus) == 1
        failed_at = clock.now()
        job = await job_of(bus, job_id)
        if job.state is not S.RETRYABLE:
            break
        delays.append((job.scheduled_at - failed_at).total_seconds())
        clock.set(job.scheduled_at)
    return delays


async def test_failures_retry_with_exact_backoff_then_discard_keeping_every_error(
    store, clock
) -> None:
    bus = rb.Bus(store=store)
    attempts_seen: list[int] = []

    @bus.job(Ping, name="conf.retry.always", max_attempts=3, backoff=rb.Constant(30))
    async def always(event: Ping, ctx: rb.Context) -> None:
        attempts_seen.append(ctx.job.attempt)
        raise ValueError(f"boom {ctx.job.attempt}")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        t0 = clock.now()

        assert await drain(bus) == 1
        job = await job_of(bus, job_id)
        assert job.state is S.RETRYABLE
        assert job.attempt == 1
        assert job.scheduled_at == t0 + timedelta(seconds=30)
        assert len(job.errors) == 1

        clock.advance(29)
        assert await drain(bus) == 0
        clock.advance(1)
        assert await drain(bus) == 1
        job = await job_of(bus, job_id)
        assert job.state is S.RETRYABLE
        assert job.attempt == 2
        assert job.scheduled_at == t0 + timedelta(seconds=60)

        clock.advance(30)
        assert await drain(bus) == 1
        job = await job_of(bus, job_id)
        assert job.state is S.DISCARDED
        assert job.attempt == 3
        assert job.max_attempts == 3
        assert job.finalized_at == clock.now()
        assert attempts_seen == [1, 2, 3]

        assert [e.attempt for e in job.errors] == [1, 2, 3]
        for n, error in enumerate(job.errors, start=1):
            assert isinstance(error, rb.JobError)
            assert "ValueError" in error.kind
            assert error.message == f"boom {n}"
            assert error.traceback is not None
            assert "ValueError" in error.traceback
            assert "always" in error.traceback  # the handler's frame
        assert [e.at for e in job.errors] == [
            t0,
            t0 + timedelta(seconds=30),
            t0 + timedelta(seconds=60),
        ]

        clock.advance(86400)
        assert await drain(bus) == 0


async def test_retry_delay_counts_from_the_failure(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.retry.late", backoff=rb.Constant(30))
    async def late(event: Ping, ctx: rb.Context) -> None:
        raise ValueError("late")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        clock.advance(100)  # the job waited in line for 100 s before it ran
        await drain(bus)
        job = await job_of(bus, job_id)
        assert job.scheduled_at == clock.now() + timedelta(seconds=30)


async def test_default_backoff_is_exponential_minutes_with_jitter(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.retry.default_backoff")
    async def fails(event: Ping, ctx: rb.Context) -> None:
        raise ValueError("x")

    async with bus:
        job_ids = [one_id(r) for r in await bus.dispatch_many([Ping(i) for i in range(12)])]
        assert await drain(bus) == 12
        delays = []
        for job_id in job_ids:
            job = await job_of(bus, job_id)
            assert job.state is S.RETRYABLE
            delays.append((job.scheduled_at - clock.now()).total_seconds())
        # attempt 1: 2**1 minutes = 120 s, times a factor in [0.9, 1.1]
        assert all(108 <= d <= 132 for d in delays), delays
        assert len(set(delays)) > 1, "jitter=0.1 by default: delays should vary"


async def test_exponential_without_jitter_is_exact_and_capped(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(
        Ping,
        name="conf.retry.exp",
        max_attempts=6,
        backoff=rb.Exponential(unit=60, max=1000, jitter=0),
    )
    async def fails(event: Ping, ctx: rb.Context) -> None:
        raise ValueError("x")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        assert await _fail_and_measure(bus, clock, job_id, 5) == [120, 240, 480, 960, 1000]


def test_exponential_defaults() -> None:
    exp = rb.Exponential(jitter=0)
    assert [exp(n) for n in (1, 2, 3)] == [120, 240, 480]
    assert exp(30) == 86400  # capped at 24 h by default
    jittered = rb.Exponential()
    assert all(108 <= jittered(1) <= 132 for _ in range(50))


async def test_linear_and_callable_backoff(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.retry.linear", max_attempts=4, backoff=rb.Linear(10))
    async def linear(event: Ping, ctx: rb.Context) -> None:
        raise ValueError("x")

    @bus.job(Pong, name="conf.retry.callable", max_attempts=4, backoff=lambda n: 7 * n + 1)
    async def custom(event: Pong, ctx: rb.Context) -> None:
        raise ValueError("x")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        assert await _fail_and_measure(bus, clock, job_id, 3) == [10, 20, 30]
        await bus.jobs.cancel(job_id)
        job_id = one_id(await bus.dispatch(Pong()))
        assert await _fail_and_measure(bus, clock, job_id, 3) == [8, 15, 22]


async def test_default_max_attempts_is_10(store, clock) -> None:
    bus = rb.Bus(store=store)
    seen: list[tuple[int, int]] = []

    @bus.job(Ping, name="conf.retry.ten", backoff=rb.Constant(1))
    async def fails(event: Ping, ctx: rb.Context) -> None:
        seen.append((ctx.job.attempt, ctx.job.max_attempts))
        raise ValueError("again")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        assert (await job_of(bus, job_id)).max_attempts == 10
        for _ in range(12):
            await drain(bus)
            clock.advance(1)
        job = await job_of(bus, job_id)
        assert job.state is S.DISCARDED
        assert job.attempt == 10
        assert len(job.errors) == 10
        assert seen == [(n, 10) for n in range(1, 11)]


async def test_max_attempts_1_discards_on_first_failure(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.retry.once", max_attempts=1)
    async def once(event: Ping, ctx: rb.Context) -> None:
        raise ValueError("only once")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await drain(bus)
        job = await job_of(bus, job_id)
        assert job.state is S.DISCARDED
        assert [e.message for e in job.errors] == ["only once"]


@pytest.mark.parametrize("bad", [0, -1])
def test_max_attempts_must_be_at_least_1(bad) -> None:
    bus = rb.Bus()
    with pytest.raises(ValueError):

        @bus.job(Ping, name="conf.retry.bad", max_attempts=bad)
        async def bad_handler(event: Ping, ctx: rb.Context) -> None: ...


async def test_errors_are_kept_after_a_later_success(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.retry.recovers", backoff=rb.Constant(5))
    async def recovers(event: Ping, ctx: rb.Context) -> None:
        if ctx.job.attempt < 3:
            raise ConnectionError(f"down {ctx.job.attempt}")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        for _ in range(3):
            await drain(bus)
            clock.advance(5)
        job = await job_of(bus, job_id)
        assert job.state is S.COMPLETED
        assert job.attempt == 3
        assert [(e.attempt, e.message) for e in job.errors] == [(1, "down 1"), (2, "down 2")]
        assert all("ConnectionError" in e.kind for e in job.errors)


async def test_plain_def_job_handler_failure_is_recorded(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.retry.sync", max_attempts=1)
    def sync_fails(event: Ping, ctx: rb.Context) -> None:
        raise LookupError("from a thread")

    async with bus:
        job_id = one_id(await bus.dispatch(Ping()))
        await drain(bus)
        job = await job_of(bus, job_id)
        assert job.state is S.DISCARDED
        assert "LookupError" in job.errors[0].kind
        assert job.errors[0].message == "from a thread"
        assert "sync_fails" in (job.errors[0].traceback or "")
