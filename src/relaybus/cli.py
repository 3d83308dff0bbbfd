"""The ``relaybus`` command: ``migrate --dsn`` and ``sql --dialect`` (thin over the stores)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from ._errors import RelaybusError
from .stores import registry
from .stores._sql.queries import load_migrations, render

__all__ = ["dialects", "full_schema", "main", "store_for_dsn"]


def dialects() -> list[str]:
    """The SQL dialects this version ships (from the store registry)."""
    return [kind.name for kind in registry.sql_stores()]


def full_schema(dialect: str, *, prefix: str = "relaybus_", schema: str = "public") -> str:
    """Every migration of ``dialect`` in order, as one SQL script (what ``relaybus sql`` prints
    and ``migrations/<dialect>.sql`` holds)."""
    kind = registry.by_name(dialect)
    if kind is None or kind.dialect is None:
        raise RelaybusError(f"unknown dialect {dialect!r}: use one of {dialects()}")
    migrations = load_migrations(kind.package)
    parts = [f"-- relaybus schema for {dialect}: migrations 1-{len(migrations)}\n"]
    for version, name, sql in migrations:
        rendered = render(sql, prefix=prefix, schema=schema if kind.has_schema else None)
        parts.append(f"\n-- migration {version:04d}_{name}\n{rendered.strip()}\n")
    return "".join(parts)


def store_for_dsn(dsn: str, *, prefix: str, schema: str | None) -> Any:
    """A store for ``dsn``: postgresql://…, sqlite:///path (or a bare file path)."""
    kind = registry.for_dsn(dsn)
    if kind is None:
        schemes = ", ".join(f"{s}://..." for k in registry.sql_stores() for s in k.schemes[:1])
        raise RelaybusError(f"unsupported DSN: use one of {schemes}")
    return kind.load().from_dsn(dsn, prefix=prefix, schema=schema)


async def _migrate(dsn: str, prefix: str, schema: str | None) -> None:
    store = store_for_dsn(dsn, prefix=prefix, schema=schema)
    await store.migrate()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relaybus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("migrate", help="apply the schema migrations to a database")
    migrate.add_argument("--dsn", required=True, help="postgresql://... or sqlite:///path")
    migrate.add_argument("--prefix", default="relaybus_", help="table name prefix")
    migrate.add_argument("--schema", default=None, help="PostgreSQL schema (default public)")
    sql = commands.add_parser("sql", help="print the full schema of a dialect")
    sql.add_argument("--dialect", required=True, choices=dialects())
    sql.add_argument("--prefix", default="relaybus_")
    sql.add_argument("--schema", default="public", help="PostgreSQL schema")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "migrate":
            asyncio.run(_migrate(args.dsn, args.prefix, args.schema))
            print("migrated")
        else:
            sys.stdout.write(full_schema(args.dialect, prefix=args.prefix, schema=args.schema))
    except (RelaybusError, ValueError, OSError) as exc:
        print(f"relaybus: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
