"""Named SQL queries loaded from ``.sql`` files shipped in the package.

A file holds blocks that start with ``-- name: query_name``; everything up to the next such line
is the query. The only text substituted into SQL is the table prefix (and schema), at the explicit
marker ``/*prefix*/`` (and ``/*schema*/``), after validation as an identifier; every value is a
bound parameter.
"""

from __future__ import annotations

import re
from importlib import resources

from ._validate import check_identifier

__all__ = ["load_queries", "load_migrations", "render"]

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def render(sql: str, *, prefix: str, schema: str | None = None) -> str:
    """Put the validated ``prefix`` (and ``schema``) at their markers."""
    check_identifier("table prefix", prefix, allow_empty=True)
    sql = sql.replace("/*prefix*/", prefix)
    if schema is not None:
        check_identifier("schema", schema)
        sql = sql.replace("/*schema*/", schema)
    return sql


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name:`` blocks into {name: sql}."""
    matches = list(_NAME_LINE.finditer(text))
    queries: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        name = match.group(1)
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body
    return queries


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """The named queries of ``package``'s ``filename`` (raw, before ``render``)."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return parse_queries(text)


def load_migrations(package: str) -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` for every ``migrations/NNNN_name.sql`` of ``package``, in order."""
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)
