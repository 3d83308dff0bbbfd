"""Long string binds quoted here, not by the driver.

Neither driver has server-side binds: every value is quoted into the query text on the client.
Both quote strings with ``str.translate`` over a table, which is slow on long text: a batch's
one JSON bind (about 100 bytes per job) took 3.6 µs per job to quote in asyncmy, a seventh of a
whole batch insert. A few ``str.replace`` calls do the same in a fifth of the time, and leave
double quotes alone (a single-quoted literal needs no escape for them), so a JSON bind also
travels shorter. Short values are left to the driver.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["QUOTE_FROM", "inline_long_strings", "quote"]

#: Strings of at least this many characters are quoted here.
QUOTE_FROM = 512
#: The server status bit of sql_mode NO_BACKSLASH_ESCAPES (a caller's connection may set it).
_NO_BACKSLASH_ESCAPES = 512
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


#: What the server's lexer treats specially in a single-quoted literal, and its escape; the
#: backslash first, so that no escape written here is escaped again.
_ESCAPES = (
    ("\\", "\\\\"), ("'", "\\'"), ("\0", "\\0"), ("\n", "\\n"), ("\r", "\\r"),
    ("\x1a", "\\Z"),
)  # fmt: skip


def quote(value: str) -> str:
    """``value`` as a single-quoted MySQL string literal, for a session whose sql_mode lacks
    NO_BACKSLASH_ESCAPES: the characters in ``_ESCAPES`` are escaped, everything else is kept
    as it is."""
    for char, escaped in _ESCAPES:
        if char in value:
            value = value.replace(char, escaped)
    return f"'{value}'"


def inline_long_strings(
    sql: str, args: Mapping[str, Any], conn: Any
) -> tuple[str, Mapping[str, Any]]:
    """``sql`` (pyformat) with each long string bind written in as a literal, and the binds
    left for the driver. A literal's ``%`` is doubled: the driver still formats the query with
    the remaining binds (always a dict, possibly empty, so formatting always happens). Nothing
    changes when no bind is long, or when the session has NO_BACKSLASH_ESCAPES."""
    long = {k for k, v in args.items() if type(v) is str and len(v) >= QUOTE_FROM}
    if not long or getattr(conn, "server_status", 0) & _NO_BACKSLASH_ESCAPES:
        return sql, args
    literals = {key: quote(args[key]).replace("%", "%%") for key in long}

    def substitute(match: re.Match[str]) -> str:
        return literals.get(match.group(1), match.group(0))

    # One pass over the query text: a literal written in is never scanned for placeholders.
    rest = {k: v for k, v in args.items() if k not in long}
    return _PLACEHOLDER.sub(substitute, sql), rest
