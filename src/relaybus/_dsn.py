"""DSN helpers, for every store and the command: never show a password."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

__all__ = ["dsn_password", "mask_dsn", "mask_text"]

_PASSWORD_PARAM = re.compile(r"(?i)(password\s*=\s*)('[^']*'|[^&\s]*)")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@)")


def dsn_password(dsn: str | None) -> str | None:
    """The password a DSN carries (in its user info or a ``password=`` parameter), if any."""
    if not dsn:
        return None
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return None
    found = parts.password
    if not found:
        values = parse_qs(parts.query).get("password")
        found = values[-1] if values else None
    return unquote(found) if found else None


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password (in the user info or a ``password=`` parameter) as ``***``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<invalid DSN>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.partition(":")[0] + ":***"
        netloc = f"{userinfo}@{hosts}"
    masked = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return _PASSWORD_PARAM.sub(r"\1***", masked)


def mask_text(text: str, *dsns: str | None) -> str:
    """``text`` with every password of ``dsns``, and any password in a URL, as ``***``."""
    for dsn in dsns:
        password = dsn_password(dsn)
        if password:
            text = text.replace(password, "***")
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    return _PASSWORD_PARAM.sub(r"\1***", text)
