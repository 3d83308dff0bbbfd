"""``relaybus migrate`` and ``relaybus sql``: the schema of each dialect."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from typing import Any

from .._errors import StoreError
from ..stores import registry
from ..stores._sql.queries import load_migrations, load_queries, render
from .common import CLIError
from .target import target_of

__all__ = ["dialects", "full_schema", "migrate_command", "sql_command"]

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
    package = _unexecuted(kind.package)
    migrations = load_migrations(package)
    parts = [f"-- relaybus schema for {dialect}: migrations 1-{len(migrations)}\n"]
    if kind.has_schema and schema != "public":
        # The migrations expect their schema to exist (``migrate`` creates it itself): the
        # dialect's own create_schema statement comes first.
        create = load_queries(package)["create_schema"]
        parts.append("\n" + render(create, prefix=prefix, schema=schema) + "\n")
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


async def migrate_command(args: argparse.Namespace) -> int:
    target = target_of(args)
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


def sql_command(args: argparse.Namespace) -> int:
    sys.stdout.write(full_schema(args.dialect, prefix=args.prefix, schema=args.schema))
    return 0
