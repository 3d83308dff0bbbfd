"""Alembic: relaybus's revisions (their own branch, ``relaybus``) and the autogenerate filter.

- ``version_locations = %(here)s/versions relaybus.sqlalchemy:versions`` in ``alembic.ini``
  adds relaybus's revisions, one per numbered relaybus migration (``relaybus_0001``, ...),
  on the branch label ``relaybus``. Each runs relaybus's own migrator for its number: the same
  SQL files as ``relaybus migrate``, under the same lock, recorded in relaybus's migrations
  table, so the two tools always agree on what is applied (either may run first).
- The prefix and the PostgreSQL schema come from ``config.attributes`` or the ``[alembic]``
  options ``relaybus_prefix`` / ``relaybus_schema`` (defaults ``relaybus_``, ``public``).
- :func:`include_object` (or :func:`include_object_for` another prefix) in ``env.py``'s
  ``context.configure(...)`` keeps autogenerate from dropping or re-creating relaybus's tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from ..stores._sql.migrator import migrate
from ..stores.registry import for_sqlalchemy
from ..stores.sqlalchemy.executor import PARAMSTYLES
from ..stores.sqlalchemy.tx import SyncTx, drive, multi_statement_queries
from .tables import TAG, table_names

__all__ = [
    "BRANCH",
    "include_object",
    "include_object_for",
    "revision_versions",
    "upgrade",
    "version_location",
]

#: The branch label of relaybus's revisions.
BRANCH = "relaybus"
_logger = logging.getLogger("relaybus.alembic")

IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]


def version_location() -> str:
    """The folder of relaybus's revisions (for ``version_locations`` set in code)."""
    return str(Path(__file__).with_name("versions"))


def revision_versions() -> list[int]:
    """The relaybus migration numbers that have a revision file."""
    return sorted(
        int(path.name.split("_")[1])
        for path in Path(version_location()).glob("relaybus_[0-9][0-9][0-9][0-9]_*.py")
    )


def include_object_for(prefix: str = "relaybus_") -> IncludeObject:
    """An ``include_object`` for ``context.configure`` leaving out relaybus's tables (tagged in
    the metadata, or reflected under ``prefix``) and everything on them."""
    names = frozenset(table_names(prefix))

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        if table is None:
            return True
        return not (table.info.get(TAG) or table.name in names)

    return include


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """:func:`include_object_for` the default prefix ``relaybus_``."""
    return include_object_for()(obj, name, type_, reflected, compare_to)


def upgrade(version: int) -> None:
    """Apply relaybus's migrations up to ``version`` on Alembic's connection (a revision's
    ``upgrade()``; online mode only: the migrator reads what is applied)."""
    from alembic import context, op

    config = context.config
    options: Mapping[str, Any] = config.attributes
    prefix = options.get("relaybus_prefix") or config.get_main_option("relaybus_prefix")
    schema = options.get("relaybus_schema") or config.get_main_option("relaybus_schema")
    apply(op.get_bind(), version, prefix=prefix or "relaybus_", schema=schema)


def apply(bind: Connection, version: int, *, prefix: str, schema: str | None) -> list[int]:
    """Apply relaybus's migrations up to ``version`` on ``bind`` (a sync connection inside a
    transaction, such as Alembic's); the versions applied."""
    kind = for_sqlalchemy(bind.dialect.name)
    paramstyle = PARAMSTYLES.get(bind.dialect.paramstyle)
    if kind is None or paramstyle is None:
        raise ValueError(f"relaybus has no dialect for {bind.dialect.name}")
    args: dict[str, Any] = {"prefix": prefix, "paramstyle": paramstyle}
    if kind.has_schema:
        args["schema"] = schema or "public"
    dialect = kind.load_dialect()(**args)
    tx = SyncTx(bind, dialect, multi_statement_queries(dialect))
    now = dialect.encode_time(datetime.now(UTC))
    drive(dialect.on_migrate(tx))
    return drive(migrate(tx, dialect, now, _logger, upto=version))
