"""Events of every kind travel through every store as JSON and come back typed and validated;
class-based handlers work like function handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import pydantic

import relaybus as rb
from relaybus.testing import drain

from ._support import Ping, job_of, one_id


@dataclass(frozen=True)
class Shipment(rb.Event, name="conf.shipment"):
    order_id: int
    when: datetime
    items: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unnamed(rb.Event):
    value: str = ""


class StructEvent(msgspec.Struct, rb.Event, frozen=True):
    event_name: ClassVar[str] = "conf.struct"
    user_id: int
    tags: list[str] = []


class ModelEvent(pydantic.BaseModel, rb.Event, name="conf.model"):
    email: str
    score: float = 0.0


WHEN = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


async def test_every_kind_of_event_round_trips_typed(store) -> None:
    bus = rb.Bus(store=store)
    got: list[Any] = []

    @bus.job(Shipment, name="conf.events.dataclass")
    async def on_shipment(event: Shipment, ctx: rb.Context) -> None:
        got.append(event)

    @bus.job(StructEvent, name="conf.events.struct")
    async def on_struct(event: StructEvent, ctx: rb.Context) -> None:
        got.append(event)

    @bus.job(ModelEvent, name="conf.events.model")
    def on_model(event: ModelEvent, ctx: rb.Context) -> None:
        got.append(event)

    @bus.job(Unnamed, name="conf.events.unnamed")
    async def on_unnamed(event: Unnamed, ctx: rb.Context) -> None:
        got.append(event)

    sent = [
        Shipment(7, WHEN, ("a", "b"), {"nested": {"k": [1, 2]}}),
        StructEvent(user_id=3, tags=["x"]),
        ModelEvent(email="a@b.c", score=1.5),
        Unnamed("v"),
    ]
    async with bus:
        ids = [one_id(r) for r in await bus.dispatch_many(sent)]
        jobs = [await job_of(bus, i) for i in ids]
        assert [j.event for j in jobs] == [
            "conf.shipment",
            "conf.struct",
            "conf.model",
            f"{__name__}.Unnamed",  # the default: module.QualName
        ]
        assert jobs[0].payload["order_id"] == 7
        assert jobs[1].payload == {"user_id": 3, "tags": ["x"]}
        assert jobs[2].payload == {"email": "a@b.c", "score": 1.5}
        assert jobs[3].payload == {"value": "v"}
        assert await drain(bus) == 4
        assert sorted(map(repr, got)) == sorted(map(repr, sent))
        shipment = next(e for e in got if isinstance(e, Shipment))
        assert shipment == sent[0]
        assert shipment.when == WHEN and isinstance(shipment.when, datetime)
        assert isinstance(next(e for e in got if isinstance(e, StructEvent)).tags, list)


async def test_inline_handlers_get_the_event_object(store) -> None:
    bus = rb.Bus(store=store)
    got: list[Any] = []

    @bus.on(ModelEvent, name="conf.events.inline_model")
    async def inline(event: ModelEvent, ctx: rb.Context) -> None:
        got.append(event)

    async with bus:
        event = ModelEvent(email="x@y.z")
        await bus.dispatch(event)
        assert got == [event]


class SendReceipt(rb.JobHandler[Ping]):
    name = "conf.events.class_job"
    queue = "receipts"
    priority = 1
    max_attempts = 2
    backoff = rb.Constant(10)

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    async def handle(self, event: Ping, ctx: rb.Context) -> None:
        self.seen.append((event.n, ctx.job.attempt))
        if ctx.job.attempt == 1:
            raise ValueError("first attempt fails")


class Audit(rb.Handler[Ping]):
    name = "conf.events.class_inline"

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def handle(self, event: Ping, ctx: rb.Context) -> None:
        assert ctx.job is None
        self.seen.append(event.n)


async def test_class_based_handlers(store, clock) -> None:
    bus = rb.Bus(store=store)
    job_handler, inline_handler = SendReceipt(), Audit()
    bus.register(job_handler)
    bus.register(inline_handler)

    async with bus:
        result = await bus.dispatch(Ping(4))
        assert inline_handler.seen == [4]
        assert [(r.handler, r.outcome) for r in result.jobs] == [
            ("conf.events.class_job", "inserted")
        ]
        job = await job_of(bus, one_id(result))
        assert (job.queue, job.priority, job.max_attempts) == ("receipts", 1, 2)
        await drain(bus)
        job = await job_of(bus, job.id)
        assert job.state is rb.JobState.RETRYABLE
        assert (job.scheduled_at - clock.now()).total_seconds() == 10
        clock.advance(10)
        await drain(bus)
        assert job_handler.seen == [(4, 1), (4, 2)]
        assert (await job_of(bus, job.id)).state is rb.JobState.COMPLETED
