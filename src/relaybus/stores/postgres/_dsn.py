"""DSN helpers: never show a password."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["mask_dsn", "mask_text"]

_PASSWORD_PARAM = re.compile(r"(?i)(password\s*=\s*)('[^']*'|[^&\s]*)")


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


def mask_text(text: str, dsn: str | None) -> str:
    """``text`` with the password of ``dsn`` (if any) replaced, wherever it appears."""
    if not dsn:
        return text
    try:
        password = urlsplit(dsn).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    return _PASSWORD_PARAM.sub(r"\1***", text)
