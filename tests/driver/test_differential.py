"""Differential: the same random operations on MemoryStore (the reference) and on each
database store give the same outcomes and the same jobs."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from relaybus._driver import Completion, CompletionKind, StageParams
from relaybus.stores.memory import MemoryStore
from relaybus.testing import FakeClock
from tests.conftest import START

from ._support import S, claim, new_job

FIELDS = ("payload", "priority", "meta", "scheduled_at", "queue", "max_attempts")
KINDS: tuple[CompletionKind, ...] = ("completed", "retry", "snooze", "cancel", "discard", "return")


def _same(a: Any, b: Any) -> None:
    assert (a.state, a.queue, a.priority, a.payload, a.meta, a.max_attempts, a.attempt) == (
        b.state,
        b.queue,
        b.priority,
        b.payload,
        b.meta,
        b.max_attempts,
        b.attempt,
    )
    assert (a.scheduled_at, a.finalized_at, a.attempted_by) == (
        b.scheduled_at,
        b.finalized_at,
        b.attempted_by,
    )
    assert [(e.kind, e.message, e.attempt) for e in a.errors] == [
        (e.kind, e.message, e.attempt) for e in b.errors
    ]


@pytest.mark.parametrize("store_kind", ["postgres", "sqlite"])
@pytest.mark.parametrize("seed", [7, 8])
async def test_matches_memory_store_on_random_operations(
    store: Any, clock: FakeClock, seed: int
) -> None:
    mem = MemoryStore(clock=clock)
    await mem.open()
    rng = random.Random(seed)
    keys = [bytes([i]) * 32 for i in range(4)]
    id_map: dict[int, int] = {}  # memory id -> store id
    for _ in range(25):
        batch = []
        for _ in range(rng.randint(1, 8)):
            rep: dict[S, tuple[str, ...]] = {}
            for state in (S.AVAILABLE, S.SCHEDULED, S.RETRYABLE):
                if rng.random() < 0.5:
                    rep[state] = tuple(rng.sample(FIELDS, rng.randint(1, 3)))
            at = START + timedelta(seconds=rng.choice([-5, 20])) if rng.random() < 0.2 else None
            batch.append(
                new_job(
                    {"n": rng.randint(0, 99)},
                    key=rng.choice([*keys, None]),
                    replace=rep,
                    queue=rng.choice(["a", "b"]),
                    priority=rng.randint(0, 9),
                    delay=rng.choice([None, 0, 30, 90]),
                    at=at,
                    max_attempts=rng.randint(1, 9),
                    meta={"m": rng.randint(0, 3)},
                )
            )
        got = await store.insert_many(batch)
        want = await mem.insert_many(batch)
        for g, w in zip(got, want, strict=True):
            assert g.outcome == w.outcome
            assert id_map.setdefault(w.id, g.id) == g.id
        if rng.random() < 0.3:
            clock.advance(rng.choice([10, 60]))
            assert await store.stage(StageParams()) == await mem.stage(StageParams())
        if rng.random() < 0.5:  # run some jobs of one queue and end them in random ways
            queue, limit = rng.choice(["a", "b"]), rng.randint(1, 3)
            claimed = await claim(store, "n", queue=queue, limit=limit)
            reference = await claim(mem, "n", queue=queue, limit=limit)
            assert [id_map[c.id] for c in reference] == [c.id for c in claimed]
            ends = [(rng.choice(KINDS), rng.choice([0, 45])) for _ in claimed]
            applied = await store.complete_many(
                [
                    Completion(c.id, c.attempt, k, None, d)
                    for c, (k, d) in zip(claimed, ends, strict=True)
                ]
            )
            expected = await mem.complete_many(
                [
                    Completion(c.id, c.attempt, k, None, d)
                    for c, (k, d) in zip(reference, ends, strict=True)
                ]
            )
            assert applied == [id_map[i] for i in expected]
        if rng.random() < 0.1:
            victim = rng.choice(sorted(id_map))
            _same(await store.cancel(id_map[victim]), await mem.cancel(victim))
    assert await store.stats() == await mem.stats()
    for mem_id, store_id in id_map.items():
        a, b = await mem.get(mem_id), await store.get(store_id)
        assert a is not None and b is not None
        _same(a, b)
