"""The producer's fetch loop: when it claims again, and when it waits for news."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import relaybus as rb
from relaybus._driver import Claimed, FetchParams
from tests.conformance._support import wait_for


@dataclass(frozen=True)
class Hold(rb.Event, name="tests.producer.hold"):
    n: int = 0


class CountingStore(rb.MemoryStore):
    """A MemoryStore that records what each fetch asked for and got."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches: list[tuple[int, int]] = []  # (limit, claimed)

    async def fetch(self, params: FetchParams) -> list[Claimed]:
        claimed = await super().fetch(params)
        self.fetches.append((params.limit, len(claimed)))
        return claimed


async def test_a_claim_that_came_back_short_is_not_followed_by_another_at_once() -> None:
    store = CountingStore()
    bus: rb.Bus[Any] = rb.Bus(store=store)
    started = asyncio.Event()
    release = asyncio.Event()

    @bus.job(Hold, name="tests.producer.hold", timeout=None)
    async def hold(event: Hold, ctx: rb.Context[Any]) -> None:
        started.set()
        await release.wait()

    async with bus, bus.worker(queues={"default": 4}, poll_interval=30) as worker:
        await bus.dispatch(Hold(0))
        await wait_for(started)
        claims = list(store.fetches)
        # The claim that took the job asked for more than it got: the queue was empty, so
        # nothing is claimed again until there is news (the slot stays busy, nothing is
        # inserted, the poll is 30 s away).
        assert claims[-1][1] == 1 and claims[-1][0] > 1
        for _ in range(20):
            await asyncio.sleep(0)
        assert store.fetches == claims
        await bus.dispatch(Hold(1))  # news: an insert wakes the producer, which claims it
        async with asyncio.timeout(10):
            while len(store.fetches) == len(claims):  # noqa: ASYNC110 - the store's record
                await asyncio.sleep(0.005)
        assert store.fetches[len(claims)][1] == 1
        release.set()
        await worker.completer.flush()
