"""Periodic events (bus.every / bus.cron) on the fake clock: slots, DST, failover, missed slots.

The scheduler of a worker is driven directly (``worker.scheduler.run_once()``: one leader
tick) so time moves only when the test says; the exactly-once tests run on every store, since
they rest on each store's unique index.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import relaybus as rb
from relaybus._runtime.scheduler import dispatch_slot
from relaybus._slots import Cron, Every
from relaybus.testing import FakeClock

KYIV = ZoneInfo("Europe/Kyiv")


@dataclass(frozen=True)
class Tick(rb.Event, name="tests.periodic.tick"):
    at: str = ""


def make_bus(store: Any) -> tuple[rb.Bus[None], list[str]]:
    bus: rb.Bus[None] = rb.Bus(store=store)
    seen: list[str] = []

    @bus.job(Tick, name="tests.periodic.work")
    async def work(event: Tick, ctx: rb.Context[Any]) -> None:
        seen.append(event.at)

    return bus, seen


async def slot_jobs(bus: rb.Bus[Any], handler: str = "tests.periodic.work") -> Counter[str]:
    """How many jobs of ``handler`` exist per slot (any state)."""
    jobs = await bus.jobs.list(handler=handler, limit=1000)
    return Counter(str(job.meta["slot"]) for job in jobs)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- slot arithmetic


def test_every_slots_are_multiples_of_the_interval_since_the_epoch() -> None:
    slots = Every(timedelta(minutes=5))
    assert slots.latest(utc(2030, 1, 1, 12, 7, 30)) == utc(2030, 1, 1, 12, 5)
    after = slots.after(utc(2030, 1, 1, 12, 5))  # strictly after
    assert [next(after) for _ in range(2)] == [utc(2030, 1, 1, 12, 10), utc(2030, 1, 1, 12, 15)]


def test_cron_in_kyiv_across_the_spring_forward_change() -> None:
    # 2026-03-29 03:00 local becomes 04:00: a daily 03:30 runs once, at 04:00 local.
    daily = Cron("30 3 * * *", tz="Europe/Kyiv")
    slots = daily.after(datetime(2026, 3, 28, 12, tzinfo=KYIV))
    first, second = next(slots), next(slots)
    assert first.astimezone(KYIV).replace(tzinfo=None) == datetime(2026, 3, 29, 4, 0)
    assert second.astimezone(KYIV).replace(tzinfo=None) == datetime(2026, 3, 30, 3, 30)
    assert second - first == timedelta(hours=23, minutes=30)


def test_cron_in_kyiv_across_the_fall_back_change() -> None:
    # 2026-10-25 04:00 local becomes 03:00: a daily 03:30 runs once; */30 follows real time.
    daily = Cron("30 3 * * *", tz="Europe/Kyiv")
    slots = daily.after(datetime(2026, 10, 24, 12, tzinfo=KYIV))
    first, second = next(slots), next(slots)
    assert first == utc(2026, 10, 25, 0, 30)
    assert second == utc(2026, 10, 26, 1, 30)
    frequent = Cron("*/30 * * * *", tz="Europe/Kyiv").after(utc(2026, 10, 24, 23, 45))
    got = [next(frequent) for _ in range(4)]
    assert got == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 1, 30),
    ]  # 03:00, 03:30 (+03), 03:00, 03:30 (+02): no gap


def test_cron_latest_includes_a_slot_exactly_now() -> None:
    cron = Cron("*/5 * * * *")
    assert cron.latest(utc(2030, 1, 1, 12, 5)) == utc(2030, 1, 1, 12, 5)
    assert cron.latest(utc(2030, 1, 1, 12, 9, 59)) == utc(2030, 1, 1, 12, 5)


# -- registration errors


def test_bad_schedules_are_refused_clearly() -> None:
    bus: rb.Bus[None] = rb.Bus()
    with pytest.raises(rb.ConfigurationError, match="missed="):
        bus.every(60, Tick(), name="a", missed="sometimes")
    with pytest.raises(rb.ConfigurationError, match=r"at least 0\.1 seconds"):
        bus.every(0.05, Tick(), name="a")
    with pytest.raises(rb.ConfigurationError, match="invalid cron expression"):
        bus.cron("61 * * * *", Tick(), name="a")
    with pytest.raises(rb.ConfigurationError, match="five-field"):
        bus.cron("* * * *", Tick(), name="a")
    with pytest.raises(rb.ConfigurationError, match="unknown time zone"):
        bus.cron("* * * * *", Tick(), name="a", tz="Mars/Olympus")
    with pytest.raises(rb.ConfigurationError, match="not the class"):
        bus.every(60, Tick, name="a")
    with pytest.raises(rb.ConfigurationError, match="slot time or nothing"):
        bus.every(60, lambda a, b: Tick(), name="a")
    bus.every(60, Tick(), name="a")
    with pytest.raises(rb.ConfigurationError, match="already registered"):
        bus.every(60, Tick(), name="a")
    assert [s.name for s in bus.schedules] == ["a"]


# -- dispatching slots (every store: exactly once rests on the store's unique index)


async def test_each_slot_is_dispatched_once_and_its_jobs_run(store: Any, clock: FakeClock) -> None:
    bus, seen = make_bus(store)
    bus.every(60, lambda slot: Tick(slot.isoformat()), name="minutely")
    async with bus:
        worker = bus.worker()
        clock.set(utc(2030, 1, 1, 12, 0, 30))
        assert await worker.scheduler.run_once() == 0  # a new schedule starts after now
        clock.set(utc(2030, 1, 1, 12, 1, 0))
        assert await worker.scheduler.run_once() == 1
        assert await worker.scheduler.run_once() == 0  # same slot: nothing more
        clock.set(utc(2030, 1, 1, 12, 2, 10))
        assert await worker.scheduler.run_once() == 1
        await rb.testing.drain(bus)
        assert seen == ["2030-01-01T12:01:00+00:00", "2030-01-01T12:02:00+00:00"]
        assert await slot_jobs(bus) == Counter(
            {"2030-01-01T12:01:00+00:00": 1, "2030-01-01T12:02:00+00:00": 1}
        )
        records = await bus.jobs.list(handler="relaybus.schedule:minutely")
        assert [r.state for r in records] == [rb.JobState.COMPLETED] * 2


async def test_a_second_leader_never_dispatches_a_slot_again(store: Any, clock: FakeClock) -> None:
    """Leader A dispatched the slot (and died, or still believes it leads): B, taking over
    mid-slot, finds the slot recorded; dispatching the same slot again inserts nothing, even
    after its jobs completed."""
    bus, seen = make_bus(store)
    inline: list[str] = []
    bus.every(60, lambda slot: Tick(slot.isoformat()), name="minutely")

    @bus.on(Tick)
    async def note(event: Tick, ctx: rb.Context[Any]) -> None:
        inline.append(event.at)

    async with bus:
        a, b = bus.worker(node="a"), bus.worker(node="b")
        clock.set(utc(2030, 1, 1, 12, 0, 30))
        await a.scheduler.run_once()
        clock.set(utc(2030, 1, 1, 12, 1, 0))
        assert await a.scheduler.run_once() == 1
        await rb.testing.drain(bus)  # its job completed: the key still holds
        clock.advance(0.5)
        assert await b.scheduler.run_once() == 0  # B reads the record: nothing due
        schedule = bus.schedules.by_name["minutely"]
        assert await dispatch_slot(bus, schedule, utc(2030, 1, 1, 12, 1)) is False  # a racer
        await rb.testing.drain(bus)
        assert await slot_jobs(bus) == Counter({"2030-01-01T12:01:00+00:00": 1})
        assert seen == inline == ["2030-01-01T12:01:00+00:00"]


async def test_leader_failover_on_the_fake_clock_no_double_no_loss() -> None:
    """Real electors: A leads and dispatches, its lease runs out (it died), B takes over in
    the middle of the next slot and dispatches it once (missed='all': late, not lost)."""
    clock = FakeClock(utc(2030, 1, 1, 12, 0, 30))
    bus, _ = make_bus(rb.MemoryStore(clock=clock))
    bus.every(60, lambda slot: Tick(slot.isoformat()), name="minutely", missed="all")
    async with bus:
        a = bus.worker(node="a", node_ttl=45, heartbeat_interval=2)
        b = bus.worker(node="b", node_ttl=45, heartbeat_interval=2)
        assert await a.elector.run_once() and not await b.elector.run_once()
        await a.scheduler.run_once()
        for minute in (1, 2):
            clock.set(utc(2030, 1, 1, 12, minute))
            assert await a.elector.run_once()  # renews its lease
            assert await a.scheduler.run_once() == 1
        # A dies right after dispatching 12:02; B keeps trying to lead.
        clock.set(utc(2030, 1, 1, 12, 2, 5))
        assert not await b.elector.run_once()
        clock.set(utc(2030, 1, 1, 12, 3, 5))  # 12:03 passed with no leader
        assert await b.elector.run_once()
        assert await b.scheduler.run_once() == 1  # 12:03, late
        clock.set(utc(2030, 1, 1, 12, 4))
        assert await b.scheduler.run_once() == 1
        assert not a.elector.is_leader()  # A's local deadline passed too
        assert await slot_jobs(bus) == Counter(
            {f"2030-01-01T12:0{m}:00+00:00": 1 for m in (1, 2, 3, 4)}
        )


@pytest.mark.parametrize(
    ("missed", "expected"),
    [("latest", ["12:05"]), ("all", ["12:02", "12:03", "12:04", "12:05"]), ("skip", [])],
)
async def test_missed_slots_follow_the_policy(
    clock: FakeClock, missed: str, expected: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    bus, _ = make_bus(rb.MemoryStore(clock=clock))
    bus.every(60, lambda slot: Tick(slot.isoformat()), name="minutely", missed=missed)
    async with bus:
        a, b = bus.worker(node="a"), bus.worker(node="b")
        clock.set(utc(2030, 1, 1, 12, 0, 30))
        await a.scheduler.run_once()
        clock.set(utc(2030, 1, 1, 12, 1))
        assert await a.scheduler.run_once() == 1
        clock.set(utc(2030, 1, 1, 12, 5, 20))  # no leader from 12:01 to now
        with caplog.at_level(logging.INFO, logger="relaybus"):
            await b.scheduler.run_once()
        clock.set(utc(2030, 1, 1, 12, 6))
        assert await b.scheduler.run_once() == 1  # on time again
        got = sorted(slot[11:16] for slot in await slot_jobs(bus))
        assert got == sorted(["12:01", *expected, "12:06"])
        if missed == "skip":
            assert "skipping 4 slot(s) missed while no leader ran" in caplog.text


async def test_missed_all_is_bounded(clock: FakeClock) -> None:
    bus, _ = make_bus(rb.MemoryStore(clock=clock))
    bus.every(60, lambda: Tick("x"), name="minutely", missed="all", max_missed=3)
    async with bus:
        a, b = bus.worker(node="a"), bus.worker(node="b")
        clock.set(utc(2030, 1, 1, 12, 0, 30))
        await a.scheduler.run_once()
        clock.set(utc(2030, 1, 1, 12, 1))
        await a.scheduler.run_once()
        clock.set(utc(2030, 1, 1, 13, 0, 30))  # 59 slots missed
        assert await b.scheduler.run_once() == 3
        got = sorted(slot[11:16] for slot in await slot_jobs(bus))
        assert got == ["12:01", "12:58", "12:59", "13:00"]


async def test_cron_dispatches_across_a_dst_change_on_the_fake_clock() -> None:
    # Hourly at :30 in Kyiv on the fall-back night: the repeated hour runs twice (real time),
    # no slot is dispatched twice, none is lost.
    clock = FakeClock(utc(2026, 10, 24, 22, 0))
    bus, seen = make_bus(rb.MemoryStore(clock=clock))
    bus.cron("30 * * * *", lambda slot: Tick(slot.isoformat()), name="half", tz="Europe/Kyiv")
    async with bus:
        worker = bus.worker()
        await worker.scheduler.run_once()
        for _ in range(5 * 6):
            clock.advance(600)
            await worker.scheduler.run_once()
        await rb.testing.drain(bus)
    local = [datetime.fromisoformat(s).astimezone(KYIV).strftime("%H:%M%z") for s in seen]
    assert local == ["01:30+0300", "02:30+0300", "03:30+0300", "03:30+0200", "04:30+0200"]


async def test_an_event_instance_and_a_zero_argument_factory(clock: FakeClock) -> None:
    bus, seen = make_bus(rb.MemoryStore(clock=clock))
    bus.every(60, Tick("same"))
    bus.every(120, lambda: Tick("made"), name="two-minutes")
    async with bus:
        worker = bus.worker()
        clock.set(utc(2030, 1, 1, 12, 0, 30))
        await worker.scheduler.run_once()
        clock.set(utc(2030, 1, 1, 12, 2))
        assert await worker.scheduler.run_once() == 3  # 12:01 and 12:02, and 12:02
        await rb.testing.drain(bus)
    assert sorted(seen) == ["made", "same", "same"]
    assert [s.name for s in bus.schedules] == ["tests.periodic.tick", "two-minutes"]


async def test_a_running_worker_dispatches_on_its_own(clock: FakeClock) -> None:
    """The scheduler is a leader-only service of every worker."""
    bus, seen = make_bus(rb.MemoryStore(clock=clock))
    bus.every(60, lambda slot: Tick(slot.isoformat()), name="minutely")
    async with bus, bus.worker(poll_interval=0.01, node_ttl=1000) as worker:
        await worker.elector.run_once()
        await worker.scheduler.run_once()  # baseline: now
        clock.advance(60)
        for _ in range(500):
            if seen:
                break
            await asyncio.sleep(0.01)
    assert len(seen) == 1


async def test_a_failing_factory_skips_its_slot_and_the_next_one_runs(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    bus, seen = make_bus(rb.MemoryStore(clock=clock))
    calls: list[datetime] = []

    def flaky(slot: datetime) -> Tick:
        calls.append(slot)
        if len(calls) == 1:
            raise RuntimeError("no data yet")
        return Tick(slot.isoformat())

    bus.every(60, flaky, name="flaky")
    async with bus:
        worker = bus.worker()
        clock.set(utc(2030, 1, 1, 12, 0, 30))
        await worker.scheduler.run_once()
        clock.set(utc(2030, 1, 1, 12, 1))
        with caplog.at_level(logging.ERROR, logger="relaybus"):
            assert await worker.scheduler.run_once() == 0
        assert "building slot 2030-01-01T12:01:00+00:00 failed; the slot is skipped" in caplog.text
        assert await worker.scheduler.run_once() == 0  # not retried
        clock.set(utc(2030, 1, 1, 12, 2))
        assert await worker.scheduler.run_once() == 1
        await rb.testing.drain(bus)
    assert seen == ["2030-01-01T12:02:00+00:00"]
    assert worker.scheduler.total == 1
