"""Alembic: relaybus's revisions make the schema `relaybus migrate` makes (reflected and
compared), both tools agree on what is applied, and autogenerate in a user project with its
own models proposes nothing about relaybus's tables."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, inspect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from relaybus.sqlalchemy import include_object, include_object_for, metadata_for, table_names
from relaybus.sqlalchemy.alembic import revision_versions
from relaybus.stores import registry
from relaybus.stores.sqlalchemy import SQLAlchemyStore

from .sqlalchemy_support import ONE_PER_DATABASE, Target, empty_target
from .stores import SQLALCHEMY_VARIANTS

ENV_PY = """
import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from relaybus.sqlalchemy import include_object

config = context.config


def run(connection):
    context.configure(
        connection=connection,
        target_metadata=None,
        include_object=include_object,
        version_table_schema=config.get_main_option("relaybus_schema"),
    )
    with context.begin_transaction():
        context.run_migrations()


async def main():
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(run)
    await engine.dispose()


asyncio.run(main())
"""


def scratch_project(tmp_path: Path, target: Target) -> Config:
    """An Alembic project of its own (no revisions yet) that adds relaybus's revisions."""
    project = tmp_path / "project"
    (project / "versions").mkdir(parents=True)
    (project / "env.py").write_text(textwrap.dedent(ENV_PY))
    schema_line = f"relaybus_schema = {target.schema}\n" if target.schema else ""
    (project / "alembic.ini").write_text(
        "[alembic]\n"
        f"script_location = {project}\n"
        f"version_locations = {project}/versions relaybus.sqlalchemy:versions\n"
        "path_separator = space\n"
        f"sqlalchemy.url = {target.url}\n"
        f"{schema_line}"
    )
    return Config(str(project / "alembic.ini"))


def _reflect(sync_conn: Any, schema: str | None) -> dict[str, Any]:
    insp = inspect(sync_conn)
    found: dict[str, Any] = {}
    for name in table_names():
        columns = [
            (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
            for c in insp.get_columns(name, schema=schema)
        ]
        indexes = sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in insp.get_indexes(name, schema=schema)
        )
        checks = sorted(c["sqltext"] for c in insp.get_check_constraints(name, schema=schema))
        found[name] = {
            "columns": columns,
            "pk": insp.get_pk_constraint(name, schema=schema)["constrained_columns"],
            "indexes": indexes,
            "checks": checks,
        }
    return found


async def reflect(engine: AsyncEngine, schema: str | None) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(_reflect, schema)


async def applied(engine: AsyncEngine, schema: str | None) -> list[int]:
    name = f"{schema}.relaybus_migrations" if schema else "relaybus_migrations"
    table = metadata_for(schema=schema).tables[name]
    async with engine.connect() as conn:
        rows = await conn.execute(table.select().order_by(table.c.version))
        return [row.version for row in rows]


def _normalized(schema: dict[str, Any], own: str | None) -> dict[str, Any]:
    """Reflected defaults name the schema on PostgreSQL: compare without it."""
    return {
        name: {
            **table,
            "columns": [
                (c, t, n, d.replace(f"{own}.", "<schema>.") if own else d)
                for c, t, n, d in table["columns"]
            ],
            "checks": [c.replace(f"{own}.", "<schema>.") if own else c for c in table["checks"]],
        }
        for name, table in schema.items()
    }


def test_every_relaybus_migration_has_a_revision() -> None:
    numbers: set[int] = set()
    for kind in registry.sql_stores():
        dialect = kind.load_dialect()
        args = {"prefix": "relaybus_", **({"schema": "public"} if kind.has_schema else {})}
        numbers |= {version for version, _, _ in dialect(**args).migrations}
    assert revision_versions() == sorted(numbers)


@pytest.mark.parametrize("variant", sorted(SQLALCHEMY_VARIANTS))
async def test_alembic_upgrade_head_makes_the_schema_relaybus_migrate_makes(
    variant: str, tmp_path: Path
) -> None:
    async with (
        empty_target(variant, tmp_path) as by_alembic,
        empty_target(variant, tmp_path) as by_relaybus,
    ):
        config = scratch_project(tmp_path, by_alembic)
        await asyncio.to_thread(command.upgrade, config, "head")

        engine_b = create_async_engine(by_relaybus.url, poolclass=NullPool)
        engine_a = create_async_engine(by_alembic.url, poolclass=NullPool)
        try:
            store = SQLAlchemyStore(engine_b, schema=by_relaybus.schema)
            await store.migrate()
            made_by_alembic = await reflect(engine_a, by_alembic.schema)
            made_by_relaybus = await reflect(engine_b, by_relaybus.schema)
            assert len(made_by_alembic["relaybus_jobs"]["columns"]) >= 20
            assert made_by_alembic["relaybus_jobs"]["indexes"]
            assert _normalized(made_by_alembic, by_alembic.schema) == _normalized(
                made_by_relaybus, by_relaybus.schema
            )
            # Both tools record in relaybus's own table, and agree.
            versions = await applied(engine_a, by_alembic.schema)
            assert versions == await applied(engine_b, by_relaybus.schema)
            assert versions
            # relaybus migrate after Alembic: nothing to do; Alembic after relaybus: the same.
            await SQLAlchemyStore(engine_a, schema=by_alembic.schema).migrate()
            assert await applied(engine_a, by_alembic.schema) == versions
            config_b = scratch_project(tmp_path / "b", by_relaybus)
            await asyncio.to_thread(command.upgrade, config_b, "head")
            assert await applied(engine_b, by_relaybus.schema) == versions
            # The metadata describes columns that exist.
            for table in metadata_for(schema=by_alembic.schema).tables.values():
                reflected = {c[0] for c in made_by_alembic[table.name]["columns"]}
                assert {c.name for c in table.columns} <= reflected, table.name
        finally:
            await engine_a.dispose()
            await engine_b.dispose()


def _user_metadata(schema: str | None) -> MetaData:
    metadata = MetaData(schema=schema)
    Table(
        "customers",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("email", String(200), nullable=False),
    )
    Table("orders", metadata, Column("id", Integer, primary_key=True),
          Column("customer_id", Integer, ForeignKey("customers.id" if schema is None
                                                    else f"{schema}.customers.id")),
          Column("total", Integer, nullable=False))  # fmt: skip
    return metadata


def _diff(sync_conn: Any, metadata: MetaData, schema: str | None, include: Any) -> list[Any]:
    opts: dict[str, Any] = {"include_object": include}
    if schema is not None:
        opts["include_schemas"] = True
        opts["include_name"] = lambda name, type_, parent: type_ != "schema" or name == schema
    context = MigrationContext.configure(sync_conn, opts=opts)
    return list(compare_metadata(context, metadata))


def _tables_named(diff: list[Any]) -> set[str]:
    return {op[1].name for op in diff if op[0] in ("add_table", "remove_table")}


@pytest.mark.parametrize("variant", ONE_PER_DATABASE)
async def test_autogenerate_proposes_nothing_about_relaybus_tables(
    variant: str, tmp_path: Path
) -> None:
    async with empty_target(variant, tmp_path) as target:
        engine = create_async_engine(target.url, poolclass=NullPool)
        try:
            await SQLAlchemyStore(engine, schema=target.schema).migrate()
            user = _user_metadata(target.schema)
            async with engine.begin() as conn:
                await conn.run_sync(user.create_all)
                # Without the filter autogenerate would drop relaybus's tables: the test can fail.
                unfiltered = await conn.run_sync(_diff, user, target.schema, None)
                assert _tables_named(unfiltered) == set(table_names())
                # With it: no change at all, whether or not relaybus's metadata is included.
                assert await conn.run_sync(_diff, user, target.schema, include_object) == []
                both = _user_metadata(target.schema)
                for table in metadata_for(schema=target.schema).tables.values():
                    table.to_metadata(both)
                assert await conn.run_sync(_diff, both, target.schema, include_object) == []
                # A new user table is still proposed.
                Table("refunds", user, Column("id", Integer, primary_key=True))
                proposed = await conn.run_sync(_diff, user, target.schema, include_object)
                assert _tables_named(proposed) == {"refunds"}
        finally:
            await engine.dispose()


def test_include_object_for_another_prefix_leaves_out_only_its_tables() -> None:
    include = include_object_for("jobs_")
    metadata = metadata_for(prefix="jobs_")
    for table in metadata.tables.values():
        assert not include(table, table.name, "table", False, None)
    reflected = Table("jobs_jobs", MetaData())  # reflected: no tag, recognised by name
    assert not include(reflected, "jobs_jobs", "table", True, None)
    assert include(Table("orders", MetaData()), "orders", "table", True, None)
