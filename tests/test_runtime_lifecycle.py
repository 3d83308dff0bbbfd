"""The runtime services' shared lifecycle, and how they ride out a store outage.

Time is simulated: a FakeClock, and either each service's ``tick()`` driven by a small event
scheduler in the test, or an injected ``sleep`` that moves the fake clock instead of waiting.
Tests wait on events or on log records (with a deadline), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import relaybus as rb
from relaybus._driver import Completion, FetchParams
from relaybus._errors import StoreError
from relaybus._runtime.completer import Completer
from relaybus._runtime.elector import Elector
from relaybus._runtime.maintenance import Heartbeat, Pruner, Rescuer, Stager
from relaybus._runtime.node import NodeState
from relaybus._runtime.service import (
    MAX_BACKOFF,
    QUIET_PERIOD,
    Backoff,
    Env,
    Outage,
    Periodic,
    Service,
)
from relaybus._runtime.worker import Worker, WorkerConfig
from relaybus.stores.memory import MemoryStore
from relaybus.testing import FakeClock

OUTAGE = 11 * 60.0  # the user's report: an 11-minute database outage


@dataclass(frozen=True)
class Tick(rb.Event, name="tests.lifecycle.tick"):
    n: int = 0


class FlakyStore(MemoryStore):
    """A MemoryStore that raises StoreError from every node and job operation while ``down``."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.down = False
        self.calls: dict[str, int] = {}

    def _check(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        if self.down:
            raise StoreError(f"{op}: connection refused (simulated outage)")

    async def fetch(self, params: Any) -> Any:
        self._check("fetch")
        return await super().fetch(params)

    async def complete_many(self, completions: Any) -> Any:
        self._check("complete_many")
        return await super().complete_many(completions)

    async def heartbeat(self, params: Any) -> Any:
        self._check("heartbeat")
        return await super().heartbeat(params)

    async def elect(self, params: Any) -> Any:
        self._check("elect")
        return await super().elect(params)

    async def stage(self, params: Any) -> Any:
        self._check("stage")
        return await super().stage(params)

    async def rescue(self, params: Any) -> Any:
        self._check("rescue")
        return await super().rescue(params)

    async def prune(self, params: Any) -> Any:
        self._check("prune")
        return await super().prune(params)


class Records(logging.Handler):
    """Collects log records; ``wait`` waits (with a deadline) for one matching a condition."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    def matching(self, text: str) -> list[logging.LogRecord]:
        return [r for r in self.records if text in r.getMessage()]

    async def wait(self, check: Callable[[], bool], limit: float = 10.0) -> None:
        async with asyncio.timeout(limit):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    def size(self) -> int:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        return sum(len(formatter.format(r)) for r in self.records)


@pytest.fixture
def records() -> Any:
    handler = Records()
    logger = logging.getLogger("tests.lifecycle")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)


def env_for(clock: FakeClock, **kw: Any) -> Env:
    return Env(logging.getLogger("tests.lifecycle"), clock, rng=random.Random(7), **kw)


class AlwaysLeader:
    def is_leader(self) -> bool:
        return True


class FakeSleep:
    """An injected ``Env.sleep``: records each wait and moves the fake clock by it."""

    def __init__(self, clock: FakeClock, on_wait: Callable[[], None] = lambda: None) -> None:
        self.clock = clock
        self.waits: list[float] = []
        self.on_wait = on_wait

    async def __call__(self, seconds: float, stopping: asyncio.Event) -> None:
        self.waits.append(seconds)
        if not stopping.is_set():
            self.clock.advance(seconds)
        self.on_wait()
        await asyncio.sleep(0)


async def simulate(clock: FakeClock, services: list[Periodic], until: float) -> dict[str, list]:
    """Run the services' ticks in fake time until ``until`` seconds from now: each tick is
    due when the delay its previous tick returned has passed. Returns each one's delays."""
    start = clock.monotonic()
    due = [(start, order, s) for order, s in enumerate(services)]
    heapq.heapify(due)
    delays: dict[str, list[float]] = {s.name: [] for s in services}
    while due[0][0] < start + until:
        when, order, service = heapq.heappop(due)
        if when > clock.monotonic():
            clock.advance(when - clock.monotonic())
        delay = await service.tick()
        delays[service.name].append(delay)
        heapq.heappush(due, (when + delay, order, service))
    return delays


def failure_lines(records: Records, name: str) -> list[logging.LogRecord]:
    return [r for r in records.records if r.getMessage().startswith(f"{name} ")]


# -- Backoff and Outage, pure


def test_backoff_grows_doubling_to_its_cap_with_jitter() -> None:
    class Fixed(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    backoff = Backoff(first=1.0, cap=30.0)
    assert [backoff.delay(n, Fixed(0.0)) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert [backoff.delay(n, Fixed(1.0)) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert backoff.delay(10_000, Fixed(0.0)) == 30.0  # no overflow after a long outage


def test_outage_logs_first_failure_with_traceback_then_short_lines(records: Records) -> None:
    clock = FakeClock()
    outage = Outage("stager", logging.getLogger("tests.lifecycle"), clock)
    for _ in range(100):  # one failure a second for 100 s
        try:
            raise StoreError("connection refused\nsecond line")
        except StoreError as exc:
            outage.failed(exc, 1.0)
        clock.advance(1)
    outage.recovered()
    outage.recovered()  # only once
    first, *rest = records.records
    assert first.levelno == logging.ERROR and first.exc_info is not None
    assert len(rest) == 4  # short lines at 30, 60 and 90 s, then the recovery line
    assert all(r.exc_info is None for r in rest)
    assert [r.levelno for r in rest] == [logging.WARNING] * 3 + [logging.INFO]
    assert "100 failures" in rest[-1].getMessage()
    assert all("\n" not in r.getMessage() for r in rest)


# -- periodic services through an outage


async def test_stager_outage_is_logged_briefly_and_backs_off(records: Records) -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    await store.open()
    leader: Any = AlwaysLeader()
    stager = Stager(store, 1.0, env_for(clock), leader, lambda queue: None)
    assert await stager.tick() == 1.0  # healthy: every interval
    store.down = True
    delays = (await simulate(clock, [stager], OUTAGE))["stager"]
    store.down = False
    assert await stager.tick() == 1.0  # recovered: back to its interval
    # backoff: doubling from 1 s (jitter: x0.5-1), capped at 30 s
    for n, delay in enumerate(delays[:5], start=1):
        assert 2 ** (n - 1) / 2 <= delay <= 2 ** (n - 1)
    assert all(MAX_BACKOFF / 2 <= d <= MAX_BACKOFF for d in delays[5:])
    attempts = store.calls["stage"] - 2
    assert OUTAGE / MAX_BACKOFF <= attempts <= OUTAGE / (MAX_BACKOFF / 2) + 6  # not 660
    lines = failure_lines(records, "stager")
    assert lines[0].levelno == logging.ERROR and lines[0].exc_info is not None
    assert sum(r.exc_info is not None for r in lines) == 1  # one traceback in 11 minutes
    assert len(lines) <= 1 + OUTAGE / QUIET_PERIOD + 1 + 1
    assert lines[-1].levelno == logging.INFO and "recovered" in lines[-1].getMessage()
    assert len(records.matching("recovered")) == 1
    assert records.size() < 12_000  # was 2.4 MB


async def test_heartbeat_and_elector_never_wait_longer_than_heartbeat_interval(
    records: Records,
) -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    await store.open()
    env = env_for(clock)
    node = NodeState("n1", isolate_after=2)
    heartbeat = Heartbeat(store, 5.0, env, node, ttl=30.0)
    elector = Elector(store, "n1", 30.0, 5.0, env)
    store.down = True
    delays = await simulate(clock, [heartbeat, elector], OUTAGE)
    store.down = False
    for name in ("heartbeat", "elector"):
        assert len(delays[name]) > OUTAGE / 5  # kept trying at least every interval
        assert max(delays[name]) <= 5.0
        assert delays[name][0] <= 1.0  # the first retry comes quickly
        assert sum(r.exc_info is not None for r in failure_lines(records, name)) == 1
        assert len(failure_lines(records, name)) <= 1 + OUTAGE / QUIET_PERIOD + 1
    assert await heartbeat.tick() == 5.0
    assert await elector.tick() == 5.0
    assert elector.is_leader()
    assert len(records.matching("heartbeat recovered")) == 1
    assert len(records.matching("elector recovered")) == 1


async def test_a_whole_node_through_an_outage_logs_little(records: Records) -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    bus: rb.Bus[None] = rb.Bus(store=store, logger=logging.getLogger("tests.lifecycle"))
    async with bus:
        w = bus.worker(queues={"default": 2}, poll_interval=1.0)
        services: list[Periodic] = [w.heartbeat, w.elector, w.stager, w.rescuer, w.pruner]
        await simulate(clock, services, 60)  # healthy, leading
        assert w.elector.is_leader()
        before = len(records.records)
        store.down = True
        await simulate(clock, services, OUTAGE)
        store.down = False
        await simulate(clock, services, 120)
        outage_records = records.records[before:]
        with_traceback = [r for r in outage_records if r.exc_info is not None]
        # the heartbeat and the elector fail; the leader-only ones too until the lease ends
        assert {r.getMessage().split()[0] for r in with_traceback} <= {
            "heartbeat", "elector", "stager", "rescuer", "pruner"
        }
        assert len(with_traceback) <= 5
        assert len(outage_records) < 5 * (2 + OUTAGE / QUIET_PERIOD) + 5
        assert w.elector.is_leader()  # leads again after the outage
        assert records.size() < 40_000


# -- the completer's and the producer's retry loops


async def test_completer_retries_a_failing_write_quietly_and_drops_nothing(
    records: Records,
) -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    bus: rb.Bus[None] = rb.Bus(store=store)

    @bus.job(Tick, name="tests.lifecycle.job")
    async def job(event: Tick, ctx: rb.Context[None]) -> None:
        return None

    async with bus:
        job_id = (await bus.dispatch(Tick())).jobs[0].id
        (claimed,) = await store.fetch(FetchParams("default", 1, "n1", 2, True))
        store.down = True
        started = clock.monotonic()

        def recover_after_outage() -> None:
            if clock.monotonic() - started >= OUTAGE:
                store.down = False

        sleep = FakeSleep(clock, recover_after_outage)
        completer = Completer(store, env_for(clock, sleep=sleep))
        completer.start()
        completer.add(Completion(claimed.id, claimed.attempt, "completed"))
        async with asyncio.timeout(10):
            await completer.flush()
        await completer.stop()
        job_row = await bus.jobs.get(job_id)
        assert job_row is not None and job_row.state is rb.JobState.COMPLETED
        assert max(sleep.waits) <= 5.0
        assert len(sleep.waits) >= OUTAGE / 5  # kept retrying, up to every 5 s
        lines = failure_lines(records, "writing completions")
        assert sum(r.exc_info is not None for r in lines) == 1
        assert len(lines) <= 1 + OUTAGE / QUIET_PERIOD + 1
        assert "recovered" in lines[-1].getMessage()


async def test_producer_retries_a_failing_fetch_quietly_then_runs_jobs(
    records: Records,
) -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    bus: rb.Bus[None] = rb.Bus(store=store, logger=logging.getLogger("tests.lifecycle"))
    ran = asyncio.Event()

    @bus.job(Tick, name="tests.lifecycle.produced")
    async def job(event: Tick, ctx: rb.Context[None]) -> None:
        ran.set()

    async with bus:
        await bus.dispatch(Tick())
        store.down = True
        started = clock.monotonic()

        def recover_after_outage() -> None:
            if clock.monotonic() - started >= OUTAGE:
                store.down = False

        sleep = FakeSleep(clock, recover_after_outage)
        w = Worker(bus, _config(), env=env_for(clock, sleep=sleep))
        producer = w.producers["default"]
        w.completer.start()
        producer.start()
        async with asyncio.timeout(10):
            await ran.wait()
        await producer.stop()
        await asyncio.gather(*producer.slots)
        await w.completer.stop()
        assert max(sleep.waits) <= 5.0
        lines = failure_lines(records, "fetching from queue 'default'")
        assert sum(r.exc_info is not None for r in lines) == 1
        assert len(lines) <= 1 + OUTAGE / QUIET_PERIOD + 1
        assert "recovered" in lines[-1].getMessage()


# -- start / stop


async def test_a_periodic_service_starts_ticks_and_stops_promptly() -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    await store.open()
    leader: Any = AlwaysLeader()
    pruner = Pruner(store, 3600.0, env_for(clock), leader, rb.Retention())
    pruner.start()
    assert pruner.running
    with pytest.raises(RuntimeError):
        pruner.start()
    async with asyncio.timeout(10):
        await pruner.ran.wait()  # the first tick runs at once
        await pruner.stop()  # does not wait out the hour
    assert not pruner.running
    await pruner.stop()  # idempotent


async def test_stop_logs_what_a_service_ended_with(records: Records) -> None:
    class Broken(Service):
        name = "broken"

        async def _main(self) -> None:
            raise RuntimeError("boom")

    service = Broken(env_for(FakeClock()))
    service.start()
    await service.stop()
    (record,) = records.matching("broken stopped with an error")
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])


async def test_a_failing_teardown_step_is_logged_not_swallowed(records: Records) -> None:
    clock = FakeClock()

    class NoRelease(MemoryStore):
        async def release_node(self, node: str) -> None:
            raise StoreError("release failed (simulated)")

    logger = logging.getLogger("tests.lifecycle")
    bus: rb.Bus[None] = rb.Bus(store=NoRelease(clock=clock), logger=logger)
    async with bus, bus.worker(queues={"default": 1}, poll_interval=0.05):
        pass
    (record,) = records.matching("releasing the node failed")
    assert record.exc_info is not None


async def test_the_worker_starts_and_stops_every_service(clock: FakeClock) -> None:
    bus: rb.Bus[None] = rb.Bus(store=MemoryStore(clock=clock))
    async with bus:
        w = bus.worker(queues={"default": 1, "other": 1}, poll_interval=0.05)
        names = [s.name for s in w.services]
        assert names == [
            "completer", "heartbeat", "elector", "stager", "rescuer", "pruner", "scheduler",
            "watchdog", "producer[default]", "producer[other]",
        ]  # fmt: skip
        async with w:
            assert all(s.running for s in w.services)
        assert not any(s.running for s in w.services)


async def test_rescuer_outage_backs_off_to_the_cap(records: Records) -> None:
    clock = FakeClock()
    store = FlakyStore(clock)
    await store.open()
    leader: Any = AlwaysLeader()
    rescuer = Rescuer(store, 15.0, env_for(clock), leader, grace=1, max_rescues=3)
    store.down = True
    delays = (await simulate(clock, [rescuer], OUTAGE))["rescuer"]
    assert max(delays) <= MAX_BACKOFF
    assert max(delays) >= MAX_BACKOFF / 2
    assert sum(r.exc_info is not None for r in failure_lines(records, "rescuer")) == 1


def _config() -> WorkerConfig:
    return WorkerConfig.build(
        queues={"default": 2},
        node=None,
        poll_interval=0.05,
        heartbeat_interval=5,
        node_ttl=30,
        rescue_interval=15,
        max_rescues=3,
        grace=30,
        prune_interval=60,
        retention=None,
        handle_signals=False,
    )

