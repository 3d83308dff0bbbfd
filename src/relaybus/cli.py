"""The ``relaybus`` command, thin over the public API (``bus.jobs``, ``bus.worker``, the
stores' constructors through the store registry): no SQL of its own.

argparse (standard library) rather than click or typer: the command has a handful of
subcommands and options, and relaybus keeps its core dependencies to msgspec alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import _logfmt
from ._bus import Bus
from ._demo import run as _demo_run
from ._errors import JobNotFound, RelaybusError, StoreError, UniqueConflict
from ._supervisor import Supervisor
from ._types import Job, JobState
from .stores import registry
from .stores._sql.queries import load_migrations, render

__all__ = ["CLIError", "dialects", "full_schema", "load_app", "main", "store_for_dsn"]

ENV_APP = "RELAYBUS_APP"
ENV_DSN = "RELAYBUS_DSN"

DESCRIPTION = """\
relaybus: set up databases, run workers and inspect jobs.

Commands that read jobs take --app MODULE:BUS (your bus: its handlers and its store) or
--dsn DSN (the store only); RELAYBUS_APP and RELAYBUS_DSN are their defaults.
"""

EPILOG = """\
examples:
  relaybus migrate --dsn postgresql://user@db/app --schema jobs
  relaybus sql --dialect postgres --schema jobs | psql app
  relaybus worker myapp.tasks:bus --queues mail=10,default=20 --processes 4
  relaybus jobs list --state discarded --app myapp.tasks:bus
  relaybus jobs show 42 --dsn sqlite:///jobs.db
  relaybus stats --watch --dsn sqlite:///jobs.db
  relaybus demo
"""

#: The schema statement ``relaybus sql`` puts first for a named PostgreSQL schema (the
#: package's migrations expect the schema to exist; ``migrate`` creates it itself).
_CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS /*schema*/;\n"


class CLIError(RelaybusError):
    """A usage or environment error: printed as one short line, exit code 2."""


# -- schema ----------------------------------------------------------------------------------


def dialects() -> list[str]:
    """The SQL dialects this version ships (from the store registry)."""
    return [kind.name for kind in registry.sql_stores()]


def full_schema(dialect: str, *, prefix: str = "relaybus_", schema: str = "public") -> str:
    """Every migration of ``dialect`` in order, as one SQL script (what ``relaybus sql``
    prints and ``migrations/<dialect>.sql`` holds). A PostgreSQL schema other than ``public``
    is created first (``CREATE SCHEMA IF NOT EXISTS``), so the script runs on an empty
    database."""
    kind = registry.by_name(dialect)
    if kind is None or kind.dialect is None:
        raise CLIError(f"unknown dialect {dialect!r}: use one of {dialects()}")
    migrations = load_migrations(_unexecuted(kind.package))
    parts = [f"-- relaybus schema for {dialect}: migrations 1-{len(migrations)}\n"]
    if kind.has_schema and schema != "public":
        parts.append("\n" + render(_CREATE_SCHEMA, prefix=prefix, schema=schema))
    for version, name, sql in migrations:
        rendered = render(sql, prefix=prefix, schema=schema if kind.has_schema else None)
        parts.append(f"\n-- migration {version:04d}_{name}\n{rendered.strip()}\n")
    return "".join(parts)


def _unexecuted(package: str) -> Any:
    """``package`` as a module whose resources can be read without running its code (the
    PostgreSQL package imports asyncpg: ``relaybus sql`` must work without it)."""
    if package in sys.modules:
        return sys.modules[package]
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise CLIError(f"the package {package} is missing from this installation")
    return importlib.util.module_from_spec(spec)


# -- where the jobs are ----------------------------------------------------------------------


def _dsn_forms() -> str:
    schemes = [f"{k.schemes[-1]}://..." for k in registry.sql_stores() if k.name != "sqlite"]
    return ", ".join([*schemes, "sqlite:///path/to/jobs.db (or a file name ending in .db)"])


def store_for_dsn(dsn: str, *, prefix: str, schema: str | None) -> Any:
    """A store for ``dsn`` (through the store registry): postgresql://…, sqlite:///path, a
    file name ending in .db/.sqlite/.sqlite3; ``CLIError`` for anything else."""
    kind = registry.for_dsn(dsn)
    if kind is None:
        shown = _logfmt.mask_dsn(dsn)
        if "://" not in dsn:
            raise CLIError(
                f"{shown!r} is not a DSN (it has no scheme, and is not a file name ending in "
                f".db, .sqlite or .sqlite3): use {_dsn_forms()}"
            )
        raise CLIError(f"unsupported DSN {shown!r}: use {_dsn_forms()}")
    if schema is not None and not kind.has_schema:
        raise CLIError(f"--schema applies to PostgreSQL only: the {kind.name} store has no schemas")
    try:
        cls = kind.load()
    except ImportError as exc:
        extra = f' (pip install "relaybus[{kind.extra}]")' if kind.extra else ""
        raise CLIError(f"the {kind.name} store needs {exc.name or exc}{extra}") from None
    return cls.from_dsn(dsn, prefix=prefix, schema=schema)


def load_app(spec: str) -> Bus[Any]:
    """The Bus named by ``MODULE:ATTR`` (the module is imported from the current directory or
    ``sys.path``); ``CLIError`` with a short reason otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"--app takes MODULE:BUS, e.g. myapp.tasks:bus (got {spec!r})")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CLIError(
                f"cannot import {module_name!r} (from {spec!r}): no module named {exc.name!r}; "
                "run relaybus from the directory that holds it, or set PYTHONPATH"
            ) from None
        raise CLIError(f"importing {module_name!r} failed: {exc}") from None
    except (Exception, SystemExit) as exc:
        raise CLIError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Bus):
        raise CLIError(f"{spec!r} is a {type(obj).__name__}, not a relaybus.Bus")
    return obj


@dataclass
class Target:
    """The bus a command works on, and how to tell the user to migrate it."""

    bus: Bus[Any]
    app: str | None
    dsn: str | None
    prefix: str
    schema: str | None

    def migrate_command(self) -> str:
        store = self.bus.store
        where = f"--dsn '{_logfmt.mask_dsn(self.dsn)}'" if self.dsn else "--dsn DSN"
        if self.app and not self.dsn:
            where = f"--app {self.app}"
        parts = ["relaybus migrate", where]
        schema = self.schema or getattr(store, "schema", None)
        if schema and schema != "public":
            parts.append(f"--schema {schema}")
        prefix = getattr(store, "prefix", self.prefix)
        if prefix != "relaybus_":
            parts.append(f"--prefix {prefix}")
        return " ".join(parts)


def _target(args: argparse.Namespace) -> Target:
    app = getattr(args, "app", None)
    dsn = getattr(args, "dsn", None)
    if app and dsn:
        raise CLIError("give --app or --dsn, not both")
    if not app and not dsn:
        app, dsn = os.environ.get(ENV_APP) or None, None
        if not app:
            dsn = os.environ.get(ENV_DSN) or None
    prefix = getattr(args, "prefix", "relaybus_")
    schema = getattr(args, "schema", None)
    if app:
        if schema is not None or prefix != "relaybus_":
            raise CLIError(
                "--schema and --prefix go with --dsn; with --app, the app's store decides"
            )
        return Target(load_app(app), app, None, prefix, None)
    if not dsn:
        raise CLIError(
            "where are the jobs? give --app MODULE:BUS or --dsn DSN "
            f"(or set {ENV_APP} / {ENV_DSN})"
        )
    store = store_for_dsn(dsn, prefix=prefix, schema=schema)
    return Target(Bus(store=store), None, dsn, prefix, schema)


def _missing_schema(store: Any, exc: BaseException) -> bool:
    kind_of = getattr(store, "kind_of", None)
    cause = exc.__cause__
    if kind_of is not None and cause is not None and kind_of(cause) == "missing_schema":
        return True
    return "tables are missing" in str(exc)


@contextlib.asynccontextmanager
async def _opened(target: Target) -> AsyncIterator[Bus[Any]]:
    """The target's bus, open; store errors as short ``CLIError``s (passwords masked)."""
    bus = target.bus
    try:
        async with bus:
            yield bus
    except StoreError as exc:
        if _missing_schema(bus.store, exc):
            raise CLIError(
                f"the relaybus tables are missing in {bus.store!r}: run "
                f"`{target.migrate_command()}` first"
            ) from None
        raise CLIError(f"{exc}") from None
    except OSError as exc:
        raise CLIError(f"cannot reach the database of {bus.store!r}: {exc}") from None


# -- output ----------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cut(text: str, limit: int) -> str:
    text = text.splitlines()[0] if text else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def job_data(job: Job) -> dict[str, Any]:
    """A job as plain JSON data (what ``--json`` prints)."""
    return {
        "id": job.id,
        "handler": job.handler,
        "event": job.event,
        "queue": job.queue,
        "priority": job.priority,
        "state": job.state.value,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "payload": job.payload,
        "meta": job.meta,
        "errors": [
            {
                "at": e.at.isoformat(),
                "attempt": e.attempt,
                "kind": e.kind,
                "message": e.message,
                "traceback": e.traceback,
            }
            for e in job.errors
        ],
        "inserted_at": job.inserted_at.isoformat(),
        "scheduled_at": job.scheduled_at.isoformat(),
        "attempted_at": job.attempted_at.isoformat() if job.attempted_at else None,
        "attempted_by": job.attempted_by,
        "finalized_at": job.finalized_at.isoformat() if job.finalized_at else None,
    }


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=repr)


def _jobs_table(jobs: Sequence[Job]) -> str:
    rows = [
        [
            str(j.id), j.handler, j.queue, j.state.value, f"{j.attempt}/{j.max_attempts}",
            str(j.priority), _when(j.scheduled_at),
            _cut(f"{j.errors[-1].kind}: {j.errors[-1].message}", 60) if j.errors else "",
        ]
        for j in jobs
    ]
    headers = ["id", "handler", "queue", "state", "attempt", "prio", "scheduled", "last error"]
    return _table(headers, rows)


def _show(job: Job) -> str:
    lines = [
        f"job {job.id}: {job.handler} ({job.event}) on queue {job.queue!r}",
        f"  state         {job.state.value}",
        f"  attempt       {job.attempt} of {job.max_attempts}",
        f"  priority      {job.priority}",
        f"  inserted      {_when(job.inserted_at)}",
        f"  scheduled     {_when(job.scheduled_at)}",
        f"  attempted     {_when(job.attempted_at)}"
        + (f" by {job.attempted_by}" if job.attempted_by else ""),
        f"  finalized     {_when(job.finalized_at)}",
        "  payload",
        _indent(_dumps(job.payload), 4),
        "  meta",
        _indent(_dumps(job.meta), 4),
        f"  errors        {len(job.errors) or 'none'}",
    ]
    for n, error in enumerate(job.errors, 1):
        lines.append(f"    {n}. {_when(error.at)}  attempt {error.attempt}  {error.kind}")
        lines.append(_indent(error.message, 7))
        if error.traceback:
            lines.append(_indent(error.traceback.rstrip(), 7))
    return "\n".join(lines)


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())


def _stats_table(stats: dict[str, dict[str, int]]) -> str:
    states = [s.value for s in JobState]
    rows = []
    totals = dict.fromkeys(states, 0)
    for queue in sorted(stats):
        counts = stats[queue]
        rows.append([queue, *(str(counts.get(s, 0)) for s in states)])
        for s in states:
            totals[s] += counts.get(s, 0)
    if len(rows) != 1:
        rows.append(["(all)", *(str(totals[s]) for s in states)])
    return _table(["queue", *states], rows)


# -- commands --------------------------------------------------------------------------------


class _Applied(logging.Handler):
    """Collects the migrator's "applying migration ..." lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("applying migration"):
            self.lines.append(message)
            print(f"relaybus: {message}", file=sys.stderr, flush=True)


async def _migrate(args: argparse.Namespace) -> int:
    target = _target(args)
    store = target.bus.store
    applied = _Applied()
    logger = logging.getLogger("relaybus")
    logger.addHandler(applied)
    previous = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        print(f"relaybus: migrating {store!r}", file=sys.stderr, flush=True)
        await store.migrate()
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"cannot reach the database of {store!r}: {exc}") from None
    finally:
        logger.removeHandler(applied)
        logger.setLevel(previous)
    count = len(applied.lines)
    done = f"{count} migration{'s' if count != 1 else ''} applied" if count else "nothing to apply"
    print(f"migrated: {store!r} is up to date ({done})")
    return 0


def _sql(args: argparse.Namespace) -> int:
    sys.stdout.write(full_schema(args.dialect, prefix=args.prefix, schema=args.schema))
    return 0


def _job_ids(values: Sequence[str]) -> list[int]:
    ids = []
    for value in values:
        try:
            ids.append(int(value))
        except ValueError:
            raise CLIError(f"job ids are integers, not {value!r}") from None
    return ids


async def _jobs(args: argparse.Namespace) -> int:
    target = _target(args)
    async with _opened(target) as bus:
        if args.jobs_command == "list":
            try:
                state = JobState(args.state) if args.state else None
            except ValueError:
                raise CLIError(
                    f"unknown state {args.state!r}: use one of {[s.value for s in JobState]}"
                ) from None
            jobs = await bus.jobs.list(
                state=state, queue=args.queue, handler=args.handler, limit=args.limit
            )
            if args.json:
                print(_dumps([job_data(j) for j in jobs]))
            elif jobs:
                print(_jobs_table(jobs))
            else:
                print("no jobs match")
            return 0
        if args.jobs_command == "show":
            (job_id,) = _job_ids([args.id])
            job = await bus.jobs.get(job_id)
            if job is None:
                raise CLIError(f"no job with id {job_id}")
            print(_dumps(job_data(job)) if args.json else _show(job))
            return 0
        action = bus.jobs.retry if args.jobs_command == "retry" else bus.jobs.cancel
        status = 0
        done: list[dict[str, Any]] = []
        for job_id in _job_ids(args.ids):
            try:
                job = await action(job_id)
            except (JobNotFound, UniqueConflict) as exc:
                print(f"relaybus: {exc}", file=sys.stderr)
                status = 2
                continue
            done.append(job_data(job))
            if not args.json:
                print(f"job {job.id}: {job.state.value} ({job.handler}, queue {job.queue})")
        if args.json:
            print(_dumps(done))
        return status


async def _stats(args: argparse.Namespace) -> int:
    target = _target(args)
    async with _opened(target) as bus:
        if not args.watch:
            stats = await bus.jobs.stats()
            print(_dumps(stats) if args.json else _stats_table(stats))
            return 0
        clear = sys.stdout.isatty()
        try:
            while True:
                stats = await bus.jobs.stats()
                text = _dumps(stats) if args.json else _stats_table(stats)
                stamp = time.strftime("%H:%M:%S")
                head = f"{bus.store!r} at {stamp} (every {args.interval:g}s; Ctrl-C to quit)"
                if clear:
                    sys.stdout.write("\x1b[H\x1b[J")
                print(f"{head}\n{text}\n", flush=True)
                await asyncio.sleep(args.interval)
        except asyncio.CancelledError:
            return 0


def _queues(text: str) -> dict[str, int]:
    queues: dict[str, int] = {}
    for item in text.split(","):
        name, sep, count = item.strip().partition("=")
        if not name:
            continue
        try:
            queues[name] = int(count) if sep else 10
        except ValueError:
            raise CLIError(f"--queues takes NAME=CONCURRENCY,... (got {item.strip()!r})") from None
    if not queues:
        raise CLIError("--queues names no queue")
    return queues


def _worker_options(args: argparse.Namespace) -> dict[str, Any]:
    ttl = args.node_ttl
    heartbeat = args.heartbeat_interval or min(5.0, ttl / 3)
    return {
        "queues": _queues(args.queues),
        "node": args.node,
        "grace": args.grace,
        "poll_interval": args.poll_interval,
        "node_ttl": ttl,
        "heartbeat_interval": heartbeat,
        "rescue_interval": args.rescue_interval or min(15.0, ttl),
        "handle_signals": True,
    }


def _app_spec(args: argparse.Namespace) -> str:
    spec: str | None = args.app_pos or args.app or os.environ.get(ENV_APP) or None
    if not spec:
        raise CLIError(f"worker needs the app: relaybus worker MODULE:BUS (or set {ENV_APP})")
    return spec


async def _summarize(worker: Any, every: float, logger: logging.Logger) -> None:
    node = worker.node
    done, failed, since = node.completed, node.failed, time.monotonic()
    while True:
        await asyncio.sleep(every)
        now = time.monotonic()
        d, f = node.completed - done, node.failed - failed
        rate = d / (now - since) if now > since else 0.0
        logger.info(
            "worker %s: %d jobs done, %d failed in the last %.0fs (%.1f/s); %d running",
            node.id, d, f, now - since, rate, len(node.runs),
        )
        done, failed, since = node.completed, node.failed, now


async def _watch_parent(pid: int, worker: Any, logger: logging.Logger) -> None:
    while os.getppid() == pid:  # noqa: ASYNC110 (nothing to wait on: poll the parent pid)
        await asyncio.sleep(1.0)
    logger.warning("the supervising process %d is gone: stopping", pid)
    await worker.stop()


async def _run_worker(args: argparse.Namespace, bus: Bus[Any], options: dict[str, Any]) -> int:
    logger = logging.getLogger("relaybus.worker")
    target = Target(bus, _app_spec(args), None, "relaybus_", None)
    async with _opened(target):
        worker = bus.worker(**options)
        helpers = []
        if args.summary_interval > 0:
            helpers.append(asyncio.create_task(_summarize(worker, args.summary_interval, logger)))
        if args.supervisor:
            helpers.append(asyncio.create_task(_watch_parent(args.supervisor, worker, logger)))
        try:
            await worker.run()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
    return 0


def _child_argv(args: argparse.Namespace, spec: str, index: int) -> list[str]:
    label = args.node or "worker"
    argv = [
        sys.executable, "-m", "relaybus", "worker", spec, "--processes", "1",
        "--queues", args.queues, "--node", f"{label}-{index}", "--grace", str(args.grace),
        "--poll-interval", str(args.poll_interval), "--node-ttl", str(args.node_ttl),
        "--log-format", args.log_format, "--log-level", args.log_level,
        "--summary-interval", str(args.summary_interval), "--supervisor", str(os.getpid()),
    ]
    if args.heartbeat_interval:
        argv += ["--heartbeat-interval", str(args.heartbeat_interval)]
    if args.rescue_interval:
        argv += ["--rescue-interval", str(args.rescue_interval)]
    return argv


def _worker(args: argparse.Namespace) -> int:
    spec = _app_spec(args)
    bus = load_app(spec)
    options = _worker_options(args)
    bus.worker(**options)  # check every option here, before any process starts
    if args.processes < 1:
        raise CLIError("--processes must be >= 1")
    if args.processes == 1:
        return asyncio.run(_run_worker(args, bus, options))
    argvs = [_child_argv(args, spec, i + 1) for i in range(args.processes)]
    return Supervisor(argvs, args.grace, logging.getLogger("relaybus.supervisor")).run()


def _demo(args: argparse.Namespace) -> int:
    _demo_run()
    return 0


# -- the parser ------------------------------------------------------------------------------


def _where_options(parser: argparse.ArgumentParser, *, app: bool = True) -> None:
    group = parser.add_argument_group("where the jobs are")
    if app:
        group.add_argument(
            "--app", metavar="MODULE:BUS", help=f"your bus: its handlers and store (${ENV_APP})"
        )
    group.add_argument(
        "--dsn",
        help=f"the store only: postgresql://..., sqlite:///path (${ENV_DSN})",
    )
    group.add_argument("--prefix", default="relaybus_", help="table name prefix (with --dsn)")
    group.add_argument(
        "--schema", default=None, help="PostgreSQL schema (with --dsn; default public)"
    )


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="relaybus", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = commands.add_parser(
        "migrate", help="apply the schema migrations to a database",
        description="Apply the missing schema migrations (idempotent; needs DDL rights).",
    )
    _where_options(migrate)

    sql = commands.add_parser(
        "sql", help="print the full schema of a dialect",
        description="Print the full schema as one SQL script, for your own migration tool.",
    )
    sql.add_argument("--dialect", required=True, choices=dialects())
    sql.add_argument("--prefix", default="relaybus_", help="table name prefix")
    sql.add_argument("--schema", default="public", help="PostgreSQL schema (created if needed)")

    worker = commands.add_parser(
        "worker", help="run jobs: one node, or N supervised node processes",
        description=(
            "Run the jobs of your app's bus. SIGTERM or Ctrl-C stops gracefully within --grace "
            "(exit 0); a second signal cancels running jobs at once (they go back to "
            "available, uncharged)."
        ),
    )
    worker.add_argument("app_pos", nargs="?", metavar="MODULE:BUS", help=f"your bus (${ENV_APP})")
    worker.add_argument("--app", metavar="MODULE:BUS", help=argparse.SUPPRESS)
    worker.add_argument(
        "--queues", default="default=10", metavar="NAME=N,...",
        help="queues and their concurrency (default: default=10)",
    )
    worker.add_argument(
        "--processes", type=int, default=1, metavar="N",
        help="run N node processes under one supervising parent (default 1: this process)",
    )
    worker.add_argument("--node", default=None, metavar="LABEL", help="node label (default: host)")
    worker.add_argument("--grace", type=float, default=30.0, metavar="S",
                        help="seconds running jobs get to finish on stop (default 30)")
    worker.add_argument("--poll-interval", type=float, default=1.0, metavar="S")
    worker.add_argument("--node-ttl", type=float, default=30.0, metavar="S",
                        help="a node silent this long is dead (default 30)")
    worker.add_argument("--heartbeat-interval", type=float, default=None, metavar="S",
                        help="default: min(5, node-ttl / 3)")
    worker.add_argument("--rescue-interval", type=float, default=None, metavar="S",
                        help="default: min(15, node-ttl)")
    worker.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="json: one JSON object per line")
    worker.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    worker.add_argument("--summary-interval", type=float, default=60.0, metavar="S",
                        help="log a summary line every S seconds (0: never; default 60)")
    worker.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)

    jobs = commands.add_parser("jobs", help="list, show, retry or cancel jobs")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = jobs_commands.add_parser("list", help="jobs matching every filter, oldest first")
    listing.add_argument("--state", choices=[s.value for s in JobState])
    listing.add_argument("--queue")
    listing.add_argument("--handler")
    listing.add_argument("--limit", type=int, default=50)
    show = jobs_commands.add_parser("show", help="one job: payload, meta, errors, tracebacks")
    show.add_argument("id")
    retry = jobs_commands.add_parser("retry", help="make jobs due now")
    retry.add_argument("ids", nargs="+", metavar="ID")
    cancel = jobs_commands.add_parser("cancel", help="cancel pending or running jobs")
    cancel.add_argument("ids", nargs="+", metavar="ID")
    for sub in (listing, show, retry, cancel):
        sub.add_argument("--json", action="store_true", help="print JSON")
        _where_options(sub)

    stats = commands.add_parser("stats", help="job counts by queue and state")
    stats.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    stats.add_argument("--interval", type=float, default=2.0, metavar="S")
    stats.add_argument("--json", action="store_true", help="print JSON")
    _where_options(stats)

    commands.add_parser("demo", help="run the demo (a shop backend on a temporary SQLite file)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    secrets = (getattr(args, "dsn", None), os.environ.get(ENV_DSN))
    if args.command == "worker":
        _logfmt.setup(args.log_format, args.log_level, secrets=secrets)
    elif args.command != "demo":
        _logfmt.setup("brief", logging.WARNING, secrets=secrets)
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(args))
        if args.command == "sql":
            return _sql(args)
        if args.command == "worker":
            return _worker(args)
        if args.command == "jobs":
            return asyncio.run(_jobs(args))
        if args.command == "stats":
            return asyncio.run(_stats(args))
        return _demo(args)
    except KeyboardInterrupt:
        return 130 if args.command != "stats" else 0
    except (RelaybusError, ValueError, OSError) as exc:
        print(f"relaybus: {_logfmt.mask_text(str(exc), *secrets)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
