"""§3b Bad input gets a clear error and loses nothing; the worker keeps going."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

import relaybus as rb
from relaybus.testing import drain

from ._support import Doc, Ping, job_of, one_id, wait_for

S = rb.JobState
BAD_NAMES = ["", "has space", "x" * 129, "semi;colon", "slash/", "quote'", "ünï", "tab\t", None, 7]


def test_invalid_queue_and_handler_names_are_rejected_at_registration() -> None:
    bus = rb.Bus()
    for bad in BAD_NAMES:
        with pytest.raises(ValueError):
            bus.job(Ping, name="conf.bad.ok", queue=bad)(_noop)
        if bad is not None:  # name=None means the default name
            with pytest.raises(ValueError):
                bus.job(Ping, name=bad)(_noop)
            with pytest.raises(ValueError):
                bus.on(Ping, name=bad)(_noop)
        with pytest.raises(ValueError):
            bus.worker(queues={bad: 1})
    # the longest and the odd-but-valid names are fine
    bus.job(Ping, name="a" * 128, queue="Q_1.x:y-z")(_noop)


def test_a_function_without_a_valid_default_name_needs_name() -> None:
    bus = rb.Bus()
    weird = lambda event, ctx: None  # noqa: E731 - "<lambda>" is not a valid name
    with pytest.raises(ValueError, match="name"):
        bus.job(Ping)(weird)
    bus.job(Ping, name="conf.bad.lambda")(weird)


def test_an_event_name_is_validated() -> None:
    with pytest.raises(ValueError):

        @dataclass(frozen=True)
        class Bad(rb.Event, name="bad name"):
            x: int = 0


async def test_invalid_queue_at_dispatch_inserts_nothing(store) -> None:
    bus = rb.Bus(store=store)
    bus.job(Ping, name="conf.bad.dispatch_queue")(_noop)

    async with bus:
        for bad in BAD_NAMES:
            if bad is None:  # queue=None means each handler's own queue
                continue
            with pytest.raises(ValueError):
                await bus.dispatch(Ping(), queue=bad)
        with pytest.raises(ValueError):
            await bus.dispatch_many([Ping(1), Ping(2)], queue="no good")
        assert await bus.jobs.list() == []


@dataclass(frozen=True)
class NotAnEvent:
    n: int = 0


async def test_dispatching_a_non_event_is_a_type_error(store) -> None:
    bus = rb.Bus(store=store)
    bus.job(Ping, name="conf.bad.non_event")(_noop)

    async with bus:
        for bad in ({"n": 1}, None, object(), "conf.ping", Ping, NotAnEvent(1)):
            with pytest.raises(TypeError):
                await bus.dispatch(bad)
        with pytest.raises(TypeError):
            await bus.dispatch_many([Ping(1), NotAnEvent(2)])
        assert await bus.jobs.list() == []


def test_registering_a_non_event_class_is_a_type_error() -> None:
    bus = rb.Bus()
    for bad in (NotAnEvent, dict, int):
        with pytest.raises(TypeError):
            bus.job(bad, name="conf.bad.reg")(_noop)
        with pytest.raises(TypeError):
            bus.on(bad, name="conf.bad.reg_inline")(_noop)


async def test_payload_over_the_limit_is_rejected_and_nothing_inserted(store) -> None:
    bus = rb.Bus(store=store, max_payload_bytes=200)
    bus.job(Doc, name="conf.bad.size")(_noop)

    async with bus:
        big = Doc("k", {"text": "a" * 300})
        with pytest.raises(rb.PayloadTooLarge) as info:
            await bus.dispatch(big)
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, rb.RelaybusError)
        assert "200" in str(info.value)
        with pytest.raises(rb.PayloadTooLarge):
            await bus.dispatch_many([Doc("a"), big, Doc("b")])
        assert await bus.jobs.list() == []
        assert one_id(await bus.dispatch(Doc("small", {"text": "a" * 100})))


def test_default_payload_limit_is_one_mebibyte() -> None:
    assert rb.Bus().max_payload_bytes == 1_048_576


@dataclass(frozen=True)
class CountV1(rb.Event, name="conf.versioned"):
    count: int


@dataclass(frozen=True)
class CountV2(rb.Event, name="conf.versioned"):
    count: list[str]


async def test_a_payload_that_no_longer_decodes_is_a_job_error(store, clock) -> None:
    old = rb.Bus(store=store)
    old.job(CountV1, name="conf.versioned.handle")(_noop)
    old.job(Ping, name="conf.versioned.ping")(_noop)
    async with old:
        bad_id = one_id(await old.dispatch(CountV1(1)))
        good_id = one_id(await old.dispatch(Ping(1)))

    ran: list[object] = []
    new = rb.Bus(store=store)

    @new.job(CountV2, name="conf.versioned.handle")
    async def handle(event: CountV2, ctx: rb.Context) -> None:
        ran.append(event)

    @new.job(Ping, name="conf.versioned.ping")
    async def ping(event: Ping, ctx: rb.Context) -> None:
        ran.append(event)

    async with new:
        assert await drain(new) == 2
        assert ran == [Ping(1)]  # the bad job did not reach its handler; the next one ran
        job = await job_of(new, bad_id)
        assert job.state in (S.RETRYABLE, S.DISCARDED)
        assert job.payload == {"count": 1}  # kept as stored
        assert len(job.errors) == 1
        text = f"{job.errors[0].kind} {job.errors[0].message}".lower()
        assert "decode" in text
        assert job.errors[0].message
        assert (await job_of(new, good_id)).state is S.COMPLETED


async def test_a_row_naming_an_unknown_handler_is_a_job_error(store) -> None:
    old = rb.Bus(store=store)
    old.job(Ping, name="conf.gone.handler")(_noop)
    async with old:
        gone_id = one_id(await old.dispatch(Ping(1)))

    ran: list[int] = []
    new = rb.Bus(store=store)

    @new.job(Ping, name="conf.still.here")
    async def here(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)

    async with new:
        here_id = one_id(await new.dispatch(Ping(2)))
        assert await drain(new) == 2
        assert ran == [2]
        job = await job_of(new, gone_id)
        assert job.state in (S.RETRYABLE, S.DISCARDED)
        assert len(job.errors) == 1
        assert "conf.gone.handler" in job.errors[0].message
        assert (await job_of(new, here_id)).state is S.COMPLETED


async def test_a_running_worker_survives_bad_rows(store) -> None:
    old = rb.Bus(store=store)
    old.job(CountV1, name="conf.survive.decode")(_noop)
    old.job(Ping, name="conf.survive.gone")(_noop)  # unknown to the new bus
    async with old:
        bad_decode = one_id(await old.dispatch(CountV1(5)))
        gone = one_id(await old.dispatch(Ping(0)))

    new = rb.Bus(store=store)
    done = asyncio.Event()

    @new.job(CountV2, name="conf.survive.decode")
    async def decode(event: CountV2, ctx: rb.Context) -> None: ...

    @new.job(Doc, name="conf.survive.good")
    async def good(event: Doc, ctx: rb.Context) -> None:
        done.set()

    async with new:
        async with new.worker(queues={"default": 1}, poll_interval=0.05) as w:
            await new.dispatch(Doc("after the bad ones"), priority=9)
            await wait_for(done)
            await w.stop(grace=5)
        for job_id in (bad_decode, gone):
            job = await job_of(new, job_id)
            assert job.state in (S.RETRYABLE, S.DISCARDED)
            assert len(job.errors) == 1


async def _noop(event: object, ctx: rb.Context) -> None:
    return None


async def test_a_job_whose_meta_does_not_decode_is_a_job_error(store) -> None:
    """Meta corrupted in the database (here: a JSON array) is the job's recorded decode_error;
    the job never reaches its handler and the jobs around it run."""
    from tests.driver.test_corrupt_rows import corrupt

    ran: list[int] = []
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.meta.ping", max_attempts=1)
    async def ping(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)

    async with bus:
        first, bad, last = [one_id(await bus.dispatch(Ping(n))) for n in (1, 2, 3)]
        await corrupt(store, bad, "meta", "[1, 2]")
        assert await drain(bus) == 3
        assert ran == [1, 3]
        job = await job_of(bus, bad)
        assert job.state is S.DISCARDED
        assert [(e.kind, e.message) for e in job.errors] == [
            ("decode_error", "meta is a JSON array, not an object")
        ]
        for ok in (first, last):
            assert (await job_of(bus, ok)).state is S.COMPLETED


async def test_a_job_id_that_is_not_an_integer_is_a_type_error(store) -> None:
    bus = rb.Bus(store=store)
    async with bus:
        for bad in ("1 OR 1=1", 1.5, True, None):
            with pytest.raises(TypeError, match="a job id is an integer"):
                await bus.jobs.get(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="a job id is an integer"):
                await bus.jobs.retry(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="a job id is an integer"):
                await bus.jobs.cancel(bad)  # type: ignore[arg-type]


def test_an_empty_event_name_attribute_is_rejected() -> None:
    @dataclass(frozen=True)
    class Nameless(rb.Event):
        event_name = ""

    bus = rb.Bus()
    with pytest.raises(rb.ConfigurationError, match="invalid event name ''"):
        bus.on(Nameless)(_noop)


def test_rejection_messages_quote_at_most_about_100_characters() -> None:
    bus = rb.Bus()
    with pytest.raises(rb.ConfigurationError) as caught:
        bus.job(Ping, queue="x" * 5000)(_noop)
    assert len(str(caught.value)) < 200


@dataclass(frozen=True)
class Tree(rb.Event, name="conf.tree"):
    children: list[Any]


async def test_meta_with_a_nul_character_is_refused_on_every_store(store) -> None:
    bus = rb.Bus(store=store)
    bus.job(Ping, name="conf.nul.ping")(_noop)
    async with bus:
        with pytest.raises(ValueError, match="NUL"):
            await bus.dispatch(Ping(1), meta={"k": "a\x00b"})
        with pytest.raises(ValueError, match="NUL"):
            await bus.dispatch(Ping(1), meta={"a\x00": 1})
        ok = await bus.dispatch(Ping(2), meta={"k": "a\\u0000b"})  # a backslash, not a NUL
        assert (await job_of(bus, one_id(ok))).meta == {"k": "a\\u0000b"}
        assert await bus.jobs.stats() == {"default": {"available": 1}}


async def test_an_event_or_meta_nested_too_deeply_is_a_clear_error(store) -> None:
    bus = rb.Bus(store=store)
    bus.job(Tree, name="conf.tree.job")(_noop)
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    async with bus:
        with pytest.raises(rb.EventError, match="nests too deeply"):
            await bus.dispatch(Tree(deep))
        nested: dict[str, Any] = {}
        for _ in range(10_000):
            nested = {"a": nested}
        with pytest.raises(ValueError, match="nests too deeply"):
            await bus.dispatch(Tree([]), meta=nested)
        assert await bus.jobs.stats() == {}
