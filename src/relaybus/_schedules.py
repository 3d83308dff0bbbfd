"""Periodic schedules: what ``bus.every`` / ``bus.cron`` register, and the rows of one slot.

A slot is dispatched as one ``insert_many`` (one transaction) of:

- the slot's **record**: a job of the schedule's own handler (``relaybus.schedule:NAME``, a
  no-op on ``queue``) whose payload names the schedule and the slot. It is the schedule's
  ledger: the newest record tells a new leader which slot was dispatched last;
- one job per job handler of the event, as ``dispatch`` would build it.

Every row is unique on (handler, schedule, slot) through the ordinary unique-key machinery
(``Unique(by=("meta",), meta_keys=("schedule", "slot"))``) in *every* state, terminal ones
included, so a second dispatch of the same slot — by a leader that took over mid-slot, or by
two nodes that both believed they led — inserts nothing: the database's unique index decides,
never timing. The rows stay blocking until the pruner deletes them (``Retention``), far longer
than any slot is looked back on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from ._context import Context
from ._driver import NewJob
from ._errors import ConfigurationError, EventError
from ._events import Event, event_name
from ._handlers import Registry, default_handler_name
from ._options import Unique
from ._plan import JobOptions, Plan, build_jobs
from ._slots import Slots
from ._types import JobState
from ._validate import check_name

__all__ = [
    "MISSED_POLICIES",
    "RECORD_PREFIX",
    "Missed",
    "Schedule",
    "ScheduleSlot",
    "Schedules",
    "slot_rows",
]

Missed = Literal["latest", "all", "skip"]
MISSED_POLICIES: tuple[Missed, ...] = ("latest", "all", "skip")
RECORD_PREFIX = "relaybus.schedule:"
_MAX_NAME = 128 - len(RECORD_PREFIX)

#: Blocking in every state: a slot's rows keep their key until pruned.
_SLOT_UNIQUE = Unique(by=("meta",), meta_keys=("schedule", "slot"), states=frozenset(JobState))


@dataclass(frozen=True)
class ScheduleSlot(Event, name="relaybus.schedule_slot"):
    """The payload of a slot's record job."""

    schedule: str
    slot: str  # ISO 8601, UTC


_encode_record = msgspec.json.Encoder().encode
SLOT_EVENT = event_name(ScheduleSlot)


def slot_text(slot: datetime) -> str:
    """The one spelling of a slot time (UTC, ISO 8601, seconds precision or finer)."""
    return slot.astimezone(UTC).isoformat()


def _takes_slot(factory: Callable[..., Any]) -> bool:
    """Whether a factory takes the slot time (one positional parameter) or nothing."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) > 1:
        raise ConfigurationError(
            f"the event factory {factory!r} must take the slot time or nothing, not "
            f"{len(positional)} arguments"
        )
    return len(positional) == 1 or any(
        p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()
    )


@dataclass(frozen=True, slots=True)
class Schedule:
    """One registered schedule. ``source`` is an event instance (dispatched at every slot) or
    a factory called at each slot, with the slot time (UTC) when it takes one argument."""

    name: str
    slots: Slots
    source: Any
    missed: Missed
    queue: str
    max_missed: int
    takes_slot: bool | None  # None: source is an event instance

    @property
    def record_handler(self) -> str:
        return RECORD_PREFIX + self.name

    def event_for(self, slot: datetime) -> Any:
        if self.takes_slot is None:
            return self.source
        event = self.source(slot) if self.takes_slot else self.source()
        if not isinstance(event, Event):
            raise EventError(
                f"the factory of schedule {self.name!r} returned {type(event).__name__}, "
                "not an event"
            )
        return event

    def describe(self) -> str:
        return f"schedule {self.name!r} ({self.slots.describe()}, missed={self.missed!r})"


async def _record_slot(event: ScheduleSlot, ctx: Context[Any]) -> None:
    """The record job's handler: nothing to do (the row is the record)."""


class Schedules:
    """The schedules of one bus, by name (owned by the Bus; never global)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Schedule] = {}

    def __iter__(self) -> Iterator[Schedule]:
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    def register(
        self,
        registry: Registry,
        slots: Slots,
        event: Any,
        *,
        name: str | None,
        missed: str,
        queue: str,
        max_missed: int,
    ) -> Schedule:
        """Check and add one schedule, with the job handler that records its slots."""
        policy = _checked_options(missed, queue, max_missed)
        schedule_name, takes_slot = self._name_of(event, name)
        schedule = Schedule(schedule_name, slots, event, policy, queue, max_missed, takes_slot)
        registry.add_job(
            ScheduleSlot,
            Schedules.record_handler,
            name=schedule.record_handler,
            queue=queue,
            priority=3,
            max_attempts=1,
            timeout=60.0,
            backoff=None,
            unique=None,
            replace=None,
        )
        self.by_name[schedule.name] = schedule
        return schedule

    def _name_of(self, event: Any, name: str | None) -> tuple[str, bool | None]:
        """The schedule's checked, unused name, and whether its factory takes the slot (None:
        an event instance)."""
        if isinstance(event, type):
            raise ConfigurationError(
                f"pass an event instance or a factory, not the class {event.__qualname__} "
                f"(for an event without fields: {event.__name__}())"
            )
        takes_slot: bool | None
        if isinstance(event, Event):
            takes_slot = None
            default = name if name is not None else event_name(type(event))
        elif callable(event):
            takes_slot = _takes_slot(event)
            default = default_handler_name(event) if name is None else name
        else:
            raise ConfigurationError(
                f"a schedule takes an event instance or a factory, not {type(event).__name__}"
            )
        schedule_name = check_name("schedule", default)
        if len(schedule_name) > _MAX_NAME:
            raise ConfigurationError(
                f"schedule name {schedule_name!r} is too long (at most {_MAX_NAME} characters)"
            )
        if schedule_name in self.by_name:
            raise ConfigurationError(
                f"a schedule named {schedule_name!r} is already registered; pass name='...'"
            )
        return schedule_name, takes_slot

    record_handler = staticmethod(_record_slot)


def _checked_options(missed: str, queue: str, max_missed: int) -> Missed:
    """Check a schedule's options; its missed policy (a Literal once checked)."""
    if missed not in MISSED_POLICIES:
        raise ConfigurationError(f"missed= takes 'latest', 'all' or 'skip', not {missed!r}")
    if isinstance(max_missed, bool) or not isinstance(max_missed, int) or max_missed < 1:
        raise ConfigurationError(f"max_missed must be an integer >= 1, not {max_missed!r}")
    check_name("queue", queue)
    return missed


def slot_rows(
    schedule: Schedule, slot: datetime, event: Any, plan: Plan, max_bytes: int, validate: bool
) -> tuple[list[NewJob], dict[str, Any]]:
    """The rows of one slot (its record first) and the meta every row carries."""
    text = slot_text(slot)
    meta = {"schedule": schedule.name, "slot": text}
    options = JobOptions.build(meta, None, None, None, None, max_bytes, validate)
    jobs, _ = build_jobs([event], [plan], options)
    record_handler = schedule.record_handler
    mask = _SLOT_UNIQUE.mask
    record = NewJob(
        record_handler,
        SLOT_EVENT,
        schedule.queue,
        3,
        1,
        _encode_record({"schedule": schedule.name, "slot": text}),
        options.meta_json,
        60.0,
        unique_key=_SLOT_UNIQUE.base_key(record_handler, schedule.queue, {}, meta),
        unique_states=mask,
    )
    rows = [record]
    for job in jobs:
        rows.append(
            msgspec.structs.replace(
                job,
                unique_key=_SLOT_UNIQUE.base_key(job.handler, job.queue, {}, meta),
                unique_period=None,
                unique_states=mask,
                replace={},
            )
        )
    return rows, meta
