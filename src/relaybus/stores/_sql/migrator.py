"""Migrations, once for every SQL dialect: numbered scripts, applied in one transaction under
the dialect's migration lock, recorded in ``{prefix}migrations``; idempotent, and safe when two
processes migrate at once (the second waits, then finds nothing to do)."""

from __future__ import annotations

import logging
from typing import Any

from .dialect import Dialect
from .executor import Tx

__all__ = ["applied_versions", "migrate"]


async def migrate(
    tx: Tx, dialect: Dialect, now: Any, logger: logging.Logger, upto: int | None = None
) -> list[int]:
    """Apply the missing migrations on ``tx`` (inside a transaction); return their versions.
    ``upto``: only those numbered up to it (an Alembic revision applies its own)."""
    await tx.execute("migrate_lock", {"key": dialect.migrate_lock_key()})
    schema = (dialect.schema or "").lower()
    exists = await tx.fetchrow("schema_exists", {"schema": schema})
    if exists is None or not exists[0]:
        await tx.execute("create_schema", {})
    await tx.execute("create_migrations_table", {})
    applied = {row[0] for row in await tx.fetch("applied_migrations", {})}
    done = []
    for version, name, sql in dialect.migrations:
        if version in applied or (upto is not None and version > upto):
            continue
        logger.info("applying migration %04d_%s (%s)", version, name, dialect.title)
        await tx.script(sql)
        await tx.execute("record_migration", {"version": version, "name": name, "now": now})
        done.append(version)
    return done


async def applied_versions(tx: Tx) -> set[int]:
    return {row[0] for row in await tx.fetch("applied_migrations", {})}
