"""Which bus (``--app``) or store (``--dsn``) a command works on, opened with short errors."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .._bus import Bus
from .._dsn import mask_dsn
from .._errors import StoreError
from ..stores import registry
from .common import ENV_APP, ENV_DSN, CLIError

__all__ = ["Target", "load_app", "opened", "store_for_dsn", "target_of"]


def _dsn_forms() -> str:
    schemes = [f"{k.schemes[-1]}://..." for k in registry.sql_stores() if k.name != "sqlite"]
    return ", ".join([*schemes, "sqlite:///path/to/jobs.db (or a file name ending in .db)"])


def store_for_dsn(dsn: str, *, prefix: str, schema: str | None) -> Any:
    """A store for ``dsn`` (through the store registry): postgresql://…, sqlite:///path, a
    file name ending in .db/.sqlite/.sqlite3; ``CLIError`` for anything else."""
    kind = registry.for_dsn(dsn)
    if kind is None:
        shown = mask_dsn(dsn)
        if "://" not in dsn:
            raise CLIError(
                f"{shown!r} is not a DSN (it has no scheme, and is not a file name ending in "
                f".db, .sqlite or .sqlite3): use {_dsn_forms()}"
            )
        raise CLIError(f"unsupported DSN {shown!r}: use {_dsn_forms()}")
    if schema is not None and not kind.has_schema:
        raise CLIError(f"--schema applies to PostgreSQL only: the {kind.name} store has no schemas")
    try:
        cls = kind.load()
    except ImportError as exc:
        extra = f' (pip install "relaybus[{kind.extra}]")' if kind.extra else ""
        raise CLIError(f"the {kind.name} store needs {exc.name or exc}{extra}") from None
    return cls.from_dsn(dsn, prefix=prefix, schema=schema)


def load_app(spec: str) -> Bus[Any]:
    """The Bus named by ``MODULE:ATTR`` (the module is imported from the current directory or
    ``sys.path``); ``CLIError`` with a short reason otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"--app takes MODULE:BUS, e.g. myapp.tasks:bus (got {spec!r})")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CLIError(
                f"cannot import {module_name!r} (from {spec!r}): no module named {exc.name!r}; "
                "run relaybus from the directory that holds it, or set PYTHONPATH"
            ) from None
        raise CLIError(f"importing {module_name!r} failed: {exc}") from None
    except (Exception, SystemExit) as exc:
        raise CLIError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Bus):
        raise CLIError(f"{spec!r} is a {type(obj).__name__}, not a relaybus.Bus")
    return obj


@dataclass
class Target:
    """The bus a command works on, and how to tell the user to migrate it."""

    bus: Bus[Any]
    app: str | None
    dsn: str | None
    prefix: str
    schema: str | None

    def migrate_command(self) -> str:
        store = self.bus.store
        where = f"--dsn '{mask_dsn(self.dsn)}'" if self.dsn else "--dsn DSN"
        if self.app and not self.dsn:
            where = f"--app {self.app}"
        parts = ["relaybus migrate", where]
        schema = self.schema or getattr(store, "schema", None)
        if schema and schema != "public":
            parts.append(f"--schema {schema}")
        prefix = getattr(store, "prefix", self.prefix)
        if prefix != "relaybus_":
            parts.append(f"--prefix {prefix}")
        return " ".join(parts)


def target_of(args: argparse.Namespace) -> Target:
    app = getattr(args, "app", None)
    dsn = getattr(args, "dsn", None)
    if app and dsn:
        raise CLIError("give --app or --dsn, not both")
    if not app and not dsn:
        app, dsn = os.environ.get(ENV_APP) or None, None
        if not app:
            dsn = os.environ.get(ENV_DSN) or None
    prefix = getattr(args, "prefix", "relaybus_")
    schema = getattr(args, "schema", None)
    if app:
        if schema is not None or prefix != "relaybus_":
            raise CLIError(
                "--schema and --prefix go with --dsn; with --app, the app's store decides"
            )
        return Target(load_app(app), app, None, prefix, None)
    if not dsn:
        raise CLIError(
            "where are the jobs? give --app MODULE:BUS or --dsn DSN "
            f"(or set {ENV_APP} / {ENV_DSN})"
        )
    store = store_for_dsn(dsn, prefix=prefix, schema=schema)
    return Target(Bus(store=store), None, dsn, prefix, schema)


def _missing_schema(store: Any, exc: BaseException) -> bool:
    kind_of = getattr(store, "kind_of", None)
    cause = exc.__cause__
    if kind_of is not None and cause is not None and kind_of(cause) == "missing_schema":
        return True
    return "tables are missing" in str(exc)


@contextlib.asynccontextmanager
async def opened(target: Target) -> AsyncIterator[Bus[Any]]:
    """The target's bus, open; store errors as short ``CLIError``s (passwords masked)."""
    bus = target.bus
    try:
        async with bus:
            yield bus
    except StoreError as exc:
        if _missing_schema(bus.store, exc):
            raise CLIError(
                f"the relaybus tables are missing in {bus.store!r}: run "
                f"`{target.migrate_command()}` first"
            ) from None
        raise CLIError(f"{exc}") from None
    except OSError as exc:
        raise CLIError(f"cannot reach the database of {bus.store!r}: {exc}") from None
