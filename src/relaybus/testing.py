"""Test helpers for relaybus users: a fake clock and ``drain`` (run due jobs now, no sleeps)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from ._testing_drain import drain

__all__ = ["FakeClock", "drain"]


class FakeClock:
    """A clock that moves only when told. Give it to a store: ``MemoryStore(clock=clock)``.

    ``monotonic()`` follows the same fake time, so leases and deadlines move with ``advance``.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("FakeClock start must be timezone-aware")
        self._now = start.astimezone(UTC)
        self._origin = self._now
        self._base_monotonic = time.monotonic()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._base_monotonic + (self._now - self._origin).total_seconds()

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move time forward and return the new now."""
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if delta < timedelta(0):
            raise ValueError("a FakeClock only moves forward")
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FakeClock.set needs a timezone-aware datetime")
        if when < self._now:
            raise ValueError("a FakeClock only moves forward")
        self._now = when.astimezone(UTC)
