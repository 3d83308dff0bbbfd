"""Claiming ahead (issue 14): while runs are short, a node claims its next jobs while the
current ones run. A job claimed but not started yet is covered like a running
one: heartbeats report it, an admin cancel drops it, shutdown hands it back refunded, its
timeout clock starts when it starts, and one that waits too long goes back for any node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

import relaybus as rb
from relaybus._runtime.producer import AHEAD
from relaybus._runtime.worker import Worker

from ._support import job_of, one_id, wait_for

S = rb.JobState


@dataclass(frozen=True)
class Quick(rb.Event, name="conf.ahead.quick"):
    n: int = 0


@dataclass(frozen=True)
class Block(rb.Event, name="conf.ahead.block"):
    pass


@dataclass(frozen=True)
class Late(rb.Event, name="conf.ahead.late"):
    pass


async def until(check: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait until ``check()`` holds, looking every 5 ms (the limit is only a safety net)."""
    async with asyncio.timeout(limit):
        while not check():  # noqa: ASYNC110 - the runtime's own state, no event to await
            await asyncio.sleep(0.005)


@dataclass
class Scene:
    """One slot busy with a blocking job (``block_id``) and one job (``late_id``) claimed
    behind it, waiting in the buffer."""

    bus: rb.Bus[Any]
    worker: Worker
    block_id: int
    late_id: int
    release: asyncio.Event
    late_runs: list[float]  # per run of the late job: its deadline (loop time)
    seen_waiting: float  # loop time once it was seen claimed and waiting (after its claim)

    async def settle(self) -> None:
        """Let the blocking job end; wait until the node holds nothing and all is written."""
        self.release.set()
        await until(lambda: not self.worker.node.busy)
        async with asyncio.timeout(10):
            await self.worker.completer.flush()


@asynccontextmanager
async def late_behind_block(
    store: Any, *, late_timeout: float | None = None, grace: float = 30.0
) -> AsyncIterator[Scene]:
    bus: rb.Bus[Any] = rb.Bus(store=store)
    release = asyncio.Event()
    block_started = asyncio.Event()
    quick_done = asyncio.Event()
    late_runs: list[float] = []
    holder: list[Worker] = []

    @bus.job(Quick, name="conf.ahead.quick")
    async def quick(event: Quick, ctx: rb.Context) -> None:
        quick_done.set()

    @bus.job(Block, name="conf.ahead.block")
    async def block(event: Block, ctx: rb.Context) -> None:
        block_started.set()
        await release.wait()

    @bus.job(Late, name="conf.ahead.late", timeout=late_timeout)
    async def late(event: Late, ctx: rb.Context) -> None:
        run = holder[0].node.runs[ctx.job.id]
        late_runs.append(float("inf") if run.deadline is None else run.deadline)

    async with bus, bus.worker(queues={"default": 1}, poll_interval=0.02, grace=grace) as w:
        holder.append(w)
        await bus.dispatch(Quick())
        await wait_for(quick_done)  # a short run: the producer may claim ahead now
        block_id = one_id(await bus.dispatch(Block()))
        await wait_for(block_started)
        late_id = one_id(await bus.dispatch(Late()))
        await until(lambda: late_id in w.node.waiting)
        seen = asyncio.get_running_loop().time()
        yield Scene(bus, w, block_id, late_id, release, late_runs, seen)
        release.set()


async def test_a_node_claims_its_next_jobs_while_the_current_ones_run(store) -> None:
    bus: rb.Bus[Any] = rb.Bus(store=store)
    held: list[int] = []
    holder: list[Worker] = []
    ready = asyncio.Event()  # the worker is in holder: the jobs are queued before it starts
    done = asyncio.Event()

    @bus.job(Quick, name="conf.ahead.quick")
    async def quick(event: Quick, ctx: rb.Context) -> None:
        await ready.wait()
        node = holder[0].node
        held.append(len(node.runs) + len(node.waiting))
        if len(held) == 60:
            done.set()

    async with bus:
        await bus.dispatch_many([Quick(n) for n in range(60)])
        async with bus.worker(queues={"default": 2}, poll_interval=0.02) as w:
            holder.append(w)
            ready.set()
            await wait_for(done)
        await until(lambda: not w.node.busy)
        completed = await bus.jobs.count(state=S.COMPLETED)
    assert max(held) > 2  # more jobs held than slots: claimed ahead
    assert max(held) <= 2 * (1 + AHEAD)  # never more than the slots and their buffer
    assert completed == 60


async def test_the_wait_limit_is_a_quarter_of_the_grace_at_most_a_second(store) -> None:
    bus: rb.Bus[Any] = rb.Bus(store=store)
    async with bus:
        limits = [
            bus.worker(queues={"default": 2}, grace=grace).producers["default"].wait_limit
            for grace in (30, 2, 0)
        ]
    assert limits == [1.0, 0.5, 0.0]  # grace 0: claim for idle slots only


async def test_a_buffered_job_is_reported_by_heartbeats_and_running_in_the_store(store) -> None:
    async with late_behind_block(store) as scene:
        pairs = scene.worker.node.running_pairs()
        assert (scene.late_id, 1) in pairs and (scene.block_id, 1) in pairs
        assert await scene.worker.heartbeat.run_once() == []  # still this node's
        late = await job_of(scene.bus, scene.late_id)
        assert late.state is S.RUNNING and late.attempt == 1
        await scene.settle()
        assert len(scene.late_runs) == 1
        assert (await job_of(scene.bus, scene.late_id)).state is S.COMPLETED


async def test_an_admin_cancel_drops_a_buffered_job_unstarted(store) -> None:
    async with late_behind_block(store) as scene:
        other = rb.Bus(store=scene.bus.store)  # another process's admin: seen via heartbeat
        cancelled = await other.jobs.cancel(scene.late_id)
        assert cancelled.state is S.CANCELLED
        assert scene.late_id in scene.worker.node.waiting  # this node has not heard yet
        assert await scene.worker.heartbeat.run_once() == [scene.late_id]
        assert scene.late_id not in scene.worker.node.waiting
        await scene.settle()
        assert (await job_of(scene.bus, scene.block_id)).state is S.COMPLETED
        assert scene.late_runs == []  # never ran
        assert (await job_of(scene.bus, scene.late_id)).state is S.CANCELLED


async def test_a_local_admin_cancel_drops_a_buffered_job_at_once(store) -> None:
    async with late_behind_block(store) as scene:
        await scene.bus.jobs.cancel(scene.late_id)
        assert scene.late_id not in scene.worker.node.waiting
        await scene.settle()
        assert scene.late_runs == []
        assert (await job_of(scene.bus, scene.late_id)).state is S.CANCELLED


async def test_a_buffered_jobs_timeout_starts_when_it_starts(store) -> None:
    async with late_behind_block(store, late_timeout=0.2) as scene:
        await asyncio.sleep(0.3)  # longer than its timeout in the buffer (real loop time)
        await scene.settle()
        assert len(scene.late_runs) == 1
        # Claimed before seen_waiting, started 0.3 s after it: a deadline counted from the
        # claim would be before seen_waiting + 0.2; counted from the start it is after.
        assert scene.late_runs[0] >= scene.seen_waiting + 0.3 + 0.2
        late = await job_of(scene.bus, scene.late_id)
        assert late.state is S.COMPLETED and late.attempt == 1 and late.errors == ()


async def test_a_job_waiting_past_its_limit_is_handed_back_for_any_node(store) -> None:
    # grace 0.4 s: a buffered job may wait a quarter of it, 0.1 s
    async with late_behind_block(store, grace=0.4) as scene:
        assert scene.worker.producers["default"].wait_limit == pytest.approx(0.1)
        await until(lambda: scene.late_id not in scene.worker.node.waiting)
        async with asyncio.timeout(10):
            await scene.worker.completer.flush()
        late = await job_of(scene.bus, scene.late_id)
        assert late.state is S.AVAILABLE and late.attempt == 0  # refunded, nobody's
        assert late.errors == ()
        # The slot is still held by a long run: the node claims nothing ahead meanwhile (not
        # the job it just handed back either), however often it polls or is notified.
        await asyncio.sleep(0.1)  # five poll intervals
        late = await job_of(scene.bus, scene.late_id)
        assert late.state is S.AVAILABLE and late.attempt == 0
        assert scene.late_id not in scene.worker.node.waiting
        await scene.settle()
        await until(lambda: bool(scene.late_runs))  # then claimed again once a slot was free
        await scene.settle()
        late = await job_of(scene.bus, scene.late_id)
        assert late.state is S.COMPLETED and late.attempt == 1


async def test_shutdown_hands_a_buffered_job_back_refunded(store) -> None:
    async with late_behind_block(store) as scene:
        async with asyncio.timeout(10):
            await scene.worker.stop(grace=0.05)
        block = await job_of(scene.bus, scene.block_id)
        late = await job_of(scene.bus, scene.late_id)
        assert block.state is S.AVAILABLE and block.attempt == 0
        assert late.state is S.AVAILABLE and late.attempt == 0
        assert scene.late_runs == []
