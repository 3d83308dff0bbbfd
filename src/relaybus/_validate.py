"""Validation of names that reach storage: queues, handlers, events, table prefixes."""

from __future__ import annotations

import re
from datetime import timedelta

from ._errors import ConfigurationError

__all__ = [
    "check_identifier",
    "check_job_id",
    "check_name",
    "optional_seconds",
    "quoted",
    "seconds",
]

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def quoted(value: object, limit: int = 100) -> str:
    """``repr(value)`` cut to about ``limit`` characters: a bad value quoted in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_job_id(value: object) -> int:
    """A job id: an integer (not a bool); anything else is a TypeError, on every store."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a job id is an integer, not {quoted(value)}")
    return value


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid queue/handler/event name, else raise ConfigurationError."""
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise ConfigurationError(
            f"invalid {kind} name {quoted(value)}: use 1-128 characters of A-Z a-z 0-9 _ . : -"
        )
    return value


def check_identifier(kind: str, value: object, *, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a safe SQL identifier (or prefix), else raise."""
    if allow_empty and value == "":
        return ""
    if not isinstance(value, str) or _IDENTIFIER.fullmatch(value) is None:
        raise ConfigurationError(
            f"invalid {kind} {quoted(value)}: use a letter or _ followed by up to 39 letters, "
            "digits or _"
        )
    return value


def seconds(name: str, value: float | timedelta) -> float:
    """A duration in seconds from a number or timedelta; must be >= 0."""
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        raise ConfigurationError(f"{name} must be seconds or a timedelta, not {quoted(value)}")
    if result < 0:
        raise ConfigurationError(f"{name} must be >= 0, not {quoted(value)}")
    return result


def optional_seconds(name: str, value: float | timedelta | None) -> float | None:
    return None if value is None else seconds(name, value)
