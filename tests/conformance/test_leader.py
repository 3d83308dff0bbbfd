"""§2 Leadership: one elected leader at a time holds a lease of node_ttl (the store's clock), and
acts on it only until its local monotonic deadline."""

from __future__ import annotations

import relaybus as rb

TTL = 30


async def test_one_leader_at_a_time_and_takeover_after_the_lease(store, clock) -> None:
    bus = rb.Bus(store=store)
    async with bus:
        a = bus.worker(queues={"default": 1}, node="node-a", node_ttl=TTL)
        b = bus.worker(queues={"default": 1}, node="node-b", node_ttl=TTL)
        assert a.node.id != b.node.id

        assert await a.elector.run_once() is True
        assert await b.elector.run_once() is False
        assert a.elector.is_leader()
        assert not b.elector.is_leader()

        clock.advance(TTL - 5)
        assert await a.elector.run_once() is True  # renewed
        clock.advance(TTL - 5)
        assert await b.elector.run_once() is False  # the renewed lease still holds
        assert a.elector.is_leader()

        clock.advance(TTL)  # a stopped renewing: its lease ran out
        assert not a.elector.is_leader()  # it stops acting on its own
        assert await b.elector.run_once() is True
        assert await a.elector.run_once() is False
        assert b.elector.is_leader()
        assert not a.elector.is_leader()


async def test_resigning_frees_the_lease_at_once(store, clock) -> None:
    bus = rb.Bus(store=store)
    async with bus:
        a = bus.worker(queues={"default": 1}, node="node-a", node_ttl=TTL)
        b = bus.worker(queues={"default": 1}, node="node-b", node_ttl=TTL)
        assert await a.elector.run_once() is True
        await a.elector.resign()
        assert not a.elector.is_leader()
        assert await b.elector.run_once() is True


async def test_a_stopped_worker_gives_up_leadership(store, clock) -> None:
    bus = rb.Bus(store=store)
    async with bus:
        async with bus.worker(queues={"default": 1}, node="node-a", node_ttl=TTL) as a:
            assert await a.elector.run_once() is True
        b = bus.worker(queues={"default": 1}, node="node-b", node_ttl=TTL)
        assert await b.elector.run_once() is True
