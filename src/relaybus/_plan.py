"""Dispatch plans: what one dispatch of an event class does, and how its job rows are built.

A :class:`Plan` is cached per event class (and registry version) by the Bus. Everything the jobs
of one handler share is computed once, in its :class:`JobTemplate`; a dispatch call's options are
checked once, into :class:`JobOptions`; building a row is then one ``NewJob`` per job handler,
with no other allocation per job (``Bus._insert_jobs`` is a hot path).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from ._driver import NewJob
from ._errors import PayloadTooLarge
from ._handlers import InlineSpec, JobSpec, Registry
from ._options import Unique
from ._types import JobState

__all__ = ["JobOptions", "JobTemplate", "Plan"]

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

    @classmethod
    def build(
        cls,
        meta: dict[str, Any],
        delay: float | None,
        at: datetime | None,
        priority: int | None,
        queue: str | None,
    ) -> JobOptions:
        return cls(meta, _encode_meta(meta) if meta else _EMPTY_META, delay, at, priority, queue)


class Plan:
    """What one dispatch of an event class does; cached per class and registry version."""

    __slots__ = ("codec", "inline", "jobs", "templates", "version")

    def __init__(self, registry: Registry, cls: type) -> None:
        self.codec = registry.codec(cls)
        self.inline: list[InlineSpec] = list(registry.inline.get(cls, ()))
        self.jobs: list[JobSpec] = list(registry.jobs.get(cls, ()))
        self.templates = [JobTemplate(spec) for spec in self.jobs]
        self.version = registry.version

    def encode(self, event: Any, max_bytes: int) -> bytes:
        """The event's payload, checked against the bus's ``max_payload_bytes``."""
        payload = self.codec.encode(event)
        if len(payload) > max_bytes:
            raise PayloadTooLarge(
                f"event {self.codec.name!r} encodes to {len(payload)} bytes, over the bus's "
                f"max_payload_bytes of {max_bytes}"
            )
        return payload

    def add_jobs(
        self,
        payload: bytes,
        options: JobOptions,
        owner: int,
        jobs: list[NewJob],
        owners: list[int],
    ) -> None:
        """Append one ``NewJob`` per job handler to ``jobs``, and ``owner`` (the event's index)
        to ``owners`` for each."""
        event_name = self.codec.name
        queue, priority, delay, at = options.queue, options.priority, options.delay, options.at
        meta_json = options.meta_json
        decoded: Any = None  # the payload as builtins, decoded once for unique keys
        for t in self.templates:
            job_queue = queue or t.queue
            key = None
            if t.unique is not None:
                if decoded is None:
                    decoded = _decode_payload(payload)
                key = t.unique.base_key(t.name, job_queue, decoded, options.meta)
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
            owners.append(owner)
