"""The store registry and the one query vocabulary every SQL dialect speaks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import relaybus
from relaybus.cli import dialects, store_for_dsn
from relaybus.stores import registry
from relaybus.stores._sql.dialect import CORE_QUERIES
from relaybus.stores._sql.queries import compile_query

from .stores import (
    MYSQL_DSN,
    PG_DSN,
    STORE_FACTORIES,
    mysql_admin,
    mysql_dsn_for,
    mysql_sql,
    server_missing,
)

SRC = Path(relaybus.__file__).resolve().parent
SQL_KINDS = [kind.name for kind in registry.sql_stores()]


def test_every_store_is_exported_tested_and_loadable() -> None:
    names = {kind.name for kind in registry.STORES}
    assert set(STORE_FACTORIES) == names  # the conformance and driver suites cover each one
    for kind in registry.STORES:
        assert kind.class_name in relaybus.__all__
        assert getattr(relaybus, kind.class_name) is kind.load()
    assert dialects() == SQL_KINDS


@pytest.mark.parametrize(
    ("dsn", "store"),
    [
        ("sqlite:///jobs.db", "SQLiteStore"),
        ("jobs.db", "SQLiteStore"),
        ("postgresql://u@h/db", "PostgresStore"),
        ("postgres://u@h/db", "PostgresStore"),
        ("mysql://u@h/db", "MySQLStore"),
        ("mariadb://u@h/db", "MySQLStore"),
    ],
)
def test_a_dsn_finds_its_store(dsn: str, store: str) -> None:
    kind = registry.for_dsn(dsn)
    assert kind is not None and kind.class_name == store
    assert type(store_for_dsn(dsn, prefix="relaybus_", schema=None)).__name__ == store


def test_an_unknown_dsn_scheme_finds_nothing() -> None:
    assert registry.for_dsn("oracle://x/y") is None


def _dialect(name: str) -> Any:
    kind = registry.by_name(name)
    assert kind is not None
    cls = kind.load_dialect()
    return cls(prefix="relaybus_", schema="public") if kind.has_schema else cls(prefix="relaybus_")


def _literals(paths: list[Path]) -> set[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in paths)
    return set(re.findall(r'"([a-z_]+)"', text))


@pytest.mark.parametrize("name", SQL_KINDS)
def test_every_dialect_defines_the_core_vocabulary_and_nothing_unused(name: str) -> None:
    dialect = _dialect(name)
    defined = set(dialect.queries)
    assert defined >= CORE_QUERIES, f"{name} lacks {sorted(CORE_QUERIES - defined)}"
    assert not CORE_QUERIES & dialect.own_queries
    unused = defined - CORE_QUERIES - dialect.own_queries
    assert not unused, f"{name} defines queries nobody runs: {sorted(unused)}"
    assert dialect.own_queries <= defined
    core = _literals(sorted((SRC / "stores" / "_sql").glob("*.py")))
    own = _literals(sorted((SRC / "stores" / name).glob("*.py")))
    assert core >= CORE_QUERIES, f"core queries never run: {sorted(CORE_QUERIES - core)}"
    never_run = dialect.own_queries - own - core
    assert not never_run, f"{name}'s own queries never run: {sorted(never_run)}"


def test_binds_compile_to_each_paramstyle() -> None:
    sql = "SELECT :a::text, ':not' , x::int -- :comment\nWHERE y = :b AND z = :a"
    numeric = compile_query("q", sql, "numeric")
    assert numeric.sql == "SELECT $1::text, ':not' , x::int -- :comment\nWHERE y = $2 AND z = $1"
    assert numeric.binds == ("a", "b")
    assert numeric.positional({"a": 1, "b": 2, "extra": 3}) == (1, 2)
    assert compile_query("q", sql, "pyformat").sql.startswith("SELECT %(a)s::text")
    assert compile_query("q", sql, "named").sql == sql
    with pytest.raises(KeyError, match="needs the bind 'b'"):
        numeric.positional({"a": 1})


async def test_every_sqlite_query_prepares(tmp_path: Path) -> None:
    import sqlite3

    store = relaybus.SQLiteStore(tmp_path / "jobs.db")
    await store.open()
    await store.close()
    dialect = _dialect("sqlite")
    conn = sqlite3.connect(tmp_path / "jobs.db")
    try:
        for name, query in dialect.queries.items():
            if name in ("begin", "commit", "rollback"):
                continue  # transaction control: prepared by every call of the store
            args = query.positional(dict.fromkeys(query.binds))
            conn.execute("EXPLAIN " + query.sql, args).fetchall()
    finally:
        conn.close()


async def test_every_postgres_query_prepares() -> None:
    import asyncpg

    from relaybus.stores.postgres import PostgresStore

    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        server_missing("PostgreSQL", exc)
        raise
    schema = "t_vocabulary"
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        store = PostgresStore(PG_DSN, schema=schema, auto_migrate=True, min_size=1)
        await store.open()
        await store.close()
        dialect = store.dialect
        for name, query in dialect.queries.items():
            if name == "create_schema":
                continue  # the schema exists now; its creation is exercised by migrate()
            statement = await conn.prepare(query.sql)
            assert len(statement.get_parameters()) == len(query.binds), name
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def test_every_mysql_query_prepares() -> None:
    """Every query of the MySQL dialect prepares on the server (MariaDB here), with as many
    placeholders as binds; a query of several statements (``;`` ending a line), each of them."""
    from relaybus.stores.mysql import MySQLStore

    admin = await mysql_admin(MYSQL_DSN)
    database = "t_vocabulary"
    try:
        await mysql_sql(admin, f"DROP DATABASE IF EXISTS {database}")
        await mysql_sql(admin, f"CREATE DATABASE {database}")
        store = MySQLStore(mysql_dsn_for(database), auto_migrate=True)
        await store.open()
        await store.close()
        await mysql_sql(admin, f"USE {database}")
        for name, query in store.dialect.queries.items():
            placeholders = [f"%({bind})s" for bind in query.binds]
            sql = query.sql
            for placeholder in placeholders:
                sql = sql.replace(placeholder, "?")
            assert "%(" not in sql, name
            for statement in sql.split(";\n"):
                await mysql_sql(admin, "PREPARE relaybus_check FROM %s", (statement,))
                rows = await mysql_sql(admin, "SELECT 1")  # the connection is still usable
                assert rows == [(1,)]
                await mysql_sql(admin, "DEALLOCATE PREPARE relaybus_check")
    finally:
        await mysql_sql(admin, f"DROP DATABASE IF EXISTS {database}")
        admin.close()


def test_fragments_are_shared_text_not_queries() -> None:
    from relaybus.stores._sql.queries import parse_queries

    text = "-- fragment: part\nx = :x\n\n-- name: one\nSELECT /*fragment:part*/\n\n-- name: two\n"
    text += "SELECT 1 WHERE /*fragment:part*/"
    assert parse_queries(text) == {"one": "SELECT x = :x", "two": "SELECT 1 WHERE x = :x"}
    with pytest.raises(ValueError, match="unknown fragment"):
        parse_queries("-- name: q\nSELECT /*fragment:nope*/")


def test_insert_job_binds_are_the_order_plain_rows_are_built_in() -> None:
    """SQLite uses the core's row-by-row insert (inserts.py), which builds plain rows as tuples
    in INSERT_JOB_BINDS order (PostgreSQL and MySQL have insert algorithms of their own)."""
    from relaybus.stores._sql.inserts import INSERT_JOB_BINDS

    assert _dialect("sqlite").queries["insert_job"].binds == INSERT_JOB_BINDS
