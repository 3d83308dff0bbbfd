"""The dashboard's store queries stay fast on big tables: on SQLite, the capped counts and the
throughput buckets read the jobs table only through its partial indexes (never a full scan)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from relaybus.stores._sql.queries import load_queries, render
from relaybus.stores.sqlite import SQLiteStore

ARGS = {"cap": 10, "now": 0.0, "window": 3600.0, "buckets": 12}


@pytest.mark.parametrize("name", ["capped_stats", "finished_buckets"])
async def test_dashboard_queries_read_through_indexes(tmp_path: Path, name: str) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    await store.migrate()
    await store.close()
    sql = render(load_queries("relaybus.stores.sqlite")[name], prefix="relaybus_")
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, ARGS)]
    reads = [step for step in plan if "relaybus_jobs" in step]
    assert reads, plan
    assert all("USING" in step and "INDEX" in step for step in reads), plan
    if name == "capped_stats":  # one bounded read per state
        assert len(reads) == 7, plan
