"""Soak: a worker's PostgreSQL backends are terminated again and again while it processes short
jobs. Every job must complete, and none may run twice at the same attempt (a claim whose answer
was lost is given back uncharged, and never while the node runs it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg

import relaybus as rb
from tests.stores import PG_DSN, server_missing

JOBS = 3000
KILL_EVERY = 0.2  # seconds between rounds of terminated backends
LIMIT = 55.0  # the soak's whole budget (the suite's rule: at most 60 s)


@dataclass(frozen=True)
class Tick(rb.Event, name="soak.tick"):
    n: int


async def _terminate(admin: Any, name: str, stop: asyncio.Event) -> int:
    killed = 0
    query = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = $1 AND pid <> pg_backend_pid()"
    )
    while not stop.is_set():
        killed += await admin.fetchval(query, name)
        try:
            async with asyncio.timeout(KILL_EVERY):
                await stop.wait()
        except TimeoutError:
            pass
    return killed


async def _stats_after_the_kills(bus: rb.Bus[Any]) -> dict[str, dict[str, int]]:
    """The pool may still hold a connection the server terminated: the first statement on it
    fails (a StoreError, as for any caller during an outage); the next one gets a new one."""
    for _ in range(5):
        try:
            return await bus.jobs.stats()
        except rb.StoreError:
            continue
    return await bus.jobs.stats()


async def test_terminated_backends_never_make_a_job_run_twice_at_one_attempt() -> None:
    try:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        server_missing("PostgreSQL", exc)
        raise
    name = f"soak_{uuid.uuid4().hex[:10]}"  # only this test's backends are terminated
    schema = f"t_{name}"
    store = rb.PostgresStore(f"{PG_DSN}?application_name={name}", schema=schema, auto_migrate=True)
    bus = rb.Bus(store=store)
    runs: list[tuple[int, int]] = []

    @bus.job(Tick, timeout=30, max_attempts=20, backoff=rb.Constant(0.05))
    async def record(event: Tick, ctx: rb.Context[Any]) -> None:
        assert ctx.job is not None
        runs.append((ctx.job.id, ctx.job.attempt))
        await asyncio.sleep(0.01)  # short jobs: claims and completions overlap the kills

    stop = asyncio.Event()
    killer: asyncio.Task[int] | None = None
    try:
        async with bus:
            for start in range(0, JOBS, 500):
                await bus.dispatch_many([Tick(i) for i in range(start, start + 500)])
            deadline = time.monotonic() + LIMIT
            async with bus.worker(
                queues={"default": 10}, poll_interval=0.05, heartbeat_interval=0.2,
                node_ttl=1.0, rescue_interval=0.5, grace=1.0,
            ):  # fmt: skip
                # Once the node runs (a node that cannot even start fails its start instead).
                killer = asyncio.create_task(_terminate(admin, name, stop))
                while time.monotonic() < deadline:
                    try:
                        stats = await bus.jobs.stats()
                    except rb.StoreError:
                        continue  # our own connection was just terminated
                    if stats.get("default", {}).get("completed", 0) == JOBS:
                        break
                    await asyncio.sleep(0.2)  # polling the database's state, with a deadline
                stop.set()
                killed = await killer
            final = await _stats_after_the_kills(bus)
    finally:
        stop.set()
        if killer is not None and not killer.done():
            killer.cancel()  # it shares the admin connection: let it finish first
            await asyncio.gather(killer, return_exceptions=True)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
    assert final == {"default": {"completed": JOBS}}, final
    assert killed > 0
    twice = sorted(run for run, count in Counter(runs).items() if count > 1)
    assert twice == [], f"ran twice at the same attempt: {twice[:10]}"
    assert {job_id for job_id, _ in runs} == set(range(1, JOBS + 1))
