"""The admin API the command and the dashboard build on: delete, bulk actions, listing with a
text filter and a cursor, nodes, paused queues — on every store."""

from __future__ import annotations

import asyncio

import pytest

import relaybus as rb
from relaybus._driver import ElectParams
from relaybus.testing import drain

from ._support import Doc, Ping, beat, claim, job_of, one_id, wait_for

S = rb.JobState


async def test_delete_removes_a_job_that_is_not_running(store) -> None:
    bus = rb.Bus(store=store)
    bus.job(Ping, name="conf.tools.del", unique=rb.Unique(by=("payload",)))(_noop)
    async with bus:
        waiting = one_id(await bus.dispatch(Ping(1)))
        gone = await bus.jobs.delete(waiting)
        assert (gone.id, gone.state) == (waiting, S.AVAILABLE)
        assert await bus.jobs.get(waiting) is None
        again = await bus.dispatch(Ping(1))  # the deleted job held the key: it is free now
        assert again.jobs[0].outcome == "inserted"
        [running] = await claim(store, "n1")
        with pytest.raises(rb.JobRunning, match="is running: cancel it first"):
            await bus.jobs.delete(running.id)
        assert (await job_of(bus, running.id)).state is S.RUNNING
        with pytest.raises(rb.JobNotFound):
            await bus.jobs.delete(waiting)


async def test_bulk_actions_by_filter_are_bounded_and_counted(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.tools.bulk", max_attempts=1)
    async def fail(event: Ping, ctx: rb.Context) -> None:
        raise RuntimeError("no")

    bus.job(Doc, name="conf.tools.bulk.doc", queue="docs")(_noop)
    async with bus:
        for n in range(5):
            await bus.dispatch(Ping(n))
        assert await drain(bus) == 5
        assert (await bus.jobs.stats())["default"] == {"discarded": 5}
        assert await bus.jobs.retry_many(state="discarded", limit=3) == 3
        assert (await bus.jobs.stats())["default"] == {"available": 3, "discarded": 2}
        docs = [one_id(await bus.dispatch(Doc(str(n)))) for n in range(3)]
        assert await bus.jobs.cancel_many(queue="docs") == 3
        assert {(await job_of(bus, i)).state for i in docs} == {S.CANCELLED}
        assert await bus.jobs.cancel_many(queue="docs") == 0  # finished: nothing to cancel
        assert await bus.jobs.delete_many(state="cancelled") == 3
        assert await bus.jobs.delete_many(state="discarded", handler="conf.tools.bulk") == 2
        assert await bus.jobs.stats() == {"default": {"available": 3}}
        with pytest.raises(ValueError, match="limit"):
            await bus.jobs.retry_many(limit=0)


async def test_list_pages_with_a_cursor_newest_first_and_by_text(store) -> None:
    bus = rb.Bus(store=store)
    bus.job(Doc, name="conf.tools.list")(_noop)
    async with bus:
        ids = [
            one_id(await bus.dispatch(Doc(key, {"city": city}), meta={"tenant": tenant}))
            for key, city, tenant in [
                ("a", "Kyiv", "acme"),
                ("b", "Lviv", "acme"),
                ("c", "Kyiv", "umbrella"),
                ("d", "Odesa", "acme"),
            ]
        ]
        page = await bus.jobs.list(limit=2)
        assert [j.id for j in page] == ids[:2]
        rest = await bus.jobs.list(limit=2, after_id=page[-1].id)
        assert [j.id for j in rest] == ids[2:]
        newest = await bus.jobs.list(limit=3, order="newest")
        assert [j.id for j in newest] == ids[::-1][:3]
        older = await bus.jobs.list(order="newest", before_id=newest[-1].id)
        assert [j.id for j in older] == ids[:1]
        assert [j.id for j in await bus.jobs.list(text="Kyiv")] == [ids[0], ids[2]]
        assert [j.id for j in await bus.jobs.list(text="umbrella")] == [ids[2]]  # meta too
        assert await bus.jobs.list(text="kyiv") == []  # case-sensitive
        with pytest.raises(ValueError, match="order"):
            await bus.jobs.list(order="sideways")  # type: ignore[arg-type]


async def test_nodes_lists_live_nodes_with_the_leader_and_their_running_jobs(
    store, clock
) -> None:
    bus = rb.Bus(store=store)
    bus.job(Ping, name="conf.tools.nodes")(_noop)
    async with bus:
        for n in range(3):
            await bus.dispatch(Ping(n))
        await beat(store, "n1", ttl=30)
        await beat(store, "n2", ttl=5)
        assert await store.elect(ElectParams(node="n2", ttl=30))
        await claim(store, "n1", limit=2)
        nodes = await bus.nodes()
        assert [(n.node, n.leader, n.running) for n in nodes] == [
            ("n1", False, 2),
            ("n2", True, 0),
        ]
        assert all(isinstance(n, rb.NodeInfo) for n in nodes)
        clock.advance(10)  # n2's lease (and leadership) ran out
        assert [n.node for n in await bus.nodes()] == ["n1"]


async def test_a_paused_queue_is_fetched_by_no_node_until_resumed(store) -> None:
    ran: list[int] = []
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.tools.pause", queue="mail")
    async def send(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)

    bus.job(Doc, name="conf.tools.other")(_noop)
    async with bus:
        await bus.queues.pause("mail")
        await bus.queues.pause("mail")  # idempotent
        await bus.dispatch(Ping(1))
        await bus.dispatch(Doc("x"))
        assert await drain(bus) == 1  # only the other queue's job
        assert ran == []
        assert await claim(store, "n1", queue="mail") == []
        listed = {q.name: q for q in await bus.queues.list()}
        assert listed["mail"].paused and listed["mail"].counts == {"available": 1}
        assert not listed["default"].paused
        assert isinstance(listed["mail"], rb.QueueInfo)
        await bus.queues.resume("mail")
        assert await drain(bus) == 1
        assert ran == [1]
        assert not {q.name: q for q in await bus.queues.list()}["mail"].paused
        with pytest.raises(rb.ConfigurationError):
            await bus.queues.pause("bad name")


async def test_a_running_worker_stops_fetching_a_paused_queue(store) -> None:
    started = asyncio.Event()
    ran: list[int] = []
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.tools.live")
    async def h(event: Ping, ctx: rb.Context) -> None:
        ran.append(event.n)
        started.set()

    async with bus:
        async with bus.worker(queues={"default": 1}, poll_interval=0.05):
            await bus.queues.pause("default")
            await bus.dispatch(Ping(1))
            with pytest.raises(TimeoutError):
                await wait_for(started, limit=0.5)  # bounded: nothing may start while paused
            assert ran == []
            await bus.queues.resume("default")
            await wait_for(started)
        assert ran == [1]


async def _noop(event: object, ctx: rb.Context) -> None:
    return None
