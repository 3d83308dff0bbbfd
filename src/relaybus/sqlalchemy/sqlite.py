"""SQLite engines whose transactions and SAVEPOINTs work as on the other databases.

Python's sqlite3 (under pysqlite and aiosqlite) begins transactions by itself, only before
data changes: a SAVEPOINT opened first *starts* the transaction, and releasing it commits.
SQLAlchemy documents the remedy (its pysqlite notes, "Serializable isolation / Savepoints /
Transactional DDL"): switch sqlite3's handling off and let SQLAlchemy emit ``BEGIN``. Jobs
dispatched with ``conn=`` inside a session need it, so that a rollback undoes them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["sqlite_transactions"]


def sqlite_transactions(engine: AsyncEngine) -> AsyncEngine:
    """Install SQLAlchemy's recipe on a SQLite ``engine`` (returned for chaining);
    connections in ``AUTOCOMMIT`` (SQLAlchemyStore's own) get no ``BEGIN``."""
    if engine.dialect.name != "sqlite":
        raise ValueError(f"sqlite_transactions is for SQLite engines, not {engine.dialect.name}")

    def connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    def begin(conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN")

    event.listen(engine.sync_engine, "connect", connect)
    event.listen(engine.sync_engine, "begin", begin)
    return engine
