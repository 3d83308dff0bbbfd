"""Shared events and helpers of the conformance suite (the executable spec of DESIGN.md §2)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import relaybus as rb
from relaybus._driver import FetchParams, HeartbeatParams


@dataclass(frozen=True)
class Ping(rb.Event, name="conf.ping"):
    n: int = 0


@dataclass(frozen=True)
class Pong(rb.Event, name="conf.pong"):
    n: int = 0


@dataclass(frozen=True)
class Doc(rb.Event, name="conf.doc"):
    key: str
    body: dict[str, Any] = field(default_factory=dict)


async def job_of(bus: rb.Bus[Any], job_id: int) -> rb.Job:
    """The job with ``job_id``, which must exist."""
    job = await bus.jobs.get(job_id)
    assert job is not None, f"job {job_id} is missing"
    return job


def one_id(result: rb.DispatchResult) -> int:
    """The id of the single job a dispatch inserted (or matched)."""
    assert len(result.jobs) == 1, result.jobs
    return result.jobs[0].id


def outcomes(result: rb.DispatchResult) -> list[str]:
    return [r.outcome for r in result.jobs]


def nonzero(stats: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Stats without zero counts (a store may or may not list empty states)."""
    cleaned = {q: {str(s): c for s, c in by.items() if c} for q, by in stats.items()}
    return {q: by for q, by in cleaned.items() if by}


async def wait_for(event: asyncio.Event, limit: float = 10.0) -> None:
    """Wait for an event set by a handler; the limit is only a safety net."""
    async with asyncio.timeout(limit):
        await event.wait()


async def claim(
    store: Any, node: str, *, queue: str = "default", limit: int = 10, idle: bool = True
) -> list[Any]:
    """Claim jobs directly through the store, as a (soon dead) node would."""
    return await store.fetch(
        FetchParams(queue=queue, limit=limit, node=node, isolate_after=2, idle=idle)
    )


async def beat(
    store: Any, node: str, running: Sequence[tuple[int, int]] = (), ttl: float = 30
) -> list[int]:
    """Heartbeat ``node`` through the store; returns the ids of ``running`` it no longer runs."""
    return list(await store.heartbeat(HeartbeatParams(node=node, ttl=ttl, running=running)))
