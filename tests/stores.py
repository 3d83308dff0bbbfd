"""Store factories for tests: one entry per store kind, used by the conformance suite.

A store that needs a server it cannot reach is skipped locally but FAILS under CI=true, so a
missing database never passes silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from relaybus._clock import Clock
from relaybus.stores.memory import MemoryStore
from relaybus.stores.sqlite import SQLiteStore

PG_DSN = os.environ.get("RELAYBUS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_DSN = os.environ.get("RELAYBUS_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")


def server_missing(what: str, error: BaseException) -> None:
    """Skip locally; fail under CI=true (a skipped test is not a passed test)."""
    message = f"{what} is not reachable: {error!r}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def memory_store(clock: Clock, tmp_path: Path) -> AsyncIterator[Any]:
    yield MemoryStore(clock=clock)


@asynccontextmanager
async def sqlite_store(clock: Clock, tmp_path: Path) -> AsyncIterator[Any]:
    store = SQLiteStore(tmp_path / "jobs.db", clock=clock)
    try:
        yield store
    finally:
        await store.close()  # idempotent: in case a test left it open


class SchemaPool:
    """Migrated PostgreSQL schemas, reused across tests: a test gets an empty one (truncated,
    ids restarted) instead of paying for CREATE SCHEMA + migrations + DROP each time."""

    def __init__(self) -> None:
        self.free: list[str] = []
        self.made: list[str] = []


SCHEMAS = SchemaPool()  # test-session state only; dropped by tests/conftest.py at the end


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """An empty schema of its own (reused: truncated after a clean test, else dropped)."""
    import asyncpg

    try:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        server_missing("PostgreSQL", exc)
        raise  # unreachable: server_missing skips or fails
    schema = SCHEMAS.free.pop() if SCHEMAS.free else None
    if schema is None:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        SCHEMAS.made.append(schema)
    clean = False
    try:
        yield schema
        clean = True
    finally:
        try:
            if clean:
                await admin.execute(
                    f'TRUNCATE "{schema}".relaybus_jobs, "{schema}".relaybus_nodes, '
                    f'"{schema}".relaybus_leader, "{schema}".relaybus_queue_pauses RESTART IDENTITY'
                )
                SCHEMAS.free.append(schema)
            else:  # a failed test may have left anything behind: start over next time
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                SCHEMAS.made.remove(schema)
        finally:
            await admin.close()


@asynccontextmanager
async def postgres_store(clock: Clock, tmp_path: Path) -> AsyncIterator[Any]:
    """A PostgresStore in an empty schema of its own, migrated."""
    from relaybus.stores.postgres import PostgresStore

    async with postgres_schema() as schema:
        store = PostgresStore(PG_DSN, schema=schema, clock=clock, auto_migrate=True, min_size=1)
        try:
            yield store
        finally:
            await store.close()  # idempotent: in case a test left it open


MYSQL_DATABASES = SchemaPool()  # migrated MariaDB/MySQL databases, reused across tests


def mysql_dsn_for(database: str, dsn: str = MYSQL_DSN) -> str:
    """``dsn`` with its database replaced."""
    base, _, query = dsn.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + database
    return base + ("?" + query if query else "")


async def mysql_admin(dsn: str = MYSQL_DSN) -> Any:
    """A plain asyncmy connection to the server (skips or fails when it is unreachable)."""
    import asyncmy

    from relaybus.stores.mysql.executor import parse_dsn

    try:
        return await asyncmy.connect(autocommit=True, **{**parse_dsn(dsn), "connect_timeout": 5})
    except (OSError, asyncmy.errors.MySQLError) as exc:
        server_missing("MySQL/MariaDB", exc)
        raise  # unreachable: server_missing skips or fails


async def mysql_sql(conn: Any, sql: str, args: Any = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return list(await cur.fetchall())


@asynccontextmanager
async def mysql_database() -> AsyncIterator[str]:
    """An empty database of its own (reused: truncated after a clean test, else dropped)."""
    admin = await mysql_admin()
    database = MYSQL_DATABASES.free.pop() if MYSQL_DATABASES.free else None
    if database is None:
        database = f"t_{uuid.uuid4().hex[:16]}"
        MYSQL_DATABASES.made.append(database)
        await mysql_sql(admin, f"CREATE DATABASE `{database}`")
    clean = False
    try:
        yield database
        clean = True
    finally:
        try:
            if clean:
                for table in ("jobs", "nodes", "leader", "queue_pauses"):
                    await mysql_sql(admin, f"TRUNCATE TABLE `{database}`.relaybus_{table}")
                MYSQL_DATABASES.free.append(database)
            else:  # a failed test may have left anything behind: start over next time
                await mysql_sql(admin, f"DROP DATABASE IF EXISTS `{database}`")
                MYSQL_DATABASES.made.remove(database)
        finally:
            admin.close()


@asynccontextmanager
async def mysql_store(clock: Clock, tmp_path: Path) -> AsyncIterator[Any]:
    """A MySQLStore in an empty database of its own, migrated."""
    from relaybus.stores.mysql import MySQLStore

    async with mysql_database() as database:
        store = MySQLStore(mysql_dsn_for(database), clock=clock, auto_migrate=True, min_size=1)
        try:
            yield store
        finally:
            await store.close()  # idempotent: in case a test left it open


#: SQLAlchemy engine variants: name -> (database, driver).
SQLALCHEMY_VARIANTS = {
    "sqlalchemy-asyncpg": ("postgres", "postgresql+asyncpg"),
    "sqlalchemy-psycopg": ("postgres", "postgresql+psycopg"),
    "sqlalchemy-asyncmy": ("mysql", "mysql+asyncmy"),
    "sqlalchemy-aiomysql": ("mysql", "mysql+aiomysql"),
    "sqlalchemy-aiosqlite": ("sqlite", "sqlite+aiosqlite"),
}


def sqlalchemy_url(driver: str, where: str) -> str:
    """The SQLAlchemy URL of ``driver`` for a PostgreSQL DSN, a MySQL database or a SQLite
    file."""
    if driver.startswith("postgresql"):
        return driver + "://" + PG_DSN.split("://", 1)[1]
    if driver.startswith("mysql"):
        return driver + "://" + mysql_dsn_for(where).split("://", 1)[1]
    return f"{driver}:///{where}"


@asynccontextmanager
async def sqlalchemy_target(variant: str, tmp_path: Path) -> AsyncIterator[tuple[str, str | None]]:
    """(engine URL, PostgreSQL schema) of an empty database for ``variant``."""
    database, driver = SQLALCHEMY_VARIANTS[variant]
    if database == "postgres":
        async with postgres_schema() as schema:
            yield sqlalchemy_url(driver, ""), schema
    elif database == "mysql":
        async with mysql_database() as name:
            yield sqlalchemy_url(driver, name), None
    else:
        yield sqlalchemy_url(driver, str(tmp_path / "jobs.db")), None


def sqlalchemy_factory(
    variant: str,
) -> Callable[[Clock, Path], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def factory(clock: Clock, tmp_path: Path) -> AsyncIterator[Any]:
        from sqlalchemy.ext.asyncio import create_async_engine

        from relaybus.stores.sqlalchemy import SQLAlchemyStore

        async with sqlalchemy_target(variant, tmp_path) as (url, schema):
            engine = create_async_engine(url)
            store = SQLAlchemyStore(engine, schema=schema, clock=clock, auto_migrate=True)
            try:
                yield store
            finally:
                await store.close()  # idempotent: in case a test left it open
                await engine.dispose()

    return factory


async def drop_test_schemas() -> None:
    if MYSQL_DATABASES.made:
        admin = await mysql_admin()
        try:
            for database in MYSQL_DATABASES.made:
                await mysql_sql(admin, f"DROP DATABASE IF EXISTS `{database}`")
        finally:
            admin.close()
        MYSQL_DATABASES.made.clear()
        MYSQL_DATABASES.free.clear()
    await _drop_pg_schemas()


async def _drop_pg_schemas() -> None:
    import asyncpg

    if not SCHEMAS.made:
        return
    admin = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        for schema in SCHEMAS.made:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await admin.close()
    SCHEMAS.made.clear()
    SCHEMAS.free.clear()


STORE_FACTORIES: dict[str, Callable[[Clock, Path], AbstractAsyncContextManager[Any]]] = {
    "memory": memory_store,
    "mysql": mysql_store,
    "postgres": postgres_store,
    "sqlite": sqlite_store,
    **{variant: sqlalchemy_factory(variant) for variant in SQLALCHEMY_VARIANTS},
}
