"""Shared helpers: timing, medians and spreads, CPU sampling, machine facts, result records.

This module is imported by the benchmark worker processes too, including the Python 3.12
process that drives Oban for Python, so it uses the standard library only (and never imports
relaybus).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
DOC_PATH = ROOT / "docs" / "benchmarks.md"
CLK_TCK = os.sysconf("SC_CLK_TCK")

now = time.perf_counter
wall = time.time


# -- statistics --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Stat:
    """The median of several rounds with its spread (min..max), in the figure's unit."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        data = sorted(float(v) for v in values)
        if not data:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(data), data[0], data[-1], len(data))

    @property
    def spread_pct(self) -> float:
        """Half the min..max range, as a percentage of the median."""
        if not self.median or self.rounds < 2:
            return 0.0
        return 50.0 * (self.high - self.low) / abs(self.median)

    def to_json(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stat:
        return cls(float(data["median"]), float(data["low"]), float(data["high"]),
                   int(data["rounds"]))


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(pct / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


# -- formatting --------------------------------------------------------------------------------


def fmt_num(value: float, digits: int = 0) -> str:
    if value != value:  # NaN
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def fmt_stat(stat: Stat | None, digits: int = 0, unit: str = "") -> str:
    """``median (±spread%)``; the spread is omitted for a single round."""
    if stat is None or stat.rounds == 0 or stat.median != stat.median:
        return "n/a"
    text = fmt_num(stat.median, digits) + unit
    if stat.rounds > 1:
        text += f" (±{stat.spread_pct:.0f}%)"
    return text


def fmt_ratio(value: float | None) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:.2f}x"


# -- CPU ---------------------------------------------------------------------------------------


def cpu_self() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by thread name (from /proc)."""
    import threading

    out: dict[str, float] = {}
    for thread in threading.enumerate():
        tid = thread.native_id
        if tid is None:
            continue
        cpu = _stat_cpu(f"/proc/self/task/{tid}/stat")
        if cpu is not None:
            out[thread.name] = out.get(thread.name, 0.0) + cpu
    return out


def load_average() -> str:
    try:
        return "(" + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + ")"
    except OSError:
        return "n/a"


def _stat_cpu(path: str) -> float | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process from /proc (None if it is gone)."""
    return _stat_cpu(f"/proc/{pid}/stat")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def postgres_pids(database: str, exclude: Iterable[int] = ()) -> list[int]:
    """PIDs of PostgreSQL backends (and autovacuum workers) serving ``database``.

    Backends set their process title to ``postgres: <cluster>: <user> <db> <host> <state>``,
    so the database name is visible without any query.
    """
    skip = set(exclude)
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in skip:
            continue
        title = _cmdline(pid)
        if not title.startswith("postgres:"):
            continue
        words = title.split()
        if database in words:
            found.append(pid)
    return found


class PgCpu:
    """Sums the CPU of the PostgreSQL processes serving one database between two samples.

    Backends that appear between the samples are counted in full (their CPU all falls in the
    window); backends that exit in between lose their share (rare: pools stay open).
    Shared background processes (WAL writer, checkpointer) are not counted.
    """

    def __init__(self, database: str, exclude: Iterable[int] = ()) -> None:
        self.database = database
        self.exclude = set(exclude)
        self._start: dict[int, float] = {}

    def start(self) -> None:
        self._start = {}
        for pid in postgres_pids(self.database, self.exclude):
            cpu = proc_cpu(pid)
            if cpu is not None:
                self._start[pid] = cpu

    def stop(self) -> float:
        total = 0.0
        for pid in postgres_pids(self.database, self.exclude):
            cpu = proc_cpu(pid)
            if cpu is None:
                continue
            total += cpu - self._start.get(pid, 0.0)
        return total


# -- machine facts ------------------------------------------------------------------------------


def package_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "not installed"


def machine_facts() -> dict[str, str]:
    facts = {
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "memory": _memory(),
    }
    return facts


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    kib = int(line.split()[1])
                    return f"{kib / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "unknown"


# -- results ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class GroupResult:
    """What one group measured: rendered tables plus the raw figures (kept as JSON)."""

    name: str
    title: str
    intro: list[str]
    tables: list[Table]
    facts: dict[str, str]
    raw: dict[str, Any]
    targets: list[tuple[str, str, bool | None]]  # (target, measured, met?)
    finished_at: str = ""
    quick: bool = False
    seconds: float = 0.0

    def save(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1, default=str))
        return path

    @classmethod
    def load(cls, name: str) -> GroupResult | None:
        path = RESULTS_DIR / f"{name}.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["tables"] = [Table(**t) for t in data["tables"]]
        data["targets"] = [tuple(t) for t in data["targets"]]
        return cls(**data)


IDLE_MARKERS = ("poll' of 'select.epoll", "selectors.py", "'get' of '_queue.SimpleQueue'")


def profile_rows(stats_source: Any, jobs: int, top: int = 15) -> list[list[str]]:
    """The functions with the most own time in a cProfile run, per job.

    ``stats_source`` is a ``cProfile.Profile`` or a stats file path. Waiting (``epoll``, a
    thread's queue ``get``) is left out: with a CPU-time profiler timer it is ~0 anyway.
    """
    import pstats

    stats = pstats.Stats(stats_source)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows: list[tuple[float, float, int, str]] = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        name = f"{filename}:{line}({func})"
        if any(marker in name for marker in IDLE_MARKERS):
            continue
        for marker in ("/site-packages/", "/src/", "/lib/python3.11/", "/lib/python3.12/"):
            if marker in name:
                name = name.split(marker, 1)[1]
                break
        rows.append((tottime, cumtime, ncalls, name))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows) or 1.0
    return [
        [f"`{name}`", f"{ncalls / jobs:.2f}", f"{tottime / jobs * 1e6:.1f}",
         f"{100 * tottime / total:.0f}%", f"{cumtime / jobs * 1e6:.1f}"]
        for tottime, cumtime, ncalls, name in rows[:top]
    ]


PROFILE_HEADERS = ["function", "calls per job", "own CPU µs per job", "share of own CPU",
                   "cumulative CPU µs per job"]
PROFILE_NOTE = (
    "cProfile with a CPU-time timer (`time.thread_time`), so waiting is not counted; it "
    "inflates small Python functions (read the ranking more than the absolute µs) and counts "
    "each resumption of a coroutine as a call."
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed_rounds(rounds: int, body: Callable[[], float]) -> Stat:
    """Run ``body`` (which returns one figure) ``rounds`` times; the median and spread."""
    return Stat.of(body() for _ in range(rounds))
