"""The admin API's capped counts and throughput (what the dashboard shows), on every store."""

from __future__ import annotations

from typing import Any

import pytest

import relaybus as rb
from relaybus.testing import FakeClock, drain

from ._support import Doc, Ping, one_id

S = rb.JobState


async def _noop(event: Any, ctx: rb.Context) -> None:
    return None


async def test_count_is_capped_and_filters_like_list(store) -> None:
    bus = rb.Bus(store=store)
    bus.job(Doc, name="conf.count.doc")(_noop)
    bus.job(Ping, name="conf.count.ping", queue="pings")(_noop)
    async with bus:
        for n in range(5):
            await bus.dispatch(Doc(f"k{n}", {"city": "Kyiv" if n % 2 else "Lviv"}))
        await bus.dispatch(Ping(1))
        assert await bus.jobs.count() == 6
        assert await bus.jobs.count(cap=4) == 4  # "4 or more"
        assert await bus.jobs.count(queue="pings") == 1
        assert await bus.jobs.count(handler="conf.count.doc", text="Kyiv") == 2
        assert await bus.jobs.count(state="completed") == 0
        assert await bus.jobs.count(state="available", cap=1) == 1
        with pytest.raises(ValueError, match="cap"):
            await bus.jobs.count(cap=0)


async def test_capped_stats_read_at_most_cap_jobs_per_state(store) -> None:
    bus = rb.Bus(store=store)
    bus.job(Doc, name="conf.count.stats", queue="a")(_noop)
    bus.job(Ping, name="conf.count.stats.b", queue="b")(_noop)
    async with bus:
        for n in range(3):
            await bus.dispatch(Doc(str(n)))
        await bus.dispatch(Ping(1))
        await bus.dispatch(Ping(2), delay=60)
        exact = await bus.jobs.stats()
        assert await bus.jobs.stats(cap=100) == exact
        assert exact == {"a": {"available": 3}, "b": {"available": 1, "scheduled": 1}}
        capped = await bus.jobs.stats(cap=2)
        # at most 2 available jobs read: which queue they come from is the store's choice
        assert sum(by.get("available", 0) for by in capped.values()) == 2
        assert capped["b"]["scheduled"] == 1  # states under the cap stay exact
        await bus.queues.pause("c")
        listed = {q.name: q for q in await bus.queues.list(cap=2)}
        assert set(listed) == {"a", "b", "c"} and listed["c"].paused
        assert listed["b"].counts["scheduled"] == 1 and listed["c"].counts == {}
        with pytest.raises(ValueError, match="cap"):
            await bus.jobs.stats(cap=0)


async def test_throughput_counts_finished_jobs_in_time_buckets(store, clock: FakeClock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.count.tp", max_attempts=1)
    async def work(event: Ping, ctx: rb.Context) -> None:
        if event.n < 0:
            raise RuntimeError("boom")

    async with bus:
        empty = await bus.jobs.throughput()
        assert len(empty.buckets) == 12 and empty.failure_rate is None
        # 50 minutes ago: two completed, one discarded
        for n in (1, 2, -1):
            await bus.dispatch(Ping(n))
        assert await drain(bus) == 3
        clock.advance(30 * 60)
        # 20 minutes ago: one completed, one cancelled
        await bus.dispatch(Ping(3))
        assert await drain(bus) == 1
        cancelled = one_id(await bus.dispatch(Ping(4)))
        await bus.jobs.cancel(cancelled)
        clock.advance(20 * 60)
        await bus.dispatch(Ping(5))  # still waiting: not counted
        tp = await bus.jobs.throughput(window=3600, buckets=6)
        assert tp.window == 3600
        assert [b.get("completed", 0) for b in tp.buckets] == [0, 2, 0, 0, 1, 0]
        assert [b.get("discarded", 0) for b in tp.buckets] == [0, 1, 0, 0, 0, 0]
        assert [b.get("cancelled", 0) for b in tp.buckets] == [0, 0, 0, 0, 1, 0]
        assert tp.total("completed") == 3
        assert tp.failure_rate == pytest.approx(0.25)
        # a shorter window leaves the older jobs out
        recent = await bus.jobs.throughput(window=1800, buckets=3)
        assert [b.get("completed", 0) for b in recent.buckets] == [0, 1, 0]
        clock.advance(3600)
        assert (await bus.jobs.throughput()).total("completed") == 0
        with pytest.raises(ValueError, match="window"):
            await bus.jobs.throughput(window=0)
        with pytest.raises(ValueError, match="buckets"):
            await bus.jobs.throughput(buckets=0)
