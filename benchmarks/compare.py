"""``python -m benchmarks.compare --base REV [--head REV] [--rounds N] [--only NAME[,NAME]]``:
compare the speed of relaybus at two revisions, relaybus alone (no peers).

The two revisions are checked out as git worktrees in a temp dir (the head defaults to the
working tree of this checkout itself, uncommitted changes included). Every round runs each
measurement once per revision, the two runs back to back, base then head (head then base in
every other round, to cancel drift). Each run is its own subprocess, started with
``cwd`` = this checkout and ``PYTHONPATH=<revision>/src:<this checkout>``: the measurement code
is always this checkout's ``benchmarks`` package and only the imported ``relaybus`` differs
(each subprocess checks ``relaybus.__file__`` and aborts the comparison if it is not the
revision's). The PostgreSQL measurements start client processes of their own
(``benchmarks.pg.client``); those get the same ``PYTHONPATH``, checked the same way.

Per figure and round the head/base ratio is oriented so that **> 1 means the head is better**
(faster, cheaper): head/base for rates, base/head for times. The table gives the base and head
medians over the rounds, the median of the per-round ratios and their range, and the verdict:
``WORSE >10%`` when the head's median per-round figure is more than 10% worse in the figure's
own unit (a rate below 0.90x the base's, a time above 1.10x), ``ok`` otherwise.

``--profile`` runs each chosen measurement once per revision under cProfile (CPU-time timer)
instead, and prints the functions with the most own CPU per job for both revisions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from ._common import (
    PROFILE_HEADERS,
    ROOT,
    load_average,
    log,
    now,
    profile_rows,
)

RESULT_MARK = "COMPARE-RESULT "
CHILD_TIMEOUT = 900.0
WORSE_LIMIT = 0.10  # a figure may be at most 10% worse


# -- what is measured ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    higher_better: bool
    digits: int = 0


@dataclasses.dataclass(frozen=True)
class Sizes:
    n: int  # calls or jobs per repetition (latency: seconds at 200 jobs/s)
    reps: int  # repetitions inside the subprocess; its figure is their median


@dataclasses.dataclass(frozen=True)
class Measurement:
    name: str
    figures: tuple[Figure, ...]
    full: Sizes
    quick: Sizes
    postgres: bool = False


MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("inline-1", (Figure("inline-1", "inline dispatch, 1 handler", "ns/call",
                                    False),), Sizes(50_000, 7), Sizes(10_000, 3)),
    Measurement("inline-10", (Figure("inline-10", "inline dispatch, 10 handlers", "ns/call",
                                     False),), Sizes(10_000, 7), Sizes(2_000, 3)),
    Measurement("memory-process", (Figure("memory-process", "MemoryStore processing",
                                          "jobs/s", True),), Sizes(20_000, 3), Sizes(5_000, 1)),
    Measurement("memory-batch", (Figure("memory-batch", "MemoryStore batch enqueue", "jobs/s",
                                        True),), Sizes(20_000, 5), Sizes(10_000, 2)),
    Measurement("sqlite-batch", (Figure("sqlite-batch", "SQLite batch enqueue", "jobs/s",
                                        True),), Sizes(20_000, 3), Sizes(10_000, 1)),
    Measurement("sqlite-process", (Figure("sqlite-process", "SQLite processing", "jobs/s",
                                          True),), Sizes(20_000, 1), Sizes(5_000, 1)),
    Measurement("pg-process", (Figure("pg-process", "PostgreSQL processing, 1 worker",
                                      "jobs/s", True),), Sizes(10_000, 1), Sizes(2_000, 1),
                postgres=True),
    Measurement("pg-batch", (Figure("pg-batch", "PostgreSQL batch enqueue", "jobs/s", True),),
                Sizes(20_000, 3), Sizes(5_000, 1), postgres=True),
    Measurement("pg-single", (Figure("pg-single", "PostgreSQL single enqueue", "jobs/s",
                                     True),), Sizes(1_500, 2), Sizes(300, 1), postgres=True),
    Measurement("pg-latency", (Figure("pg-latency-p50", "PostgreSQL latency p50", "ms", False,
                                      2),
                               Figure("pg-latency-p99", "PostgreSQL latency p99", "ms", False,
                                      2)),
                Sizes(15, 1), Sizes(2, 1), postgres=True),  # 3,000 samples: a p99 of 30 values
)
BY_NAME = {m.name: m for m in MEASUREMENTS}
PG_PROCESS_DEADLINE = 30.0  # seconds; a slower run is timed over this window (marked partial)
LATENCY_RATE = 200.0  # jobs/s, as in postgres_peers


# -- the subprocess: one measurement of the relaybus on PYTHONPATH ------------------------------


class ChildError(RuntimeError):
    pass


def _check_import(expect_src: Path) -> str:
    """The ``relaybus`` imported must be the revision's, and ``benchmarks`` this checkout's."""
    import benchmarks
    import relaybus

    got = Path(relaybus.__file__ or "").resolve()
    if not got.is_relative_to(expect_src.resolve()):
        raise ChildError(f"relaybus imported from {got}, expected under {expect_src}")
    bench = Path(benchmarks.__file__ or "").resolve()
    if not bench.is_relative_to(ROOT / "benchmarks"):
        raise ChildError(f"benchmarks imported from {bench}, expected {ROOT / 'benchmarks'}")
    return str(got)


def _median_of(reps: int, one: Callable[[], float]) -> float:
    return statistics.median(one() for _ in range(reps))


def _profiler(path: str) -> cProfile.Profile | None:
    return cProfile.Profile(time.thread_time) if path else None


def _inline(handlers: int, size: Sizes, profile_path: str) -> dict[str, float]:
    from . import inline

    async def go() -> float:
        runners, close = await inline._build(handlers)
        run = runners["relaybus"]
        try:
            await run(max(100, size.n // 20))  # warm up, as inline.py does
            prof = _profiler(profile_path)
            values = []
            for _ in range(size.reps):
                gc.collect()
                if prof is not None:
                    prof.enable()
                t0 = now()
                await run(size.n)
                values.append((now() - t0) / size.n * 1e9)
                if prof is not None:
                    prof.disable()
            if prof is not None:
                prof.dump_stats(profile_path)
            return statistics.median(values)
        finally:
            await close()

    return {f"inline-{handlers}": asyncio.run(go())}


@contextlib.contextmanager
def _sqlite_thread_alias() -> Iterator[None]:
    """stores._ThreadProfiles patches ``relaybus.stores.sqlite._thread``; the restructure moved
    it to ``.thread``. Profiling only: alias the new module under the old name."""
    import importlib

    pkg = importlib.import_module("relaybus.stores.sqlite")
    if hasattr(pkg, "_thread"):
        yield
        return
    try:
        mod = importlib.import_module("relaybus.stores.sqlite.thread")
    except ImportError:
        yield
        return
    sys.modules["relaybus.stores.sqlite._thread"] = mod
    pkg._thread = mod  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del sys.modules["relaybus.stores.sqlite._thread"]
        del pkg._thread


def _store(name: str, size: Sizes, profile_path: str) -> dict[str, float]:
    from . import stores

    store, kind = name.split("-")
    factory = stores.STORES[store]

    def one(profile: Any = None) -> float:
        with tempfile.TemporaryDirectory(prefix="relaybus-compare-") as tmp:
            if kind == "batch":
                fig = asyncio.run(stores.enqueue_batch(factory, Path(tmp), size.n, 1000, profile))
            else:
                fig = asyncio.run(stores.process(factory, Path(tmp), size.n, 10, profile))
        return fig.rate

    if not profile_path:
        return {name: _median_of(size.reps, one)}
    with _sqlite_thread_alias(), stores._ThreadProfiles() as threads:
        prof = stores._Profiles(threads)
        value = one(prof)
    prof.loop.dump_stats(profile_path)
    if threads.used:
        threads.profile.dump_stats(profile_path + ".thread")
    return {name: value}


@contextlib.contextmanager
def _clients_import_revision() -> Iterator[None]:
    """postgres_peers starts its client processes with ``PYTHONPATH`` = the checkout only, so
    they would import the editable install's relaybus. While measuring, those processes get
    this process's ``PYTHONPATH`` (the revision's src first) instead; checked once here."""
    pythonpath = os.environ.get("PYTHONPATH", "")
    expect_src = Path(pythonpath.split(os.pathsep)[0])
    probe = subprocess.run(
        [sys.executable, "-c", "import relaybus; print(relaybus.__file__)"],
        cwd=str(ROOT), env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True, text=True, check=True,
    )
    got = Path(probe.stdout.strip()).resolve()
    if not got.is_relative_to(expect_src.resolve()):
        raise ChildError(f"client processes would import relaybus from {got}, "
                         f"expected under {expect_src}")
    original = asyncio.create_subprocess_exec

    async def create_subprocess_exec(program: Any, *args: Any, env: dict[str, str] | None = None,
                                     **kwargs: Any) -> asyncio.subprocess.Process:
        if env is not None and "benchmarks.pg.client" in args:
            if program != sys.executable:
                raise ChildError(f"unexpected client interpreter {program}")
            env = {**env, "PYTHONPATH": pythonpath}
        return await original(program, *args, env=env, **kwargs)

    module = cast(Any, asyncio)
    module.create_subprocess_exec = create_subprocess_exec
    try:
        yield
    finally:
        module.create_subprocess_exec = original


async def _pg(name: str, size: Sizes, db: str, template: str,
              profile_path: str) -> dict[str, float]:
    from . import postgres_peers as pp

    server = pp.Server()
    await server.ensure()
    bench = pp.Bench(server, "relaybus", sys.executable)
    bench.db, bench.template = db, template
    profile = Path(profile_path) if profile_path else None
    try:
        if name == "pg-setup":
            await bench.prepare_template()
            return {}
        if name == "pg-process":
            await pp._retry("processing", lambda: bench.process(
                1, size.n, "process1", PG_PROCESS_DEADLINE, profile=profile))
            if "process1" in bench.partial:
                log(f"[compare] pg-process: not done within {PG_PROCESS_DEADLINE:.0f} s, "
                    "rate over that window")
            return {name: bench.samples.values["process1.rate"][0]}
        if name in ("pg-batch", "pg-single"):
            mode, record = (("enqueue-batch", "batch") if name == "pg-batch"
                            else ("enqueue-single", "single"))

            async def enqueue() -> None:
                await bench.fresh()
                await bench.enqueue(mode, size.n, record, profile=profile)

            for _ in range(1 if profile else size.reps):
                await pp._retry(name, enqueue)
            return {name: statistics.median(bench.samples.values[f"{record}.rate"])}
        if name == "pg-latency":
            await pp._retry("latency", lambda: bench.latency(float(size.n), LATENCY_RATE))
            values = bench.samples.values
            return {"pg-latency-p50": values["latency.p50"][0],
                    "pg-latency-p99": values["latency.p99"][0]}
        raise ChildError(f"unknown PostgreSQL measurement {name!r}")
    finally:
        with contextlib.suppress(Exception):
            await server.drop(db)
        await server.close()


def child(args: argparse.Namespace) -> int:
    expect_src = Path(args.expect_src)
    try:
        imported = _check_import(expect_src)
        name = args.child
        quick = bool(args.quick)
        measurement = BY_NAME.get(name)
        size = (measurement.quick if quick else measurement.full) if measurement else Sizes(0, 0)
        values: dict[str, float]
        if name.startswith("inline-"):
            values = _inline(int(name.split("-")[1]), size, args.profile_to)
        elif name.startswith(("memory-", "sqlite-")):
            values = _store(name, size, args.profile_to)
        elif name.startswith("pg-"):
            with _clients_import_revision():
                values = asyncio.run(_pg(name, size, args.db, args.template, args.profile_to))
        else:
            raise ChildError(f"unknown measurement {name!r}")
    except ChildError as exc:
        log(f"[compare] ABORT: {exc}")
        return 3
    print(RESULT_MARK + json.dumps({"relaybus": imported, "values": values}), flush=True)
    return 0


# -- the parent: worktrees, rounds, the table ---------------------------------------------------


@dataclasses.dataclass
class Revision:
    role: str  # "base" or "head"
    spec: str  # what was asked for
    label: str  # what is shown
    src: Path
    worktree: Path | None = None


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def _make_revision(role: str, spec: str | None, tmp: Path) -> Revision:
    if spec is None:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "src")
        label = f"working tree ({head}{' + uncommitted src/ changes' if dirty else ''})"
        return Revision(role, "working tree", label, ROOT / "src")
    sha = _git("rev-parse", "--verify", f"{spec}^{{commit}}")
    path = tmp / role
    _git("worktree", "add", "--detach", str(path), sha)
    return Revision(role, spec, f"{spec} ({sha[:10]})", path / "src", path)


def _remove_worktree(rev: Revision) -> None:
    if rev.worktree is None:
        return
    try:
        _git("worktree", "remove", "--force", str(rev.worktree))
    except subprocess.CalledProcessError as exc:
        log(f"[compare] could not remove worktree {rev.worktree}: {exc.stderr.strip()}")


class Abort(SystemExit):
    pass


def _run_child(rev: Revision, name: str, *, quick: bool, db: str = "", template: str = "",
               profile: str = "") -> dict[str, float] | None:
    cmd = [sys.executable, "-m", "benchmarks.compare", "--child", name,
           "--expect-src", str(rev.src)]
    if quick:
        cmd.append("--quick")
    if db:
        cmd += ["--db", db, "--template", template]
    if profile:
        cmd += ["--profile-to", profile]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(rev.src), str(ROOT)])
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        log(f"[compare] {rev.role} {name}: timed out after {CHILD_TIMEOUT:.0f} s")
        return None
    if proc.returncode == 3:
        raise Abort(f"{rev.role} {name}: {proc.stderr.strip()[-2000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            data = json.loads(line[len(RESULT_MARK):])
            if not Path(data["relaybus"]).is_relative_to(rev.src.resolve()):
                raise Abort(f"{rev.role} {name}: relaybus imported from {data['relaybus']}")
            return {k: float(v) for k, v in data["values"].items()}
    log(f"[compare] {rev.role} {name}: failed (exit {proc.returncode}):\n"
        + proc.stderr.strip()[-3000:])
    return None


def _oriented(fig: Figure, base: float, head: float) -> float:
    return head / base if fig.higher_better else base / head


def _limit(fig: Figure) -> float:
    """The lowest oriented ratio that is still ok: 0.90 for rates, 1/1.10 for times."""
    return 1.0 - WORSE_LIMIT if fig.higher_better else 1.0 / (1.0 + WORSE_LIMIT)


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _rows(results: dict[str, dict[str, list[float | None]]],
          figures: Sequence[Figure]) -> tuple[list[list[str]], list[str]]:
    rows: list[list[str]] = []
    worse: list[str] = []
    for fig in figures:
        base = results["base"].get(fig.key, [])
        head = results["head"].get(fig.key, [])
        pairs = [(b, h) for b, h in zip(base, head, strict=True) if b and h]
        if not pairs:
            rows.append([fig.label, fig.unit, "n/a", "n/a", "n/a", "n/a", "0", "n/a"])
            continue
        ratios = sorted(_oriented(fig, b, h) for b, h in pairs)
        ratio = statistics.median(ratios)
        verdict = "ok" if ratio >= _limit(fig) else "WORSE >10%"
        if verdict != "ok":
            worse.append(fig.key)
        rows.append([
            fig.label,
            fig.unit + (" (higher = better)" if fig.higher_better else " (lower = better)"),
            _fmt(statistics.median(b for b, _ in pairs), fig.digits),
            _fmt(statistics.median(h for _, h in pairs), fig.digits),
            f"{ratio:.3f}",
            f"{ratios[0]:.3f} .. {ratios[-1]:.3f}",
            str(len(pairs)),
            verdict,
        ])
    return rows, worse


HEADERS = ["figure", "unit", "base median", "head median",
           "median head/base ratio (>1 = head better)", "ratio min .. max", "rounds", "verdict"]


def _text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(HEADERS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _select(only: str) -> list[Measurement]:
    if not only:
        return list(MEASUREMENTS)
    chosen: list[Measurement] = []
    for word in (w.strip() for w in only.split(",")):
        if not word:
            continue
        # a measurement, a figure key (pg-latency-p99) or a prefix (pg, sqlite, inline)
        found = [m for m in MEASUREMENTS
                 if m.name == word or word in (f.key for f in m.figures)
                 or m.name.startswith(word + "-")]
        if not found:
            raise SystemExit(f"--only: unknown measurement {word!r}; choose from "
                             + ", ".join(m.name for m in MEASUREMENTS))
        chosen += [m for m in found if m not in chosen]
    return [m for m in MEASUREMENTS if m in chosen]


async def _drop_databases(names: Sequence[str]) -> None:
    from . import postgres_peers as pp

    server = pp.Server()
    try:
        await server.ensure()
        for name in names:
            await server.drop(name)
    finally:
        await server.close()


def _profile_report(revs: Sequence[Revision], chosen: Sequence[Measurement], quick: bool,
                    tmp: Path, pg: Callable[[Revision], tuple[str, str]]) -> None:
    for m in chosen:
        size = m.quick if quick else m.full
        jobs = size.n * size.reps if m.name.startswith("inline-") else size.n
        if m.name == "pg-latency":
            jobs = int(size.n * LATENCY_RATE)
        for rev in revs:
            path = tmp / f"{rev.role}-{m.name}.prof"
            db, template = pg(rev) if m.postgres else ("", "")
            log(f"[compare] profiling {m.name} at {rev.role}")
            if _run_child(rev, m.name, quick=quick, db=db, template=template,
                          profile=str(path)) is None:
                continue
            for suffix, what in (("", "event loop / client"), (".thread", "SQLite thread")):
                prof = Path(str(path) + suffix)
                if prof.exists() and prof.stat().st_size:
                    print(f"\n### Profile: {m.name} at {rev.role} ({rev.label}), {what}, "
                          f"per job/call ({jobs:,})\n")
                    print(_md_table_generic(PROFILE_HEADERS, profile_rows(str(prof), jobs, 25)))


def _md_table_generic(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="the revision to compare against (e.g. e650812)")
    parser.add_argument("--head", default=None,
                        help="the revision compared (default: this working tree)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds (default 5, --quick 3)")
    parser.add_argument("--only", default="",
                        help="comma-separated measurements or prefixes: "
                             + ", ".join(m.name for m in MEASUREMENTS))
    parser.add_argument("--quick", action="store_true", help="fewer jobs per measurement")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing: one cProfile run per revision and measurement "
                             "(not pg-latency), top functions per job")
    parser.add_argument("--json", default="", help="also write the per-round figures here")
    # the subprocess side (internal)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--expect-src", default="", help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--template", default="", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return child(args)
    if not args.base:
        parser.error("--base is required")
    rounds = args.rounds or (3 if args.quick else 5)
    chosen = _select(args.only)
    figures = [f for m in chosen for f in m.figures]
    uses_pg = any(m.postgres for m in chosen)
    tag = f"relaybus_compare_{os.getpid()}"
    databases: list[str] = []
    revs: list[Revision] = []
    load_before = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="relaybus-compare-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            base = _make_revision("base", args.base, tmp)
            revs.append(base)
            head = _make_revision("head", args.head, tmp)
            revs.append(head)
            log(f"[compare] base: {base.label} at {base.src}")
            log(f"[compare] head: {head.label} at {head.src}")

            def pg_names(rev: Revision) -> tuple[str, str]:
                return f"{tag}_{rev.role}", f"{tag}_{rev.role}_tpl"

            if uses_pg:
                for rev in revs:  # each revision's own schema, installed by its own migrate
                    db, template = pg_names(rev)
                    databases += [db, template]
                    log(f"[compare] {rev.role}: installing the schema into {template}")
                    if _run_child(rev, "pg-setup", quick=args.quick, db=db,
                                  template=template) is None:
                        raise SystemExit(f"{rev.role}: could not install the PostgreSQL schema")
            if args.profile:
                _profile_report(revs, chosen, args.quick, tmp, pg_names)
                return 0
            results: dict[str, dict[str, list[float | None]]] = {
                "base": {f.key: [] for f in figures}, "head": {f.key: [] for f in figures}}
            for r in range(rounds):
                order = revs if r % 2 == 0 else revs[::-1]
                log(f"[compare] round {r + 1}/{rounds} ({' then '.join(x.role for x in order)}"
                    f", {time.monotonic() - started:.0f} s, load {load_average()})")
                for m in chosen:
                    db_names = {rev.role: pg_names(rev) if m.postgres else ("", "")
                                for rev in revs}
                    got: dict[str, dict[str, float] | None] = {}
                    for rev in order:
                        db, template = db_names[rev.role]
                        got[rev.role] = _run_child(rev, m.name, quick=args.quick, db=db,
                                                   template=template)
                    for fig in m.figures:
                        for role in ("base", "head"):
                            res = got[role]
                            results[role][fig.key].append(res.get(fig.key) if res else None)
                        b, h = results["base"][fig.key][-1], results["head"][fig.key][-1]
                        ratio = f"{_oriented(fig, b, h):.3f}" if b and h else "n/a"
                        log(f"[compare]   {fig.key}: base {b if b is None else f'{b:,.2f}'}, "
                            f"head {h if h is None else f'{h:,.2f}'} {fig.unit}, "
                            f"ratio {ratio}")
        finally:
            if databases:
                with contextlib.suppress(Exception):
                    asyncio.run(_drop_databases(databases))
            for rev in revs:
                _remove_worktree(rev)
    rows, worse = _rows(results, figures)
    load_after = load_average()
    seconds = time.monotonic() - started
    if args.json:
        Path(args.json).write_text(json.dumps({
            "base": base.label, "head": head.label, "rounds": rounds, "quick": args.quick,
            "load_before": load_before, "load_after": load_after, "results": results,
        }, indent=1))
    summary = (f"base {base.label}, head {head.label}; {rounds} interleaved rounds"
               f"{' (quick)' if args.quick else ''} in {seconds:.0f} s; load average "
               f"(1, 5, 15 min) before {load_before}, after {load_after}.")
    print(summary)
    print()
    print(_text_table(rows))
    print()
    print("Markdown:")
    print()
    print(summary)
    print()
    print(_md_table(rows))
    print()
    print("Ratio: head/base for rates, base/head for times, so > 1 means the head is better; "
          "median of the per-round ratios. WORSE >10%: the head's rate is below 0.90x the "
          "base's, or its time above 1.10x.")
    if worse:
        log(f"[compare] WORSE >10%: {', '.join(worse)}")
    return 1 if worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
