"""``relaybus jobs``, ``stats``, ``nodes`` and ``queues``: thin over ``bus.jobs``,
``bus.nodes()`` and ``bus.queues``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from .._bus import Bus
from .._errors import JobNotFound, JobRunning, UniqueConflict
from .._types import JobState
from .common import CLIError
from .output import dumps, job_data, jobs_table, show, stats_table, table
from .target import opened, target_of

__all__ = ["jobs_command", "nodes_command", "queues_command", "stats_command"]


def _job_ids(values: Sequence[str]) -> list[int]:
    ids = []
    for value in values:
        try:
            ids.append(int(value))
        except ValueError:
            raise CLIError(f"job ids are integers, not {value!r}") from None
    return ids


async def jobs_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    async with opened(target) as bus:
        if args.jobs_command == "list":
            try:
                state = JobState(args.state) if args.state else None
            except ValueError:
                raise CLIError(
                    f"unknown state {args.state!r}: use one of {[s.value for s in JobState]}"
                ) from None
            jobs = await bus.jobs.list(
                state=state, queue=args.queue, handler=args.handler, limit=args.limit,
                text=args.text, after_id=args.after, before_id=args.before, order=args.order,
            )  # fmt: skip
            if args.json:
                print(dumps([job_data(j) for j in jobs]))
            elif jobs:
                print(jobs_table(jobs))
            else:
                print("no jobs match")
            return 0
        if args.jobs_command == "show":
            (job_id,) = _job_ids([args.id])
            job = await bus.jobs.get(job_id)
            if job is None:
                raise CLIError(f"no job with id {job_id}")
            print(dumps(job_data(job)) if args.json else show(job))
            return 0
        if not args.ids:
            return await _bulk(bus, args)
        actions = {"retry": bus.jobs.retry, "cancel": bus.jobs.cancel, "delete": bus.jobs.delete}
        action = actions[args.jobs_command]
        status = 0
        done: list[dict[str, Any]] = []
        for job_id in _job_ids(args.ids):
            try:
                job = await action(job_id)
            except (JobNotFound, UniqueConflict, JobRunning) as exc:
                print(f"relaybus: {exc}", file=sys.stderr)
                status = 2
                continue
            done.append(job_data(job))
            if not args.json:
                what = "deleted" if args.jobs_command == "delete" else job.state.value
                print(f"job {job.id}: {what} ({job.handler}, queue {job.queue})")
        if args.json:
            print(dumps(done))
        return status


async def stats_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    async with opened(target) as bus:
        if not args.watch:
            print(await _stats_text(bus, args.json))
            return 0
        clear = sys.stdout.isatty()
        try:
            while True:
                text = await _stats_text(bus, args.json)
                stamp = time.strftime("%H:%M:%S")
                head = f"{bus.store!r} at {stamp} (every {args.interval:g}s; Ctrl-C to quit)"
                if clear:
                    sys.stdout.write("\x1b[H\x1b[J")
                print(f"{head}\n{text}\n", flush=True)
                await asyncio.sleep(args.interval)
        except asyncio.CancelledError:
            return 0


async def _stats_text(bus: Bus[Any], as_json: bool) -> str:
    stats = await bus.jobs.stats()
    if as_json:
        return dumps(stats)
    paused = frozenset(q.name for q in await bus.queues.list() if q.paused)
    return stats_table(stats, paused)


async def _bulk(bus: Bus[Any], args: argparse.Namespace) -> int:
    """``jobs retry|cancel|delete`` by filter: bounded by ``--limit``, reporting the count."""
    if not (args.state or args.queue or args.handler):
        raise CLIError(
            f"jobs {args.jobs_command} takes job ids, or filters (--state, --queue, --handler) "
            "for a bulk action"
        )
    actions = {
        "retry": bus.jobs.retry_many,
        "cancel": bus.jobs.cancel_many,
        "delete": bus.jobs.delete_many,
    }
    state = JobState(args.state) if args.state else None
    count = await actions[args.jobs_command](
        state=state, queue=args.queue, handler=args.handler, limit=args.limit
    )
    verb = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}[args.jobs_command]
    if args.json:
        print(dumps({verb: count}))
    else:
        print(f"{count} job{'s' if count != 1 else ''} {verb} (at most {args.limit} per call)")
    return 0


async def nodes_command(args: argparse.Namespace) -> int:
    async with opened(target_of(args)) as bus:
        nodes = await bus.nodes()
    if args.json:
        data = [
            {"node": n.node, "expires_at": n.expires_at.isoformat(), "leader": n.leader,
             "running": n.running}
            for n in nodes
        ]  # fmt: skip
        print(dumps(data))
    elif nodes:
        rows = [
            [n.node, "yes" if n.leader else "", str(n.running), n.expires_at.isoformat()]
            for n in nodes
        ]
        print(table(["node", "leader", "running", "lease until"], rows))
    else:
        print("no live nodes")
    return 0


async def queues_command(args: argparse.Namespace) -> int:
    async with opened(target_of(args)) as bus:
        if args.queues_command == "pause":
            await bus.queues.pause(args.name)
            print(f"queue {args.name!r} paused: no node fetches it until `relaybus queues resume`")
            return 0
        if args.queues_command == "resume":
            await bus.queues.resume(args.name)
            print(f"queue {args.name!r} resumed")
            return 0
        queues = await bus.queues.list()
    if args.json:
        print(dumps([{"name": q.name, "paused": q.paused, "counts": q.counts} for q in queues]))
    elif queues:
        states = [s.value for s in JobState]
        rows = [
            [q.name, "paused" if q.paused else "", *(str(q.counts.get(s, 0)) for s in states)]
            for q in queues
        ]
        print(table(["queue", "", *states], rows))
    else:
        print("no queues")
    return 0
