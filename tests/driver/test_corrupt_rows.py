"""Rows corrupted outside relaybus (hand-edited, another tool's bug) never block a queue or
break a listing: a claimed job carries what did not decode (``Claimed.problem``, which the
runtime records as that job's ``decode_error``), its neighbours are claimed as usual, and the
admin API shows what it can."""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg
import pytest

from relaybus._driver import ListParams
from relaybus.stores.memory import MemoryStore
from relaybus.stores.sqlite import SQLiteStore
from tests.stores import PG_DSN

from ._support import claim, insert, new_job

DEEP = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000


def _database(store: Any) -> tuple[str, Any]:
    """Which database holds ``store``'s rows, and where (a SQLAlchemyStore: its engine's)."""
    if isinstance(store, MemoryStore):
        return "memory", store
    if isinstance(store, SQLiteStore):
        return "sqlite", store.path
    if type(store).__name__ == "MySQLStore":
        return "mysql", store._executor.dsn
    if type(store).__name__ == "SQLAlchemyStore":
        from tests.stores import mysql_dsn_for

        url = store.engine.url
        if store.dialect.name == "sqlite":
            return "sqlite", url.database
        if store.dialect.name == "mysql":
            return "mysql", mysql_dsn_for(url.database)
    return "postgres", store.schema


async def corrupt(store: Any, job_id: int, column: str, value: str | bytes) -> None:
    """Overwrite one stored column of a job, bypassing relaybus."""
    database, where = _database(store)
    if database == "memory":
        row = store._jobs[job_id]
        setattr(row, column, value.encode() if isinstance(value, str) else value)
    elif database == "sqlite":
        conn = sqlite3.connect(where)
        try:
            conn.execute(
                f"UPDATE relaybus_jobs SET {column} = CAST(? AS TEXT) WHERE id = ?",
                (value, job_id),
            )
            conn.commit()
        finally:
            conn.close()
    elif database == "mysql":
        from tests.stores import mysql_admin, mysql_sql

        admin = await mysql_admin(where)
        try:
            await mysql_sql(
                admin, f"UPDATE relaybus_jobs SET {column} = %s WHERE id = %s", (value, job_id)
            )
        finally:
            admin.close()
    else:
        conn = await asyncpg.connect(PG_DSN)
        try:
            cast = "jsonb" if column in ("meta", "errors") else "text"
            await conn.execute(
                f'UPDATE "{where}".relaybus_jobs SET {column} = $1::text::{cast} WHERE id = $2',
                value,
                job_id,
            )
        finally:
            await conn.close()


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ("[1, 2]", "meta is a JSON array, not an object"),
        ('"text"', "meta is a JSON string, not an object"),
        (DEEP_OBJECT, "meta does not decode"),
    ],
)
async def test_a_claim_with_undecodable_meta_carries_the_problem(
    store: Any, meta: str, problem: str
) -> None:
    good, bad, after = await insert(store, new_job(), new_job(), new_job())
    await corrupt(store, bad, "meta", meta)
    claimed = await claim(store, limit=10)
    assert [c.id for c in claimed] == [good, bad, after]  # neighbours are claimed as usual
    by_id = {c.id: c for c in claimed}
    assert by_id[good].problem is None and by_id[after].problem is None
    assert by_id[bad].problem is not None and by_id[bad].problem.startswith(problem)
    assert by_id[bad].meta == {}


async def test_admin_records_show_undecodable_fields_without_failing(store: Any) -> None:
    good, bad = await insert(store, new_job({"ok": 1}), new_job())
    await corrupt(store, bad, "payload", DEEP)
    await corrupt(store, bad, "meta", DEEP_OBJECT)
    got = await store.get(bad)
    assert got is not None
    assert got.payload == DEEP  # shown as the stored text: it does not decode
    assert got.meta == {}
    listed = await store.list(ListParams())
    assert [j.id for j in listed] == [good, bad]
    assert listed[0].payload == {"ok": 1}


async def test_sqlite_text_that_is_not_utf8_never_fails_a_fetch(tmp_path: Any) -> None:
    from relaybus.testing import FakeClock

    store = SQLiteStore(tmp_path / "jobs.db", clock=FakeClock())
    await store.open()
    try:
        good, bad = await insert(store, new_job(), new_job())
        await corrupt(store, bad, "handler", b"\xff\xfe")
        await corrupt(store, bad, "event", b"ev\xff")
        claimed = await claim(store, limit=10)
        assert [c.id for c in claimed] == [good, bad]
        problem = claimed[1].problem
        assert problem == "the handler column is not UTF-8 text; the event column is not UTF-8 text"
        assert claimed[1].handler == "\ufffd\ufffd"
        listed = await store.list(ListParams())
        assert [j.id for j in listed] == [good, bad]
    finally:
        await store.close()
