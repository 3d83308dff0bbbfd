"""Empty databases for the SQLAlchemy tests that need a fresh one (Alembic, autogenerate):
a PostgreSQL schema, a MySQL/MariaDB database or a SQLite file, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.stores import (
    PG_DSN,
    SQLALCHEMY_VARIANTS,
    mysql_admin,
    mysql_sql,
    server_missing,
    sqlalchemy_url,
)

#: One engine variant per database for the tests that are about the database, not the driver.
ONE_PER_DATABASE = ["sqlalchemy-asyncpg", "sqlalchemy-asyncmy", "sqlalchemy-aiosqlite"]


@dataclass(frozen=True)
class Target:
    """An empty place for relaybus's tables: the engine URL and the PostgreSQL schema."""

    database: str
    url: str
    schema: str | None


@asynccontextmanager
async def empty_target(variant: str, tmp_path: Path) -> AsyncIterator[Target]:
    """A new, empty schema / database / file for ``variant``, dropped afterwards."""
    database, driver = SQLALCHEMY_VARIANTS[variant]
    name = f"e_{uuid.uuid4().hex[:16]}"
    if database == "postgres":
        import asyncpg

        try:
            admin = await asyncpg.connect(PG_DSN, timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            server_missing("PostgreSQL", exc)
            raise
        try:
            await admin.execute(f'CREATE SCHEMA "{name}"')  # Alembic's version table goes there
            yield Target(database, sqlalchemy_url(driver, ""), name)
        finally:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            await admin.close()
    elif database == "mysql":
        admin = await mysql_admin()
        await mysql_sql(admin, f"CREATE DATABASE `{name}`")
        try:
            yield Target(database, sqlalchemy_url(driver, name), None)
        finally:
            await mysql_sql(admin, f"DROP DATABASE IF EXISTS `{name}`")
            admin.close()
    else:
        yield Target(database, sqlalchemy_url(driver, str(tmp_path / f"{name}.db")), None)
