"""Group B: MemoryStore and SQLiteStore (a file database in a temp dir, WAL).

Per store, in one process, a fresh store (and file) per round (plus a bare baseline, see
baselines.py: an asyncio pool for MemoryStore processing, raw sqlite3 executemany for SQLiteStore
batch enqueue, each reported as a ratio of per-round figures):

- enqueue one at a time: ``await bus.dispatch(e)`` with one job handler registered;
- enqueue in batches: ``await bus.dispatch_many(batch)`` with batches of 1,000;
- processing: N pre-enqueued no-op jobs, one worker with concurrency 10, timed from worker start
  until the store has applied (for SQLite: committed) the N-th completion. The benchmark counts
  the completions returned by the store's ``complete_many``/``fetch`` rather than polling
  ``bus.jobs.stats()``, which scans every job on MemoryStore and would tax the run it measures;
  ``stats()`` cross-checks the count afterwards, untimed.

Each figure comes with the process's CPU time per job (user + system, all threads: SQLite runs
on its own connection thread). One extra, untimed round per store runs under cProfile to name
the functions that dominate the cost per job.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import relaybus as rb

from . import baselines
from ._common import (
    PROFILE_HEADERS,
    PROFILE_NOTE,
    GroupResult,
    Stat,
    Table,
    cpu_self,
    fmt_stat,
    log,
    machine_facts,
    now,
    package_version,
    profile_rows,
    thread_cpu,
)


@dataclass(frozen=True)
class Tick(rb.Event, name="bench.tick"):
    n: int


StoreFactory = Callable[[Path], Any]


def _memory(_: Path) -> Any:
    return rb.MemoryStore()


def _sqlite(tmp: Path) -> Any:
    return rb.SQLiteStore(tmp / "bench.db")


STORES: dict[str, StoreFactory] = {"memory": _memory, "sqlite": _sqlite}


class _Counter:
    def __init__(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = asyncio.Event()
        self.first: float | None = None

    async def handler(self, event: Tick, ctx: rb.Context[None]) -> None:
        if self.first is None:
            self.first = now()
        self.count += 1
        if self.count >= self.target:
            self.done.set()


def _bus(store: Any, counter: _Counter | None = None) -> rb.Bus[None]:
    bus: rb.Bus[None] = rb.Bus(store=store)
    if counter is not None:
        bus.job(Tick, name="bench.noop")(counter.handler)
    else:

        async def noop(event: Tick, ctx: rb.Context[None]) -> None:
            return None

        bus.job(Tick, name="bench.noop")(noop)
    return bus


async def _completed(bus: rb.Bus[None]) -> int:
    stats = await bus.jobs.stats()
    return sum(states.get("completed", 0) for states in stats.values())


@dataclass
class Figure:
    rate: float  # jobs per second
    cpu_us: float  # process CPU per job
    threads: dict[str, float] | None = None  # CPU µs per job by thread (processing only)


async def enqueue_single(factory: StoreFactory, tmp: Path, n: int) -> Figure:
    async with _bus(factory(tmp)) as bus:
        for i in range(50):  # warm up: plan cache, prepared statements
            await bus.dispatch(Tick(i))
        events = [Tick(i) for i in range(n)]
        gc.collect()
        c0, t0 = cpu_self(), now()
        for event in events:
            await bus.dispatch(event)
        elapsed, cpu = now() - t0, cpu_self() - c0
    return Figure(n / elapsed, cpu / n * 1e6)


async def enqueue_batch(factory: StoreFactory, tmp: Path, n: int, batch: int,
                        profile: _Profiles | None = None) -> Figure:
    async with _bus(factory(tmp)) as bus:
        await bus.dispatch_many([Tick(i) for i in range(10)])
        batches = [[Tick(i) for i in range(j, j + batch)] for j in range(0, n, batch)]
        gc.collect()
        if profile is not None:
            profile.enable()
        c0, t0 = cpu_self(), now()
        for chunk in batches:
            await bus.dispatch_many(chunk)
        elapsed, cpu = now() - t0, cpu_self() - c0
        if profile is not None:
            profile.disable()
    return Figure(n / elapsed, cpu / n * 1e6)


class _StoreCompletions:
    """Counts the completions a store has applied: wraps the store's two Driver operations
    that write them (``complete_many``, and ``fetch``, which carries finished runs along with
    the next claim). The event is set once ``target`` completions returned from the store,
    i.e. are visible in it (committed, for SQLite), without polling the store meanwhile."""

    def __init__(self, store: Any, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = asyncio.Event()
        complete_many, fetch = store.complete_many, store.fetch

        async def counted_complete_many(completions: Any, *args: Any, **kwargs: Any) -> Any:
            result = await complete_many(completions, *args, **kwargs)
            self._add(completions)
            return result

        async def counted_fetch(params: Any, *args: Any, **kwargs: Any) -> Any:
            result = await fetch(params, *args, **kwargs)
            self._add(getattr(params, "complete", ()))
            return result

        store.complete_many = counted_complete_many
        store.fetch = counted_fetch

    def _add(self, completions: Any) -> None:
        self.count += sum(1 for c in completions if c.kind == "completed")
        if self.count >= self.target:
            self.done.set()


async def process(
    factory: StoreFactory, tmp: Path, n: int, concurrency: int, profile: _Profiles | None
) -> Figure:
    counter = _Counter(n)
    store = factory(tmp)
    visible = _StoreCompletions(store, n)
    async with _bus(store, counter) as bus:
        for j in range(0, n, 1000):
            await bus.dispatch_many([Tick(i) for i in range(j, min(n, j + 1000))])
        gc.collect()
        if profile is not None:
            profile.enable()
        th0, c0, t0 = thread_cpu(), cpu_self(), now()
        async with bus.worker(queues={"default": concurrency}, poll_interval=1.0):
            await visible.done.wait()
            elapsed, cpu, th1 = now() - t0, cpu_self() - c0, thread_cpu()
            if profile is not None:
                profile.disable()
            done = await _completed(bus)  # untimed cross-check through the admin API
            if done < n:
                raise RuntimeError(f"the store shows {done} of {n} jobs completed")
    threads = {
        ("event loop" if name == "MainThread" else "SQLite connection thread"
         if name.startswith("relaybus-sqlite") else "other threads"): 0.0
        for name in th1
    }
    for name, value in th1.items():
        key = ("event loop" if name == "MainThread" else "SQLite connection thread"
               if name.startswith("relaybus-sqlite") else "other threads")
        threads[key] += (value - th0.get(name, 0.0)) / n * 1e6
    return Figure(n / elapsed, cpu / n * 1e6, threads)


class _ThreadProfiles:
    """Profile the work SQLiteStore does on its connection thread (cProfile covers only the
    thread that enables it): while ``active``, each function the store sends to the thread
    (its private ``ConnectionThread.call``) runs under one CPU-time profiler."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile(time.thread_time)
        self.active = False
        self.used = False
        self._undo: Callable[[], None] | None = None

    def __enter__(self) -> _ThreadProfiles:
        try:
            from relaybus.stores.sqlite import _thread
        except ImportError:
            return self
        cls: Any = _thread.ConnectionThread
        original = cls.call
        owner = self

        async def call(thread_self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            if not owner.active:
                return await original(thread_self, fn, *args, **kwargs)

            def profiled(conn: Any) -> Any:
                owner.used = True
                owner.profile.enable()
                try:
                    return fn(conn)
                finally:
                    owner.profile.disable()

            return await original(thread_self, profiled, *args, **kwargs)

        cls.call = call

        def undo() -> None:
            cls.call = original

        self._undo = undo
        return self

    def __exit__(self, *exc: object) -> None:
        if self._undo is not None:
            self._undo()


class _Profiles:
    """A CPU-time profile of the event loop and one of the SQLite thread, for one operation."""

    def __init__(self, threads: _ThreadProfiles) -> None:
        self.loop = cProfile.Profile(time.thread_time)
        self.threads = threads

    def enable(self) -> None:
        self.threads.active = True
        self.loop.enable()

    def disable(self) -> None:
        self.loop.disable()
        self.threads.active = False

    def rows(self, jobs: int) -> dict[str, list[list[str]]]:
        out = {"event loop": profile_rows(self.loop, jobs)}
        if self.threads.used:
            out["SQLite connection thread"] = profile_rows(self.threads.profile, jobs)
        return out


def _run_store(name: str, factory: StoreFactory, *, quick: bool) -> dict[str, Any]:
    rounds = 2 if quick else 5
    n_single = (2_000 if quick else 10_000) if name == "memory" else (1_000 if quick else 3_000)
    n_batch = 10_000 if quick else 20_000
    n_proc = 5_000 if quick else 20_000
    n_bare = n_batch if name == "sqlite" else 100_000
    figures: dict[str, list[Figure]] = {"single": [], "batch": [], "process": [], "bare": []}
    for r in range(rounds):
        log(f"[stores] {name}: round {r + 1}/{rounds}")
        for kind in ("single", "batch", "process", "bare"):
            with tempfile.TemporaryDirectory(prefix="relaybus-bench-") as tmp:
                path = Path(tmp)
                if kind == "single":
                    fig = asyncio.run(enqueue_single(factory, path, n_single))
                elif kind == "batch":
                    fig = asyncio.run(enqueue_batch(factory, path, n_batch, 1000))
                elif kind == "process":
                    fig = asyncio.run(process(factory, path, n_proc, 10, None))
                elif name == "sqlite":
                    fig = Figure(*asyncio.run(baselines.bare_sqlite_batch(path, n_bare, 1000)))
                else:
                    fig = Figure(*asyncio.run(baselines.bare_pool(n_bare, 10)))
            figures[kind].append(fig)
    # the store's figure over its bare baseline, round by round (same rounds, same machine load)
    bounded = "batch" if name == "sqlite" else "process"
    ratios = [f.rate / b.rate for f, b in zip(figures[bounded], figures["bare"], strict=True)]
    log(f"[stores] {name}: profiled runs (processing, batch enqueue)")
    profiles: dict[str, dict[str, list[list[str]]]] = {}
    with _ThreadProfiles() as thread_profiles:
        with tempfile.TemporaryDirectory(prefix="relaybus-bench-") as tmp:
            prof = _Profiles(thread_profiles)
            asyncio.run(process(factory, Path(tmp), n_proc, 10, prof))
            profiles["processing"] = prof.rows(n_proc)
        with tempfile.TemporaryDirectory(prefix="relaybus-bench-") as tmp:
            thread_profiles.profile = cProfile.Profile(time.thread_time)
            thread_profiles.used = False
            prof = _Profiles(thread_profiles)
            asyncio.run(enqueue_batch(factory, Path(tmp), n_batch, 1000, prof))
            profiles["batch enqueue (`dispatch_many`)"] = prof.rows(n_batch)
    threads: dict[str, list[float]] = {}
    for fig in figures["process"]:
        for key, value in (fig.threads or {}).items():
            threads.setdefault(key, []).append(value)
    return {
        "store": name,
        "rounds": rounds,
        "jobs": {"single": n_single, "batch": n_batch, "process": n_proc, "bare": n_bare},
        "bare_ratio": Stat.of(ratios).to_json(),
        "rate": {k: Stat.of(f.rate for f in v).to_json() for k, v in figures.items()},
        "cpu_us": {k: Stat.of(f.cpu_us for f in v).to_json() for k, v in figures.items()},
        "profiles": profiles,
        "threads_cpu_us": {k: Stat.of(v).to_json() for k, v in threads.items()},
    }


def run(*, quick: bool) -> GroupResult:
    results = [_run_store(name, factory, quick=quick) for name, factory in STORES.items()]
    rows: list[list[str]] = []
    labels = {
        "single": "enqueue one at a time (`dispatch`)",
        "batch": "enqueue in batches of 1,000 (`dispatch_many`)",
        "process": "process no-op jobs, 1 worker, concurrency 10",
    }
    bare_labels = {
        "memory": "bare baseline: `asyncio.Queue` of the same job records, 10 consumer tasks "
                  "awaiting the same no-op handler",
        "sqlite": "bare baseline: raw `sqlite3` `executemany` of the same rows into the same "
                  "table, 1,000 per transaction",
    }
    by_store: dict[str, dict[str, Stat]] = {}
    for res in results:
        rate = {k: Stat.from_json(v) for k, v in res["rate"].items()}
        cpu = {k: Stat.from_json(v) for k, v in res["cpu_us"].items()}
        by_store[res["store"]] = rate
        for kind in ("single", "batch", "process", "bare"):
            rows.append(
                [
                    res["store"],
                    labels[kind] if kind != "bare" else bare_labels[res["store"]],
                    f"{res['jobs'][kind]:,}",
                    fmt_stat(rate[kind]),
                    fmt_stat(cpu[kind], 1),
                ]
            )
    targets: list[tuple[str, str, bool | None]] = []
    mem_proc = by_store["memory"]["process"].median
    sq_batch = by_store["sqlite"]["batch"].median
    sq_proc = by_store["sqlite"]["process"].median
    targets.append(("MemoryStore processes >= 50,000 no-op jobs/s end to end",
                    f"{mem_proc:,.0f} jobs/s", mem_proc >= 50_000))
    targets.append(("SQLiteStore batch enqueue >= 50,000 jobs/s (file, WAL)",
                    f"{sq_batch:,.0f} jobs/s", sq_batch >= 50_000))
    targets.append(("SQLiteStore processing >= 5,000 jobs/s (file, WAL)",
                    f"{sq_proc:,.0f} jobs/s", sq_proc >= 5_000))
    ratio = {res["store"]: Stat.from_json(res["bare_ratio"]).median for res in results}
    targets.append(("MemoryStore processing >= 0.1x the bare asyncio pool",
                    f"{ratio['memory']:.3f}x (median of per-round ratios)",
                    ratio["memory"] >= 0.1))
    targets.append(("SQLiteStore batch enqueue >= 0.7x raw sqlite3 executemany",
                    f"{ratio['sqlite']:.2f}x (median of per-round ratios)",
                    ratio["sqlite"] >= 0.7))

    tables = [
        Table(
            title="MemoryStore and SQLiteStore",
            headers=["store", "figure", "jobs per round", "jobs/s, median (±spread)",
                     "process CPU µs per job"],
            rows=rows,
            notes=[
                f"{results[0]['rounds']} rounds, a fresh store (and SQLite file) each. SQLite: "
                f"SQLite {sqlite3.sqlite_version}, a file in a temp dir, `journal_mode=WAL`, "
                "`synchronous=NORMAL` (the store's settings). Processing counts from worker "
                "start until the store has applied (SQLite: committed) the last completion, "
                "counted as the store's `complete_many`/`fetch` return (no polling during the "
                "run); `bus.jobs.stats()` cross-checks it afterwards.",
            ],
        )
    ]
    thread_rows = [
        [res["store"], name, fmt_stat(Stat.from_json(value), 1)]
        for res in results
        for name, value in sorted(res["threads_cpu_us"].items())
    ]
    tables.append(
        Table(
            title="Processing: CPU per job by thread",
            headers=["store", "thread", "CPU µs per job, median (±spread)"],
            rows=thread_rows,
            notes=["From /proc/self/task over the processing window. SQLiteStore runs every "
                   "Driver call on one dedicated connection thread; both threads share the GIL."],
        )
    )
    for res in results:
        for operation, by_thread in res["profiles"].items():
            for thread, rows in by_thread.items():
                tables.append(
                    Table(
                        title=f"Profile: {res['store']} {operation}, {thread} "
                              "(one untimed run)",
                        headers=PROFILE_HEADERS,
                        rows=rows,
                        notes=[PROFILE_NOTE] if thread == "event loop" else [
                            "The functions the store ran on its connection thread during the "
                            "same run (profiled through its private `ConnectionThread.call`)."],
                    )
                )
    facts = machine_facts()
    facts["sqlite"] = sqlite3.sqlite_version
    facts["relaybus"] = package_version("relaybus")
    return GroupResult(
        name="stores",
        title="B. MemoryStore and SQLiteStore",
        intro=[],
        tables=tables,
        facts=facts,
        raw={"results": results},
        targets=targets,
    )
