"""Run by tests/upgrade with the PREVIOUS release's relaybus on sys.path (never imported by the
suite itself): ``seed`` fills a store with jobs in every state, ``node`` runs a worker that keeps
dispatching and running jobs until SIGTERM. Uses only what 0.1.0 had."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import relaybus as rb
from relaybus._driver import Completion, FetchParams, HeartbeatParams


@dataclass(frozen=True)
class Tick(rb.Event, name="upgrade.tick"):
    n: int


@dataclass(frozen=True)
class State(rb.Event, name="upgrade.state"):
    n: int


def make_bus(dsn: str, schema: str) -> rb.Bus[Any]:
    if dsn.startswith("postgresql://"):
        store: Any = rb.PostgresStore(dsn, schema=schema, auto_migrate=True, min_size=1)
    else:
        store = rb.SQLiteStore(dsn)
    bus: rb.Bus[Any] = rb.Bus(store=store)
    # The seeded jobs live in queue "states", which the node never serves; timeout=None keeps
    # the seeded running job from being rescued as overdue.
    bus.job(State, name="upgrade.state", queue="states", timeout=None)(noop)
    bus.job(Tick, name="upgrade.live", queue="live")(record)
    return bus


async def noop(event: State, ctx: rb.Context[Any]) -> None:
    return None


async def record(event: Tick, ctx: rb.Context[Any]) -> None:
    fd = os.open(os.environ["UPGRADE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event.n}\n".encode())
    finally:
        os.close(fd)


async def seed(bus: rb.Bus[Any]) -> dict[str, int]:
    store = bus.store
    ids: dict[str, int] = {}

    async def dispatch(n: int, **options: Any) -> int:
        result = await bus.dispatch(State(n), **options)
        return result.jobs[0].id

    ids["scheduled"] = await dispatch(1, delay=3600)
    ids["available"] = await dispatch(2)
    for state in ("running", "retryable", "completed", "cancelled", "discarded"):
        ids[state] = await dispatch(10 + len(ids))
    await store.heartbeat(HeartbeatParams(node="old-seed", ttl=3600))
    claimed = await store.fetch(FetchParams("states", 10, "old-seed", 2, True))
    by_id = {c.id: c for c in claimed}
    ends = {"retryable": "retry", "completed": "completed", "cancelled": "cancel",
            "discarded": "discard"}  # fmt: skip
    done = []
    for state, kind in ends.items():
        job = by_id[ids[state]]
        done.append(Completion(job.id, job.attempt, kind, None, 3600.0))  # type: ignore[arg-type]
    await store.complete_many(done)
    # "available" was claimed too: put it back, uncharged ("running" stays claimed).
    back = by_id[ids["available"]]
    await store.complete_many([Completion(back.id, back.attempt, "return", None, 0.0)])
    return ids


async def main() -> None:
    mode, dsn, schema = sys.argv[1:4]
    bus = make_bus(dsn, schema)
    async with bus:
        if mode == "seed":
            ids = await seed(bus)
            print(json.dumps({"ids": ids, "relaybus": rb.__file__}), flush=True)
            return
        worker = bus.worker(
            queues={"live": 4}, poll_interval=0.05, heartbeat_interval=0.2, node_ttl=2.0,
            rescue_interval=0.5, grace=5, handle_signals=True,
        )  # fmt: skip

        async def keep_dispatching() -> None:
            n = 0
            while True:
                n += 1
                await bus.dispatch(Tick(n))
                await asyncio.sleep(0.01)

        feeder = asyncio.create_task(keep_dispatching())
        try:
            await worker.run()
        finally:
            feeder.cancel()


if __name__ == "__main__":
    asyncio.run(main())
