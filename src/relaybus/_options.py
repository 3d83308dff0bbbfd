"""Job options: backoff policies, unique constraints, replace-on-conflict, retention."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol

import msgspec

from ._errors import ConfigurationError
from ._types import PENDING_STATES, TRACE_META_KEY, JobState, state_mask
from ._validate import optional_seconds, quoted, seconds

__all__ = [
    "Backoff",
    "BackoffLike",
    "Constant",
    "Exponential",
    "Linear",
    "Replace",
    "ReplaceField",
    "Retention",
    "Unique",
    "resolve_backoff",
]


class Backoff(Protocol):
    """Seconds to wait before the next attempt after a failure at ``attempt`` (1-based)."""

    def __call__(self, attempt: int) -> float: ...


BackoffLike = Backoff | Callable[[int], float]


def _jittered(delay: float, jitter: float) -> float:
    if jitter:
        delay *= random.uniform(1.0 - jitter, 1.0 + jitter)
    return delay


def _check_jitter(jitter: float) -> None:
    if not 0.0 <= jitter < 1.0:
        raise ConfigurationError(f"jitter must be in [0, 1), not {quoted(jitter)}")


@dataclass(frozen=True, slots=True)
class Exponential:
    """``unit * 2**attempt`` seconds (default: 2**attempt minutes), capped at ``max``, jittered."""

    unit: float = 60.0
    max: float = 86400.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        _check_jitter(self.jitter)

    def __call__(self, attempt: int) -> float:
        raw = self.unit * 2.0 ** min(attempt, 64)
        return min(self.max, _jittered(min(raw, self.max), self.jitter))


@dataclass(frozen=True, slots=True)
class Constant:
    """The same delay after every failure."""

    seconds: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        _check_jitter(self.jitter)

    def __call__(self, attempt: int) -> float:
        return _jittered(self.seconds, self.jitter)


@dataclass(frozen=True, slots=True)
class Linear:
    """``seconds * attempt``, capped at ``max``."""

    seconds: float
    max: float = 86400.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        _check_jitter(self.jitter)

    def __call__(self, attempt: int) -> float:
        return min(self.max, _jittered(self.seconds * attempt, self.jitter))


def resolve_backoff(backoff: BackoffLike | None) -> Callable[[int], float]:
    if backoff is None:
        return Exponential()
    if not callable(backoff):
        raise ConfigurationError(
            f"backoff must be callable (attempt) -> seconds, not {quoted(backoff)}"
        )
    return backoff


UniqueBy = Literal["payload", "queue", "meta"]
_UNIQUE_BY = frozenset({"payload", "queue", "meta"})
_REQUIRED_STATES = frozenset({JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING})


@dataclass(frozen=True, slots=True)
class Unique:
    """At most one job per key in ``states``; the handler name is always part of the key.

    ``by`` adds the payload, queue and/or meta; ``keys``/``meta_keys`` restrict the payload/meta
    to those fields; ``period`` (seconds) adds the time bucket ``floor(now / period)``. The
    reserved meta key ``TRACE_META_KEY`` (trace context) is never part of a key.
    """

    by: tuple[UniqueBy, ...] = ("payload",)
    keys: tuple[str, ...] | None = None
    meta_keys: tuple[str, ...] | None = None
    period: float | timedelta | None = None
    states: frozenset[JobState] = PENDING_STATES

    def __post_init__(self) -> None:
        by = tuple(self.by)
        bad = set(by) - _UNIQUE_BY
        if bad:
            raise ConfigurationError(
                f"Unique(by=...) takes payload, queue, meta; not {sorted(bad)}"
            )
        object.__setattr__(self, "by", by)
        if self.keys is not None:
            object.__setattr__(self, "keys", tuple(self.keys))
        if self.meta_keys is not None:
            object.__setattr__(self, "meta_keys", tuple(self.meta_keys))
            if TRACE_META_KEY in self.meta_keys:
                raise ConfigurationError(
                    f"Unique(meta_keys=...) cannot name {TRACE_META_KEY!r}: it is reserved for "
                    "trace context, which unique keys always ignore"
                )
        period = optional_seconds("Unique period", self.period)
        if period is not None and period <= 0:
            raise ConfigurationError("Unique period must be > 0 (or None for forever)")
        object.__setattr__(self, "period", period)
        try:
            states = frozenset(JobState(s) for s in self.states)
        except ValueError as exc:
            raise ConfigurationError(f"Unique states: {exc}") from None
        missing = _REQUIRED_STATES - states
        if missing:
            names = ", ".join(sorted(s.value for s in missing))
            raise ConfigurationError(
                f"Unique states must include scheduled, available and running (missing: {names})"
            )
        object.__setattr__(self, "states", states)

    @property
    def period_seconds(self) -> float | None:
        return self.period  # type: ignore[return-value]  # normalised in __post_init__

    @property
    def mask(self) -> int:
        return state_mask(self.states)

    def base_key(
        self, handler: str, queue: str, payload: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> bytes:
        """The key without its time bucket: sha256 of canonical JSON of the chosen parts."""
        parts: dict[str, Any] = {"handler": handler}
        if "payload" in self.by:
            parts["payload"] = _subset(payload, self.keys)
        if "queue" in self.by:
            parts["queue"] = queue
        if "meta" in self.by:
            if self.meta_keys is None:
                parts["meta"] = {k: v for k, v in meta.items() if k != TRACE_META_KEY}
            else:
                parts["meta"] = _subset(meta, self.meta_keys)
        return hashlib.sha256(msgspec.json.encode(parts, order="sorted")).digest()


def _subset(values: Mapping[str, Any], keys: Iterable[str] | None) -> dict[str, Any]:
    if keys is None:
        return dict(values)
    return {k: values.get(k) for k in keys}


def bucket_key(base: bytes, period: float | None, epoch_seconds: float) -> bytes:
    """The final unique key: ``base``, or for a period, sha256(base || ":" || bucket)."""
    if period is None:
        return base
    bucket = int(epoch_seconds // period)
    return hashlib.sha256(base + b":" + str(bucket).encode()).digest()


ReplaceField = Literal["payload", "priority", "meta", "scheduled_at", "queue", "max_attempts"]
_REPLACE_FIELDS = frozenset(
    {"payload", "priority", "meta", "scheduled_at", "queue", "max_attempts"}
)


@dataclass(frozen=True, slots=True)
class Replace:
    """On a unique conflict with a job in a listed state, update the listed fields from the
    new insert (outcome ``"replaced"``). A running job is never modified."""

    available: tuple[ReplaceField, ...] = ()
    scheduled: tuple[ReplaceField, ...] = ()
    retryable: tuple[ReplaceField, ...] = ()

    def __post_init__(self) -> None:
        for name in ("available", "scheduled", "retryable"):
            fields = tuple(getattr(self, name))
            bad = set(fields) - _REPLACE_FIELDS
            if bad:
                raise ConfigurationError(
                    f"Replace({name}=...) fields must be among {sorted(_REPLACE_FIELDS)}, "
                    f"not {sorted(bad)}"
                )
            object.__setattr__(self, name, fields)

    def fields_for(self, state: JobState) -> tuple[str, ...]:
        if state is JobState.AVAILABLE:
            return self.available
        if state is JobState.SCHEDULED:
            return self.scheduled
        if state is JobState.RETRYABLE:
            return self.retryable
        return ()

    def as_map(self) -> dict[JobState, tuple[str, ...]]:
        result = {
            JobState.AVAILABLE: self.available,
            JobState.SCHEDULED: self.scheduled,
            JobState.RETRYABLE: self.retryable,
        }
        return {state: fields for state, fields in result.items() if fields}


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished jobs are kept before pruning (seconds or timedelta)."""

    completed: float | timedelta = 86400.0
    cancelled: float | timedelta = 604800.0
    discarded: float | timedelta = 604800.0

    def __post_init__(self) -> None:
        for name in ("completed", "cancelled", "discarded"):
            object.__setattr__(self, name, seconds(f"retention {name}", getattr(self, name)))

    def seconds_for(self, state: JobState) -> float:
        value = getattr(self, state.value)
        assert isinstance(value, float)
        return value
