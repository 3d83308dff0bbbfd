"""A poison suspect (rescued max_rescues - 1 times) runs alone inside a real running worker:
taken only when the node is idle, and nothing else is fetched until it ends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import relaybus as rb
from relaybus.testing import FakeClock
from tests.conformance._support import claim, wait_for


@dataclass(frozen=True)
class Step(rb.Event, name="tests.isolation.step"):
    name: str


async def test_a_suspect_runs_alone_in_a_running_worker(clock: FakeClock) -> None:
    bus: rb.Bus[None] = rb.Bus(store=rb.MemoryStore(clock=clock))
    started: dict[str, asyncio.Event] = {n: asyncio.Event() for n in ("a", "suspect", "b")}
    release: dict[str, asyncio.Event] = {n: asyncio.Event() for n in ("a", "suspect", "b")}
    order: list[str] = []

    @bus.job(Step, name="tests.isolation.run", timeout=None)
    async def run(event: Step, ctx: rb.Context[Any]) -> None:
        order.append(event.name)
        started[event.name].set()
        await release[event.name].wait()

    async with bus:
        await bus.dispatch(Step("a"), priority=3)
        worker = bus.worker(queues={"default": 4}, max_rescues=3, node_ttl=30)
        async with worker:
            await wait_for(started["a"])
            suspect = (await bus.dispatch(Step("suspect"))).jobs[0].id
            for crash in range(2):  # it crashes two other nodes: now a suspect
                assert [j.id for j in await claim(bus.store, f"dead-{crash}")] == [suspect]
                clock.advance(31)
                await worker.heartbeat.run_once()  # this node stays alive on the fake clock
                assert await worker.rescuer.run_once() == 1
                await worker.stager.run_once()
            job = await bus.jobs.get(suspect)
            assert job is not None and job.state is rb.JobState.AVAILABLE
            await asyncio.sleep(0.05)  # the worker fetches meanwhile; the suspect must wait
            assert order == ["a"]
            release["a"].set()
            await wait_for(started["suspect"])  # the node went idle: the suspect starts, alone
            await bus.dispatch(Step("b"))
            await asyncio.sleep(0.05)
            assert order == ["a", "suspect"]  # b waits although 3 slots are free
            release["suspect"].set()
            await wait_for(started["b"])
            release["b"].set()
        assert order == ["a", "suspect", "b"]
