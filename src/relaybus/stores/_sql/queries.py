"""Named SQL queries and numbered migrations, loaded from ``.sql`` files shipped in a package.

A query file holds blocks that start with ``-- name: query_name``; everything up to the next such
line is the query (``-- fragment:`` blocks are text that queries share, see
:func:`parse_queries`). Every dialect names the same operation with the same query name and writes
its binds as ``:name``; :func:`compile_query` turns them once, at load time, into the client
library's placeholder style. The only text substituted into SQL is the table prefix (and schema),
at the explicit markers ``/*prefix*/`` (and ``/*schema*/``), after validation as an identifier;
every value is a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from ..._validate import check_identifier

__all__ = [
    "Paramstyle",
    "Query",
    "compile_query",
    "load_migrations",
    "load_queries",
    "parse_queries",
    "render",
]

_NAME_LINE = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_FRAGMENT = re.compile(r"/\*fragment:([a-z_][a-z0-9_]*)\*/")
_FRAGMENT_DEPTH = 5
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: ``named``: ``:name`` kept; ``qmark``: ``?`` per occurrence (sqlite3: bound from a tuple,
#: cheaper than by name); ``numeric``: ``$1`` (asyncpg); ``pyformat``: ``%(name)s``
#: (PyMySQL-style drivers).
Paramstyle = Literal["named", "qmark", "numeric", "pyformat"]


@dataclass(frozen=True, slots=True)
class Query:
    """One compiled query: its SQL in the driver's style and its binds in placeholder order
    (for ``qmark``, one entry per placeholder: a name used twice appears twice)."""

    name: str
    sql: str
    binds: tuple[str, ...]

    def positional(self, args: Mapping[str, Any]) -> tuple[Any, ...]:
        """The values of ``args`` in placeholder order (``numeric`` style)."""
        try:
            return tuple([args[name] for name in self.binds])
        except KeyError as exc:
            raise KeyError(f"query {self.name!r} needs the bind {exc.args[0]!r}") from None


def render(sql: str, *, prefix: str, schema: str | None = None) -> str:
    """Put the validated ``prefix`` (and ``schema``) at their markers."""
    check_identifier("table prefix", prefix, allow_empty=True)
    sql = sql.replace("/*prefix*/", prefix)
    if schema is not None:
        check_identifier("schema", schema)
        sql = sql.replace("/*schema*/", schema)
    return sql


def _skip(sql: str, i: int) -> int:
    """If a string literal, quoted identifier or comment starts at ``i``, the index after it."""
    c = sql[i]
    if c in "'\"":
        j = i + 1
        while j < len(sql):
            if sql[j] == c:
                if j + 1 < len(sql) and sql[j + 1] == c:  # doubled quote: an escaped one
                    j += 2
                    continue
                return j + 1
            j += 1
        return len(sql)
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    return i


def compile_query(name: str, sql: str, style: Paramstyle) -> Query:
    """Turn the ``:name`` binds of ``sql`` into ``style`` (``::type`` casts are left alone)."""
    out: list[str] = []
    binds: list[str] = []
    i = 0
    start = 0
    while i < len(sql):
        after = _skip(sql, i)
        if after != i:
            i = after
            continue
        if sql[i] == ":" and (i == 0 or sql[i - 1] != ":") and not sql.startswith("::", i):
            match = _IDENT.match(sql, i + 1)
            if match is not None:
                bind = match.group(0)
                out.append(sql[start:i])
                if style == "named":
                    out.append(":" + bind)
                    if bind not in binds:
                        binds.append(bind)
                elif style == "qmark":
                    out.append("?")
                    binds.append(bind)
                elif style == "numeric":
                    if bind not in binds:
                        binds.append(bind)
                    out.append(f"${binds.index(bind) + 1}")
                else:
                    out.append(f"%({bind})s")
                    if bind not in binds:
                        binds.append(bind)
                i = start = match.end()
                continue
        i += 1
    out.append(sql[start:])
    return Query(name, "".join(out), tuple(binds))


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name:`` blocks into {name: sql}.

    A ``-- fragment: part`` block is not a query: it is text that queries of the same file
    share, put in at a ``/*fragment:part*/`` marker (one statement's CTE used by two queries;
    a fragment may hold markers of other fragments).
    """
    matches = list(_NAME_LINE.finditer(text))
    queries: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        kind, name = match.group(1), match.group(2)
        found = queries if kind == "name" else fragments
        if name in queries or name in fragments:
            raise ValueError(f"query {name!r} is defined twice")
        found[name] = body

    def fragment(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fragments:
            raise ValueError(f"unknown fragment {name!r}")
        return fragments[name]

    def expand(sql: str) -> str:
        for _ in range(_FRAGMENT_DEPTH):
            if _FRAGMENT.search(sql) is None:
                return sql
            sql = _FRAGMENT.sub(fragment, sql)
        raise ValueError("fragments nested too deep (a fragment that includes itself?)")

    return {name: expand(sql) for name, sql in queries.items()}


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
