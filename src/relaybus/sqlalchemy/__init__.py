"""relaybus for SQLAlchemy users (the ``sqlalchemy`` extra): the tables as ``Table`` metadata
and Alembic support. The store itself is ``relaybus.SQLAlchemyStore``."""

from .alembic import BRANCH, include_object, include_object_for, upgrade, version_location
from .sqlite import sqlite_transactions
from .tables import TABLES, RelaybusTime, metadata_for, table_names

__all__ = [
    "BRANCH",
    "TABLES",
    "RelaybusTime",
    "include_object",
    "include_object_for",
    "metadata_for",
    "sqlite_transactions",
    "table_names",
    "upgrade",
    "version_location",
]
