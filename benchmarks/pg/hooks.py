"""Where a system's job handler reports a job it ran (set by the client process).

Handlers must be importable module-level objects for some systems (Chancy resolves a function by
its import path), so they call :func:`job_ran` here instead of closing over the client.
"""

from __future__ import annotations

from collections.abc import Callable

_callback: Callable[[int, float], None] | None = None


def set_callback(callback: Callable[[int, float], None] | None) -> None:
    global _callback
    _callback = callback


def job_ran(i: int, t: float) -> None:
    """Called at the start of every benchmark job with its payload (index, enqueue time)."""
    if _callback is not None:
        _callback(i, t)
