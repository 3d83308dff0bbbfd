"""Unit tests of the pure parts: backoff policies, unique keys, event names and codecs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

import msgspec
import pydantic
import pytest

import relaybus as rb
from relaybus._events import codec_for, event_name
from relaybus._options import bucket_key


def test_exponential_default_is_two_to_the_attempt_minutes_capped() -> None:
    backoff = rb.Exponential(jitter=0)
    assert [backoff(n) for n in (1, 2, 3)] == [120.0, 240.0, 480.0]
    assert backoff(20) == 86400.0  # capped at 24 h
    assert rb.Exponential(max=600, jitter=0)(10) == 600.0


def test_exponential_jitter_stays_within_ten_percent() -> None:
    backoff = rb.Exponential()
    delays = {backoff(3) for _ in range(200)}
    assert all(480 * 0.9 <= d <= 480 * 1.1 for d in delays)
    assert len(delays) > 1  # it really jitters


def test_constant_and_linear() -> None:
    assert rb.Constant(5)(7) == 5
    assert rb.Linear(3)(4) == 12
    assert rb.Linear(3, max=10)(4) == 10
    with pytest.raises(ValueError):
        rb.Exponential(jitter=1.5)


def test_unique_states_must_include_the_insert_and_running_states() -> None:
    with pytest.raises(ValueError, match="running"):
        rb.Unique(states=frozenset({rb.JobState.SCHEDULED, rb.JobState.AVAILABLE}))
    ok = rb.Unique(
        states=frozenset({rb.JobState.SCHEDULED, rb.JobState.AVAILABLE, rb.JobState.RUNNING})
    )
    assert rb.JobState.RETRYABLE not in ok.states
    with pytest.raises(ValueError):
        rb.Unique(by=("payload", "nope"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        rb.Unique(period=0)
    assert rb.Unique(period=timedelta(hours=1)).period_seconds == 3600.0


def test_unique_key_is_canonical_and_scoped() -> None:
    unique = rb.Unique(by=("payload", "meta"), keys=("a",), meta_keys=("tenant",))
    one = unique.base_key("h", "q", {"a": 1, "b": 2}, {"tenant": "x", "trace": "1"})
    two = unique.base_key("h", "q2", {"b": 9, "a": 1}, {"trace": "2", "tenant": "x"})
    assert one == two  # key order, other fields and the queue (not in by) don't matter
    assert one != unique.base_key("other", "q", {"a": 1}, {"tenant": "x"})  # handler always in
    assert one != unique.base_key("h", "q", {"a": 2}, {"tenant": "x"})
    by_queue = rb.Unique(by=("queue",))
    assert by_queue.base_key("h", "q1", {}, {}) != by_queue.base_key("h", "q2", {}, {})


def test_period_buckets() -> None:
    base = b"k" * 32
    assert bucket_key(base, None, 1000.0) == base
    assert bucket_key(base, 60, 60.0) == bucket_key(base, 60, 119.9)
    assert bucket_key(base, 60, 119.9) != bucket_key(base, 60, 120.0)


def test_replace_validates_fields() -> None:
    with pytest.raises(ValueError, match="Replace"):
        rb.Replace(available=("state",))  # type: ignore[arg-type]
    replace = rb.Replace(available=("payload",), scheduled=("scheduled_at", "priority"))
    assert replace.fields_for(rb.JobState.RUNNING) == ()
    assert replace.fields_for(rb.JobState.SCHEDULED) == ("scheduled_at", "priority")


@dataclass(frozen=True)
class Named(rb.Event, name="orders.named"):
    order_id: int


@dataclass(frozen=True)
class Unnamed(rb.Event):
    x: int


class StructEvent(msgspec.Struct, rb.Event, frozen=True):
    event_name = "orders.struct"
    order_id: int


class ModelEvent(pydantic.BaseModel, rb.Event, name="orders.model"):
    order_id: int


class ModelEventClassVar(pydantic.BaseModel, rb.Event):
    event_name: ClassVar[str] = "orders.model2"
    order_id: int


def test_event_names() -> None:
    assert event_name(Named) == "orders.named"
    assert event_name(Unnamed) == "tests.test_units.Unnamed"
    assert event_name(StructEvent) == "orders.struct"
    assert event_name(ModelEvent) == "orders.model"
    assert event_name(ModelEventClassVar) == "orders.model2"
    with pytest.raises(TypeError):
        event_name(int)
    with pytest.raises(ValueError, match="invalid event name"):

        class Bad(rb.Event, name="no spaces allowed"):
            pass


@pytest.mark.parametrize(
    ("cls", "event"),
    [
        (Named, Named(1)),
        (StructEvent, StructEvent(order_id=1)),
        (ModelEvent, ModelEvent(order_id=1)),
    ],
)
def test_codecs_round_trip_and_validate(cls: type, event: object) -> None:
    codec = codec_for(cls)
    data = codec.encode(event)
    assert msgspec.json.decode(data) == {"order_id": 1}
    assert codec.decode(data) == event
    with pytest.raises(Exception):  # noqa: B017 - each library raises its own validation error
        codec.decode(b'{"order_id": "not a number"}')


def test_names_are_validated() -> None:
    bus = rb.Bus()
    for bad in ("", "has space", "x" * 129, "semi;colon", "quote'"):
        with pytest.raises(ValueError):
            bus.job(Named, queue=bad)(lambda e, c: None)
        with pytest.raises(ValueError):
            bus.job(Named, name=bad)(lambda e, c: None)
    with pytest.raises(ValueError, match="max_attempts"):
        bus.job(Named, name="ok", max_attempts=0)(lambda e, c: None)
    with pytest.raises(ValueError, match="priority"):
        bus.job(Named, name="ok2", priority=10)(lambda e, c: None)


def test_default_handler_name_needs_name_for_lambdas() -> None:
    bus = rb.Bus()
    with pytest.raises(ValueError, match="name="):
        bus.job(Named)(lambda e, c: None)


def test_sql_store_prefix_is_validated() -> None:
    from relaybus.stores._sql.queries import render

    with pytest.raises(ValueError):
        render("select 1 from /*prefix*/jobs", prefix="x; drop table y")
    assert render("/*prefix*/jobs", prefix="app_") == "app_jobs"
