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
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from ..stores._sql.executor import Tx
from ..stores._sql.migrator import migrate
from ..stores.registry import for_sqlalchemy
from ..stores.sqlalchemy.executor import PARAMSTYLES, driver_error
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
    tx = _SyncTx(bind, dialect)
    now = dialect.encode_time(datetime.now(UTC))
    _drive(dialect.on_migrate(tx))
    return _drive(migrate(tx, dialect, now, _logger, upto=version))  # type: ignore[no-any-return]


class _SyncTx:
    """A :class:`~relaybus.stores._sql.executor.Tx` over a sync ``Connection``: its methods
    never suspend, so :func:`_drive` runs the migrator to its end synchronously."""

    def __init__(self, bind: Connection, dialect: Any) -> None:
        self._bind = bind
        self._dialect = dialect
        self._positional = dialect.paramstyle in ("numeric", "qmark")

    def _run(self, name: str, args: Mapping[str, Any]) -> Any:
        q = self._dialect.queries[name]
        try:
            return self._bind.exec_driver_sql(
                q.sql, q.positional(args) if self._positional else dict(args)
            )
        except sa_exc.DBAPIError as exc:
            raise driver_error(exc) from None

    async def fetch(self, name: str, args: Mapping[str, Any]) -> list[Any]:
        result = self._run(name, args)
        return list(result.fetchall()) if result.returns_rows else []

    async def fetchrow(self, name: str, args: Mapping[str, Any]) -> Any | None:
        result = self._run(name, args)
        return result.first() if result.returns_rows else None

    async def execute(self, name: str, args: Mapping[str, Any]) -> int:
        return int(self._run(name, args).rowcount)

    async def executemany(
        self, name: str, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        raise NotImplementedError("migrations run no executemany")

    async def script(self, sql: str) -> None:
        for statement in self._dialect.statements(sql):
            try:
                self._bind.exec_driver_sql(statement)
            except sa_exc.DBAPIError as exc:
                raise driver_error(exc) from None

    def transaction(self) -> Any:
        raise NotImplementedError("Alembic owns the transaction")


def _drive(coro: Any) -> Any:
    """Run a coroutine that never suspends to its end."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("a relaybus migration step awaited something other than its Tx")


def _check(tx: _SyncTx) -> Tx:
    return tx  # _SyncTx is a Tx (checked by mypy)
