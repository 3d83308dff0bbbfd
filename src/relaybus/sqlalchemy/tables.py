"""relaybus's tables as SQLAlchemy ``Table`` metadata, for ORM queries and for Alembic.

The schema itself is the dialects' migrations (``relaybus migrate``, or the Alembic revisions
in ``versions/``, which run the same SQL); this metadata only describes it: the columns every
database has, with types that read back as Python values (times as aware UTC datetimes, meta
and errors as JSON). Each table carries ``info={"relaybus": True}``, so tools can recognise it
(:func:`~relaybus.sqlalchemy.alembic.include_object` keeps Alembic's autogenerate away).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

from .._validate import check_identifier
from ..stores.registry import for_sqlalchemy

__all__ = ["TABLES", "RelaybusTime", "metadata_for", "table_names"]

#: The tables of every database, without the prefix.
TABLES = ("migrations", "jobs", "nodes", "leader", "queue_pauses")
#: The tag every relaybus table carries in ``Table.info``.
TAG = "relaybus"


class RelaybusTime(TypeDecorator[datetime]):
    """A stored time as the database's relaybus dialect keeps it (PostgreSQL ``timestamptz``,
    MySQL ``DATETIME(6)`` in UTC, SQLite epoch seconds), read back as an aware UTC datetime
    with that dialect's own time codec."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Float())
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def _codec(self, dialect: Dialect) -> Any:
        kind = for_sqlalchemy(dialect.name)
        if kind is None:
            raise ValueError(f"relaybus has no dialect for {dialect.name}")
        # The time codec reads no state: the dialect without its queries loaded.
        return object.__new__(kind.load_dialect())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        return None if value is None else self._codec(dialect).encode_time(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        decoded: datetime = self._codec(dialect).decode_time(value)
        return decoded


def table_names(prefix: str = "relaybus_") -> list[str]:
    """The names of relaybus's tables for ``prefix``."""
    check_identifier("table prefix", prefix, allow_empty=True)
    return [prefix + name for name in TABLES]


def metadata_for(prefix: str = "relaybus_", schema: str | None = None) -> MetaData:
    """A new ``MetaData`` holding relaybus's tables for ``prefix`` (and PostgreSQL
    ``schema``), each tagged ``info={"relaybus": True}``. Describes what the migrations make;
    never ``create_all`` it (run ``relaybus migrate`` or the Alembic revisions)."""
    check_identifier("table prefix", prefix, allow_empty=True)
    if schema is not None:
        check_identifier("schema", schema)
    metadata = MetaData(schema=schema, info={TAG: True})
    info = {TAG: True}
    json = JSON().with_variant(JSONB(), "postgresql")
    Table(
        prefix + "migrations",
        metadata,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("name", String(128), nullable=False),
        Column("applied_at", RelaybusTime(), nullable=False),
        info=info,
    )
    Table(
        prefix + "jobs",
        metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("state", String(16), nullable=False),
        Column("queue", String(128), nullable=False),
        Column("priority", SmallInteger, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("max_attempts", Integer, nullable=False),
        Column("rescues", Integer, nullable=False),
        Column("unique_states", Integer, nullable=False),
        Column("inserted_at", RelaybusTime(), nullable=False),
        Column("scheduled_at", RelaybusTime(), nullable=False),
        Column("attempted_at", RelaybusTime()),
        Column("finalized_at", RelaybusTime()),
        Column("timeout", Float),
        Column("handler", String(255), nullable=False),
        Column("event", String(1024), nullable=False),
        Column("attempted_by", String(255)),
        Column("unique_key", LargeBinary),
        Column("payload", Text, nullable=False),
        Column("meta", json, nullable=False),
        Column("errors", json, nullable=False),
        info=info,
    )
    Table(
        prefix + "nodes",
        metadata,
        Column("node", String(255), primary_key=True),
        Column("expires_at", RelaybusTime(), nullable=False),
        info=info,
    )
    Table(
        prefix + "leader",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("node", String(255), nullable=False),
        Column("expires_at", RelaybusTime(), nullable=False),
        info=info,
    )
    Table(
        prefix + "queue_pauses", metadata,
        Column("queue", String(128), primary_key=True),
        Column("paused_at", RelaybusTime(), nullable=False),
        info=info,
    )  # fmt: skip
    return metadata
