"""``rb.Bus(validate=True)``: a payload that would not decode into its event class fails
``dispatch`` (nothing is stored); without it, the job is stored and fails at every attempt with
a decode_error. Same on every store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
import pytest

import relaybus as rb
from relaybus.testing import drain

from ._support import job_of, one_id


@dataclass(frozen=True)
class Counted(rb.Event, name="conf.counted"):
    x: int


class CountedStruct(msgspec.Struct, rb.Event, frozen=True):
    event_name: ClassVar[str] = "conf.counted_struct"
    x: int


def _bus(store: Any, validate: bool) -> rb.Bus[Any]:
    bus: rb.Bus[Any] = rb.Bus(store=store, validate=validate)

    @bus.job(Counted, name="conf.counted", max_attempts=2, backoff=rb.Constant(0))
    async def counted(event: Counted, ctx: rb.Context[Any]) -> None:
        return None

    @bus.job(CountedStruct, name="conf.counted_struct")
    async def counted_struct(event: CountedStruct, ctx: rb.Context[Any]) -> None:
        return None

    return bus


@pytest.mark.parametrize("event", [Counted("notanint"), CountedStruct("notanint")])  # type: ignore[arg-type]
async def test_validate_refuses_what_would_never_decode(store: Any, event: Any) -> None:
    bus = _bus(store, validate=True)
    async with bus:
        with pytest.raises(rb.EventError, match=r"does not validate.*Expected `int`, got `str`"):
            await bus.dispatch(event)
        with pytest.raises(rb.EventError):
            await bus.dispatch_many([type(event)(1), event])  # one bad event: nothing stored
        assert await bus.jobs.list() == []
        ok = await bus.dispatch(type(event)(1))
        assert (await job_of(bus, one_id(ok))).payload == {"x": 1}


async def test_without_validate_the_job_fails_at_every_attempt(store: Any) -> None:
    bus = _bus(store, validate=False)
    async with bus:
        job_id = one_id(await bus.dispatch(Counted("notanint")))  # type: ignore[arg-type]
        await drain(bus)
        job = await job_of(bus, job_id)
        assert job.state is rb.JobState.DISCARDED
        assert [e.kind for e in job.errors] == ["decode_error", "decode_error"]
