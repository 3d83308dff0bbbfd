"""The command's options and ``main``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from .. import _logfmt
from .._admin import BULK_LIMIT
from .._dsn import mask_text
from .._errors import RelaybusError
from .._types import JobState
from .admin import jobs_command, nodes_command, queues_command, stats_command
from .common import ENV_APP, ENV_DSN
from .dashboard import ENV_PASSWORD, ENV_TOKEN, ENV_USER, dashboard_command
from .schema import dialects, migrate_command, sql_command
from .worker import demo_command, worker_command

__all__ = ["main"]

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
  relaybus jobs retry --state discarded --queue mail --app myapp.tasks:bus
  relaybus jobs show 42 --dsn sqlite:///jobs.db
  relaybus stats --watch --dsn sqlite:///jobs.db
  relaybus queues pause mail --app myapp.tasks:bus
  relaybus nodes --app myapp.tasks:bus
  relaybus dashboard --dsn sqlite:///jobs.db --port 8181
  relaybus demo
"""

_ADMIN: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "jobs": jobs_command,
    "stats": stats_command,
    "nodes": nodes_command,
    "queues": queues_command,
}


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
    worker.add_argument(
        "--metrics-port", type=int, default=None, metavar="PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics (the prometheus extra); "
        "with --processes N, child i serves PORT + i - 1",
    )
    worker.add_argument("--metrics-addr", default="0.0.0.0", metavar="ADDR",
                        help="the address --metrics-port listens on (default 0.0.0.0)")
    worker.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)

    _jobs_parser(commands)

    stats = commands.add_parser("stats", help="job counts by queue and state")
    stats.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    stats.add_argument("--interval", type=float, default=2.0, metavar="S")
    stats.add_argument("--json", action="store_true", help="print JSON")
    _where_options(stats)

    nodes = commands.add_parser("nodes", help="live nodes, the leader, running jobs per node")
    nodes.add_argument("--json", action="store_true", help="print JSON")
    _where_options(nodes)

    queues = commands.add_parser("queues", help="list, pause or resume queues")
    queue_commands = queues.add_subparsers(dest="queues_command", required=True, metavar="ACTION")
    listed = queue_commands.add_parser("list", help="queues with their job counts and pauses")
    listed.add_argument("--json", action="store_true", help="print JSON")
    pause = queue_commands.add_parser("pause", help="no node fetches the queue until resumed")
    resume = queue_commands.add_parser("resume", help="nodes fetch the queue again")
    for sub in (pause, resume):
        sub.add_argument("name", metavar="NAME")
    for sub in (listed, pause, resume):
        _where_options(sub)

    dashboard = commands.add_parser(
        "dashboard", help="serve the web dashboard (the web extra)",
        description=(
            "Serve the web dashboard (relaybus.web.app). It binds to 127.0.0.1; any other host "
            f"needs authentication from the environment: {ENV_TOKEN} (a bearer token, or "
            f"?token= once in the browser), or {ENV_USER} and {ENV_PASSWORD} (basic auth)."
        ),
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    dashboard.add_argument("--port", type=int, default=8181, help="default 8181")
    dashboard.add_argument("--read-only", action="store_true",
                           help="no actions: retry, cancel, delete and pause are refused")
    _where_options(dashboard)

    commands.add_parser("demo", help="run the demo (a shop backend on a temporary SQLite file)")
    return parser


def _jobs_parser(commands: Any) -> None:
    jobs = commands.add_parser("jobs", help="list, show, retry, cancel or delete jobs")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = jobs_commands.add_parser("list", help="jobs matching every filter, oldest first")
    listing.add_argument("--text", help="a substring of the payload or meta JSON")
    listing.add_argument("--after", type=int, metavar="ID", help="ids above ID (next page)")
    listing.add_argument("--before", type=int, metavar="ID", help="ids below ID")
    listing.add_argument("--order", choices=["oldest", "newest"], default="oldest")
    show = jobs_commands.add_parser("show", help="one job: payload, meta, errors, tracebacks")
    show.add_argument("id")
    actions = {
        "retry": "make jobs due now",
        "cancel": "cancel pending or running jobs",
        "delete": "delete jobs that are not running",
    }
    changes = []
    for name, text in actions.items():
        sub = jobs_commands.add_parser(
            name, help=f"{text}: by ID..., or every job matching --state/--queue/--handler"
        )
        sub.add_argument("ids", nargs="*", metavar="ID")
        changes.append(sub)
    for sub in (listing, *changes):
        sub.add_argument("--state", choices=[s.value for s in JobState])
        sub.add_argument("--queue")
        sub.add_argument("--handler")
    listing.add_argument("--limit", type=int, default=50)
    for sub in changes:
        sub.add_argument("--limit", type=int, default=BULK_LIMIT,
                         help=f"at most this many jobs per bulk call (default {BULK_LIMIT})")
    for sub in (listing, show, *changes):
        sub.add_argument("--json", action="store_true", help="print JSON")
        _where_options(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    secrets = (getattr(args, "dsn", None), os.environ.get(ENV_DSN))
    if args.command == "worker":
        _logfmt.setup(args.log_format, args.log_level, secrets=secrets)
    elif args.command != "demo":
        _logfmt.setup("brief", logging.WARNING, secrets=secrets)
    try:
        if args.command == "migrate":
            return asyncio.run(migrate_command(args))
        if args.command == "sql":
            return sql_command(args)
        if args.command == "worker":
            return worker_command(args)
        if args.command == "dashboard":
            return dashboard_command(args)
        if args.command in _ADMIN:
            return asyncio.run(_ADMIN[args.command](args))
        return demo_command(args)
    except KeyboardInterrupt:
        return 130 if args.command != "stats" else 0
    except (RelaybusError, ValueError, OSError) as exc:
        print(f"relaybus: {mask_text(str(exc), *secrets)}", file=sys.stderr)
        return 2
