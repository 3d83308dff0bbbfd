"""The one registry of stores: which exist, where they live, which DSNs they take.

Read by the ``relaybus`` command (DSNs, dialects), by the lazy imports of ``relaybus`` (the
database stores load their client library only when used) and by the tests (every entry has a
test factory). Adding a database is a new dialect folder under ``stores/`` plus one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SQLITE_SUFFIXES", "STORES", "StoreKind", "by_class_name", "by_name", "for_dsn",
    "for_sqlalchemy", "sql_stores",
]


@dataclass(frozen=True, slots=True)
class StoreKind:
    #: The store's name; for SQL stores also the dialect's (``relaybus sql --dialect NAME``).
    name: str
    #: The class, exported by ``relaybus`` under this name.
    class_name: str
    #: The package holding the class (and, for SQL stores, ``queries.sql`` and ``migrations/``).
    package: str
    #: URL schemes of the DSNs it takes (``relaybus migrate --dsn``); none: no DSN.
    schemes: tuple[str, ...] = ()
    #: The pip extra that installs its client library.
    extra: str | None = None
    #: ``module:Class`` of its SQL dialect; None for a store without SQL.
    dialect: str | None = None
    #: Whether its tables live in a named schema (PostgreSQL's ``schema=``).
    has_schema: bool = False
    #: SQLAlchemy's names for the database (``engine.dialect.name``): SQLAlchemyStore runs this
    #: dialect's queries on such engines.
    sqlalchemy_names: tuple[str, ...] = ()

    def load(self) -> type[Any]:
        """The store class (imports its client library)."""
        return getattr(importlib.import_module(self.package), self.class_name)  # type: ignore[no-any-return]

    def load_dialect(self) -> type[Any]:
        if self.dialect is None:
            raise ValueError(f"the {self.name} store has no SQL dialect")
        module, _, name = self.dialect.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


STORES: tuple[StoreKind, ...] = (
    StoreKind("memory", "MemoryStore", "relaybus.stores.memory"),
    StoreKind(
        "sqlite", "SQLiteStore", "relaybus.stores.sqlite", ("sqlite",), "sqlite",
        "relaybus.stores.sqlite.dialect:SQLiteDialect", sqlalchemy_names=("sqlite",),
    ),
    StoreKind(
        "postgres", "PostgresStore", "relaybus.stores.postgres", ("postgres", "postgresql"),
        "postgres", "relaybus.stores.postgres.dialect:PostgresDialect", has_schema=True,
        sqlalchemy_names=("postgresql",),
    ),
    StoreKind(
        "mysql", "MySQLStore", "relaybus.stores.mysql", ("mysql", "mariadb"), "mysql",
        "relaybus.stores.mysql.dialect:MySQLDialect", sqlalchemy_names=("mysql", "mariadb"),
    ),
    # Not a database: an executor over the dialects above (their ``sqlalchemy_names``).
    StoreKind(
        "sqlalchemy", "SQLAlchemyStore", "relaybus.stores.sqlalchemy",
        ("postgresql+asyncpg", "postgresql+psycopg", "mysql+asyncmy", "mysql+aiomysql",
         "mariadb+asyncmy", "mariadb+aiomysql", "sqlite+aiosqlite"),
        "sqlalchemy",
    ),
)  # fmt: skip


def by_name(name: str) -> StoreKind | None:
    return next((kind for kind in STORES if kind.name == name), None)


def by_class_name(class_name: str) -> StoreKind | None:
    return next((kind for kind in STORES if kind.class_name == class_name), None)


def for_sqlalchemy(name: str) -> StoreKind | None:
    """The SQL store whose dialect serves SQLAlchemy's database ``name``."""
    return next((kind for kind in STORES if name in kind.sqlalchemy_names), None)


def sql_stores() -> list[StoreKind]:
    return [kind for kind in STORES if kind.dialect is not None]


#: A DSN without a scheme is taken as a SQLite file only when it clearly names one.
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def for_dsn(dsn: str) -> StoreKind | None:
    """The store for ``dsn`` by its URL scheme. A DSN without one is a SQLite file only when
    it ends in ``.db``, ``.sqlite`` or ``.sqlite3`` (``newcomer`` is a mistake, not a file)."""
    scheme, sep, _ = dsn.partition("://")
    if not sep:
        return by_name("sqlite") if dsn.lower().endswith(SQLITE_SUFFIXES) else None
    return next((kind for kind in STORES if scheme.lower() in kind.schemes), None)
