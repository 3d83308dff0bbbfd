"""Slot times of periodic schedules: ``Every`` (a fixed interval) and ``Cron`` (an expression).

A slot is a UTC instant that every node computes the same way from the schedule alone (never
from when a node started), so the (schedule name, slot) pair identifies one run everywhere.

- ``Every(interval)``: the instants ``k * interval`` seconds after the Unix epoch (UTC).
  ``every(3600)`` fires at the top of each UTC hour, ``every(60)`` at each minute.
- ``Cron(expr, tz)``: the instants matching a five-field cron expression in the time zone
  ``tz``, evaluated by cronsim with Debian cron's rules at daylight-saving changes: a time
  skipped by a spring-forward change runs once right after it; in a repeated hour a daily
  time (``30 1 * * *``) runs once, while a job every N minutes follows real time (both
  repeated hours).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._errors import ConfigurationError

__all__ = ["MIN_INTERVAL", "Cron", "Every", "Slots"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_INTERVAL = 0.1  # seconds: a shorter schedule would be a busy loop of inserts


class Slots(Protocol):
    """The slot times of one schedule (all UTC)."""

    def latest(self, now: datetime) -> datetime | None:
        """The latest slot at or before ``now``."""

    def after(self, when: datetime) -> Iterator[datetime]:
        """The slots strictly after ``when``, in order (an endless iterator)."""

    def describe(self) -> str: ...


class Every:
    """Every ``interval`` seconds, on multiples of the interval since the Unix epoch (UTC)."""

    __slots__ = ("interval",)

    def __init__(self, interval: float | timedelta) -> None:
        value = interval.total_seconds() if isinstance(interval, timedelta) else interval
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(
                f"every() takes seconds or a timedelta, not {type(interval).__name__}"
            )
        if not math.isfinite(value) or value < MIN_INTERVAL:
            raise ConfigurationError(
                f"every() needs an interval of at least {MIN_INTERVAL} seconds, not {value}"
            )
        self.interval = float(value)

    def _index(self, when: datetime) -> int:
        return math.floor((when - _EPOCH).total_seconds() / self.interval)

    def _at(self, index: int) -> datetime:
        return _EPOCH + timedelta(seconds=index * self.interval)

    def latest(self, now: datetime) -> datetime | None:
        return self._at(self._index(now))

    def after(self, when: datetime) -> Iterator[datetime]:
        index = self._index(when)
        if self._at(index) <= when:
            index += 1
        while True:
            yield self._at(index)
            index += 1

    def describe(self) -> str:
        return f"every {self.interval:g}s"


class Cron:
    """A five-field cron expression in a time zone (IANA name; default UTC)."""

    __slots__ = ("expr", "tz")

    def __init__(self, expr: str, tz: str | None = None) -> None:
        try:
            from cronsim import CronSim, CronSimError  # optional extra: relaybus[cron]
        except ImportError:  # pragma: no cover - the dev extra installs it
            raise ConfigurationError(
                'bus.cron() needs the cronsim package: pip install "relaybus[cron]"'
            ) from None
        if not isinstance(expr, str) or len(expr.split()) != 5:
            raise ConfigurationError(
                f"cron() takes a five-field expression like '*/5 * * * *', not {expr!r}"
            )
        try:
            self.tz = ZoneInfo(tz) if tz is not None else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigurationError(f"unknown time zone {tz!r} (use an IANA name)") from None
        try:
            CronSim(expr, datetime.now(self.tz))
        except CronSimError as exc:
            raise ConfigurationError(f"invalid cron expression {expr!r}: {exc}") from None
        self.expr = expr

    def _iter(self, when: datetime, reverse: bool = False) -> Iterator[datetime]:
        from cronsim import CronSim

        for slot in CronSim(self.expr, when.astimezone(self.tz), reverse=reverse):
            yield slot.astimezone(UTC)

    def latest(self, now: datetime) -> datetime | None:
        before = next(self._iter(now, reverse=True), None)  # strictly before now's minute
        if before is None:
            return None
        following = next(self._iter(before), None)
        return following if following is not None and following <= now else before

    def after(self, when: datetime) -> Iterator[datetime]:
        for slot in self._iter(when):
            if slot > when:
                yield slot

    def describe(self) -> str:
        return f"cron {self.expr!r} in {self.tz.key}"
