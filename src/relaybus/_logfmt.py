"""Log output of the ``relaybus`` command: readable text or one JSON object per line.

The runtime logs through the standard ``logging`` module; every record about a job carries
``job_id``, ``handler``, ``queue`` and ``attempt`` as ``extra`` fields (the runtime's own lines
also say them in the message; ``ctx.logger`` records carry them only as fields). Payloads are
never logged, and DSN passwords are masked by :func:`mask_text` in every line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from ._dsn import mask_dsn, mask_text

__all__ = ["JOB_FIELDS", "JSONFormatter", "TextFormatter", "mask_dsn", "mask_text", "setup"]

#: The ``extra`` fields of a record about one job run.
JOB_FIELDS = ("job_id", "handler", "queue", "attempt")

#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

class _Masking(logging.Formatter):
    def __init__(self, secrets: tuple[str | None, ...] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secrets = secrets

    def mask(self, text: str) -> str:
        return mask_text(text, *self.secrets)


class TextFormatter(_Masking):
    """``time level logger: message``; records from handler code (``ctx.logger``) get their
    job fields appended, ``[job 12 mail.receipt queue=mail attempt=1]``. ``brief``: the
    one-off commands' ``relaybus: warning: message``."""

    def __init__(self, secrets: tuple[str | None, ...] = (), *, brief: bool = False) -> None:
        fmt = (
            "relaybus: %(levelname)s: %(message)s" if brief
            else "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
        )
        super().__init__(secrets, fmt=fmt)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job_id = getattr(record, "job_id", None)
        if job_id is not None and not record.name.startswith("relaybus.worker"):
            first, newline, rest = text.partition("\n")
            first += (
                f" [job {job_id} {getattr(record, 'handler', '?')} "
                f"queue={getattr(record, 'queue', '?')} attempt={getattr(record, 'attempt', '?')}]"
            )
            text = first + newline + rest
        return self.mask(text)


class JSONFormatter(_Masking):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, every ``extra`` field (``job_id``, ``handler``, ``queue``, ``attempt``, ...)
    and ``exception`` (the traceback text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.mask(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            data[key] = value if isinstance(value, (int, float, bool, type(None))) else (
                self.mask(str(value))
            )
        if record.exc_info:
            data["exception"] = self.mask(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exception"] = self.mask(record.exc_text)
        if record.stack_info:
            data["stack"] = self.mask(self.formatStack(record.stack_info))
        return json.dumps(data, ensure_ascii=False, default=str)


def setup(
    fmt: str = "text",  # text | json | brief
    level: int | str = logging.INFO,
    *,
    secrets: tuple[str | None, ...] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the ``relaybus`` logs (and the root logger's, so the app's own lines look the
    same) to ``stream`` (stderr) in ``fmt`` (``text`` or ``json``) at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: logging.Formatter = (
        JSONFormatter(secrets) if fmt == "json"
        else TextFormatter(secrets, brief=fmt == "brief")
    )
    handler.setFormatter(formatter)
    handler.setLevel(level)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_relaybus_cli", False):
            root.removeHandler(old)
    handler._relaybus_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler
