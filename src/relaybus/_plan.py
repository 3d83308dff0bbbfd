"""Dispatch plans: what one dispatch of an event class does, and how its job rows are built.

A :class:`Plan` is cached per event class by the Bus (in ``Registry.plans``, emptied on every
registration). Everything the jobs of one handler share is computed once, in its
:class:`JobTemplate`; a dispatch call's options are checked once, into :class:`JobOptions`;
:func:`build_jobs` then makes one ``NewJob`` per job handler, with no other allocation or call
per job (``Bus._insert_jobs`` is a hot path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ._driver import Inserted, NewJob
from ._errors import ConfigurationError, EventError, PayloadTooLarge
from ._handlers import AsyncHandler, InlineSpec, JobSpec, Registry, check_priority
from ._lifecycle import LIFECYCLE_CLASSES
from ._options import Unique
from ._types import DispatchResult, InsertResult, Job, JobState
from ._validate import check_name, optional_seconds

__all__ = [
    "DispatchOptions", "JobOptions", "JobTemplate", "LifecyclePlanner", "Plan", "build_jobs",
    "check_options", "record_inserted",
]

_encode_meta = msgspec.json.Encoder().encode
_decode_payload = msgspec.json.decode
_EMPTY_META = b"{}"


class JobTemplate:
    """What every ``NewJob`` of one job handler shares, built once per plan."""

    __slots__ = (
        "mask", "max_attempts", "name", "period", "priority", "queue", "replace", "timeout",
        "unique",
    )  # fmt: skip

    def __init__(self, spec: JobSpec) -> None:
        unique = spec.unique
        self.name = spec.name
        self.queue = spec.queue
        self.priority = spec.priority
        self.max_attempts = spec.max_attempts
        self.timeout: float | None = spec.timeout
        self.unique: Unique | None = unique
        self.period: float | None = unique.period_seconds if unique is not None else None
        self.mask = unique.mask if unique is not None else 0
        self.replace: Mapping[JobState, tuple[str, ...]] = (
            spec.replace.as_map() if spec.replace is not None else {}
        )


@dataclass(frozen=True, slots=True)
class JobOptions:
    """The checked options of one dispatch call, shared by every job it builds."""

    meta: dict[str, Any]
    meta_json: bytes
    delay: float | None
    at: datetime | None
    priority: int | None
    queue: str | None
    max_bytes: int  # the bus's max_payload_bytes
    validate: bool = False  # the bus's validate: decode each payload once, as a worker would

    @classmethod
    def build(
        cls,
        meta: dict[str, Any],
        delay: float | None,
        at: datetime | None,
        priority: int | None,
        queue: str | None,
        max_bytes: int,
        validate: bool = False,
    ) -> JobOptions:
        return cls(meta, _meta_json(meta), delay, at, priority, queue, max_bytes, validate)


def _meta_json(meta: dict[str, Any]) -> bytes:
    """Dispatch meta as JSON, refused (ValueError) where some store could not keep it."""
    if not meta:
        return _EMPTY_META
    try:
        data = _encode_meta(meta)
    except RecursionError:
        raise ValueError("meta nests too deeply to be stored as JSON") from None
    if b"\\u0000" in data and _has_nul(meta):  # PostgreSQL's jsonb cannot hold NUL
        raise ValueError(
            "meta must not contain NUL characters (\\x00): PostgreSQL cannot store them"
        )
    return data


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


class Plan:
    """What one dispatch of an event class does; cached per class until the registry changes."""

    __slots__ = (
        "codec", "inline", "inline_only", "jobs", "result", "spare", "templates",
    )  # fmt: skip

    def __init__(self, registry: Registry, cls: type) -> None:
        self.codec = registry.codec(cls)
        self.inline: list[InlineSpec] = list(registry.inline.get(cls, ()))
        self.jobs: list[JobSpec] = list(registry.jobs.get(cls, ()))
        self.templates = [JobTemplate(spec) for spec in self.jobs]
        #: (name, call) of each inline handler when the class has no job handler
        #: (``Bus.dispatch``'s fast path), else ``None``.
        self.inline_only: tuple[tuple[str, AsyncHandler], ...] | None = (
            None if self.jobs else tuple((spec.name, spec.call) for spec in self.inline)
        )
        #: The bus's inline fast path keeps the Context and the DispatchResult of a finished
        #: dispatch here for the next one, when nothing else holds them (see ``Bus.dispatch``).
        self.spare: Any = None
        self.result: Any = None

    def too_large(self, payload: bytes, max_bytes: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"event {self.codec.name!r} encodes to {len(payload)} bytes, over the bus's "
            f"max_payload_bytes of {max_bytes}"
        )

    def check_decodes(self, payload: bytes) -> None:
        """``Bus(validate=True)``: the payload must decode into the event class, with the
        decoder a worker uses, or the dispatch fails now instead of every attempt later."""
        try:
            self.codec.decode(payload)
        except Exception as exc:
            raise EventError(
                f"event {self.codec.name!r} does not validate as "
                f"{self.codec.cls.__qualname__}: {exc}"
            ) from None


def build_jobs(
    events: list[Any], plans: list[Plan], options: JobOptions
) -> tuple[list[NewJob], list[int]]:
    """One ``NewJob`` per (event, job handler), in order, and the index of each one's event.

    Each payload is encoded once (and checked against ``options.max_bytes``) and, only for
    unique handlers, decoded once into builtins for the unique key; with ``options.validate``
    it is also decoded once into its event class (``Bus(validate=True)``). One loop, no call per
    event: this runs for every dispatched job.
    """
    queue, priority, delay, at = options.queue, options.priority, options.delay, options.at
    meta, meta_json, max_bytes = options.meta, options.meta_json, options.max_bytes
    validate = options.validate
    jobs: list[NewJob] = []
    owners: list[int] = []
    for index, (event, plan) in enumerate(zip(events, plans, strict=True)):
        if not plan.templates:
            continue
        try:
            payload = plan.codec.encode(event)
        except RecursionError:
            raise EventError(
                f"event {plan.codec.name!r} nests too deeply to be stored as JSON"
            ) from None
        if len(payload) > max_bytes:
            raise plan.too_large(payload, max_bytes)
        if validate:
            plan.check_decodes(payload)
        event_name = plan.codec.name
        decoded: Any = None  # the payload as builtins, for unique keys
        for t in plan.templates:
            job_queue = queue or t.queue
            key = None
            if t.unique is not None:
                if decoded is None:
                    decoded = _decode_payload(payload)
                key = t.unique.base_key(t.name, job_queue, decoded, meta)
            jobs.append(
                NewJob(
                    t.name,
                    event_name,
                    job_queue,
                    t.priority if priority is None else priority,
                    t.max_attempts,
                    payload,
                    meta_json,
                    t.timeout,
                    delay,
                    at,
                    key,
                    t.period,
                    t.mask,
                    t.replace,
                )
            )
            owners.append(index)
    return jobs, owners


#: Lifecycle events are built from job records the store already holds: the bus's
#: ``max_payload_bytes`` (a check on what users dispatch) does not apply to them.
_NO_LIMIT = 1 << 62


class LifecyclePlanner:
    """The :class:`~relaybus._driver.LifecycleJobs` of a ``Bus(lifecycle_events=True)``: the
    jobs of the handlers registered for a lifecycle event, planned like any dispatch (the bus's
    cached :class:`Plan`, so handlers registered later count) with no meta and no options. The
    store calls it inside the transaction of the state change; it holds no reference to the
    store and the store none to the bus."""

    __slots__ = ("_logger", "_options", "_plan")

    def __init__(self, plan: Callable[[type], Plan], logger: logging.Logger) -> None:
        self._plan = plan
        self._logger = logger
        self._options = JobOptions.build({}, None, None, None, None, _NO_LIMIT)

    def jobs_for(self, event: str, job: Job) -> list[NewJob]:
        cls = LIFECYCLE_CLASSES.get(event)
        if cls is None:
            return []
        try:
            plan = self._plan(cls)
            if not plan.templates:
                return []
            new_jobs, _ = build_jobs([cls(job)], [plan], self._options)
        except Exception:  # never block the state change: say so, loudly
            self._logger.exception(
                "job %s: its %s lifecycle event could not be built; it raises no jobs",
                job.id,
                event,
            )
            return []
        return new_jobs


class DispatchOptions:
    """The :class:`JobOptions` of each dispatch: those of a dispatch without options are built
    once (they are immutable) while the bus's payload limit and ``validate`` stay the same."""

    __slots__ = ("_plain",)

    def __init__(self) -> None:
        self._plain: JobOptions | None = None

    def of(
        self,
        meta: dict[str, Any],
        delay: float | None,
        at: datetime | None,
        priority: int | None,
        queue: str | None,
        max_bytes: int,
        validate: bool,
    ) -> JobOptions:
        if meta or delay is not None or at is not None or priority is not None or queue:
            return JobOptions.build(meta, delay, at, priority, queue, max_bytes, validate)
        plain = self._plain
        if plain is None or plain.max_bytes != max_bytes or plain.validate != validate:
            plain = self._plain = JobOptions.build(
                {}, None, None, None, None, max_bytes, validate
            )
        return plain


def check_options(
    meta: object,
    delay: float | timedelta | None,
    at: datetime | None,
    priority: int | None,
    queue: str | None,
) -> float | None:
    """Check a dispatch call's options; the delay in seconds."""
    delay_s = optional_seconds("delay", delay)
    if at is not None and (not isinstance(at, datetime) or at.tzinfo is None):
        raise ConfigurationError("at= must be a timezone-aware datetime")
    if priority is not None:
        check_priority(priority)
    if queue is not None:
        check_name("queue", queue)
    if not isinstance(meta, dict):
        raise ConfigurationError("meta must be a dict")
    return delay_s


def record_inserted(
    results: list[DispatchResult],
    owners: list[int],
    new_jobs: list[NewJob],
    inserted: Sequence[Inserted],
) -> set[str]:
    """Add each insert's outcome to its event's result; the queues that got a runnable job."""
    woken: set[str] = set()
    for index, row, new in zip(owners, inserted, new_jobs, strict=True):
        outcome = row.outcome
        results[index].jobs.append(InsertResult(row.id, new.handler, outcome))
        if outcome != "duplicate":
            woken.add(new.queue)
    return woken
