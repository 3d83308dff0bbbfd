"""Scheduler: the leader dispatches the slots of the bus's periodic schedules.

Exactly once per slot comes from the store, not from timing: every row of a slot is unique on
(handler, schedule, slot) in every state (see ``_schedules``), so whoever dispatches a slot
second — a leader that took over mid-slot, a paused node that still believed it led — inserts
nothing and runs no inline handler.

Which slots are due: those after the last one dispatched (the schedule's newest record, read
when this node gains leadership, then remembered) up to now. A due slot at or before the
moment this node became leader (before it) passed while no leader ran here: it was *missed*, and the
schedule's ``missed`` policy decides — ``latest`` dispatches the newest missed slot once,
``all`` each of them (oldest first; at most ``max_missed``, the newest ones), ``skip`` none
(logged). Slots after that moment are on time and always dispatched. A schedule without a
record yet starts with its first slot after the election.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._driver import ListParams
from .._errors import StoreError
from .._schedules import Schedule, slot_rows, slot_text
from .._slots import Every
from .elector import Elector
from .service import Env, Periodic

if TYPE_CHECKING:
    from .._bus import Bus

__all__ = ["Scheduler", "dispatch_slot"]

_LEDGER_DEPTH = 20  # records read to find the newest slot (ids may interleave across leaders)


async def dispatch_slot(bus: Bus[Any], schedule: Schedule, slot: datetime) -> bool:
    """Dispatch one slot: its record and its jobs in one ``insert_many``, then (only if this
    call inserted the record) the inline handlers. False if the slot was dispatched before."""
    event = schedule.event_for(slot)
    plan = bus._plan(type(event))
    rows, meta = slot_rows(schedule, slot, event, plan, bus.max_payload_bytes, bus.validate)
    inserted = await bus.store.insert_many(rows, None)
    if inserted[0].outcome == "duplicate":
        return False
    for row, result in zip(rows, inserted, strict=True):
        if result.outcome != "duplicate":
            bus.wake(row.queue)
    if plan.inline:
        failures: list[Exception] = []
        await bus._run_inline(event, plan, dict(meta), failures)
        for failure in failures:
            bus.logger.error(
                "inline handler of %s failed for slot %s",
                schedule.describe(),
                meta["slot"],
                exc_info=failure,
            )
    return True


class Scheduler(Periodic):
    """Leader only: dispatches due slots; wakes up at the next slot (at most every
    ``interval``)."""

    name = "scheduler"
    leader_only = True

    def __init__(
        self,
        bus: Bus[Any],
        interval: float,
        env: Env,
        elector: Elector,
        served: Collection[str] = (),
        dispatch: Callable[[Bus[Any], Schedule, datetime], Any] = dispatch_slot,
    ) -> None:
        super().__init__(interval, env)
        self._bus = bus
        self._elector = elector
        self._clock = bus.store.clock
        self._dispatch = dispatch
        self._served = frozenset(served)
        self._since: datetime | None = None  # when this node's current leadership began
        self._last: dict[str, datetime] = {}  # the last slot known dispatched, per schedule
        self.total = 0  # slots this node dispatched (a test and telemetry signal)

    def active(self) -> bool:
        if self._elector.is_leader():
            return True
        self.reset()
        return False

    def reset(self) -> None:
        """Forget what this node knew: the next leadership reads the records again."""
        self._since = None
        self._last.clear()

    async def tick(self) -> float:
        wait = await super().tick()
        if wait != self.interval or not self._bus.schedules:
            return wait
        until = self._until_next_slot()
        return wait if until is None else max(0.005, min(wait, until))

    def _until_next_slot(self) -> float | None:
        now = self._clock.now()
        nearest: float | None = None
        for schedule in self._bus.schedules:
            slot = next(schedule.slots.after(now))
            seconds = (slot - now).total_seconds()
            nearest = seconds if nearest is None else min(nearest, seconds)
        return nearest

    async def run_once(self) -> int:
        """Dispatch every due slot of every schedule; the number this call dispatched."""
        now = self._clock.now()
        if self._since is None:
            self._since = now
            self._warn_unserved()
        total = 0
        for schedule in self._bus.schedules:
            total += await self._run_schedule(schedule, now, self._since)
        return total

    async def _run_schedule(self, schedule: Schedule, now: datetime, since: datetime) -> int:
        last = self._last.get(schedule.name)
        if last is None:
            last = await self._newest_record(schedule) or since
            self._last[schedule.name] = last
        due = _due(schedule, last, now)
        if not due:
            return 0
        missed = [slot for slot in due if slot < since]
        on_time = due[len(missed) :]
        chosen = self._apply_policy(schedule, missed) + on_time
        total = 0
        for slot in chosen:
            try:
                if await self._dispatch(self._bus, schedule, slot):
                    total += 1
                    self.total += 1
            except StoreError:
                raise  # the tick fails and is retried with backoff: this slot is still due
            except Exception:  # the factory or the event: retrying would fail the same way
                self.logger.exception(
                    "%s: building slot %s failed; the slot is skipped",
                    schedule.describe(),
                    slot_text(slot),
                )
            self._last[schedule.name] = slot
        self._last[schedule.name] = due[-1]
        return total

    def _warn_unserved(self) -> None:
        for schedule in self._bus.schedules:
            if self._served and schedule.queue not in self._served:
                self.logger.warning(
                    "%s: its slot records are jobs on queue %r, which this worker does not "
                    "serve; run a worker on it (they complete at once) or pass queue= to the "
                    "schedule, or they wait there until one does",
                    schedule.describe(),
                    schedule.queue,
                )

    def _apply_policy(self, schedule: Schedule, missed: list[datetime]) -> list[datetime]:
        if not missed:
            return []
        policy = schedule.missed
        if policy == "all":
            kept = missed[-schedule.max_missed :]
        elif policy == "latest":
            kept = missed[-1:]
        else:
            kept = []
        skipped = len(missed) - len(kept)
        if skipped:
            self.logger.warning(
                "%s: skipping %d slot(s) missed while no leader ran, from %s to %s%s",
                schedule.describe(),
                skipped,
                slot_text(missed[0]),
                slot_text(missed[skipped - 1]),
                f" (max_missed={schedule.max_missed})" if policy == "all" else "",
            )
        if kept:
            self.logger.info(
                "%s: dispatching %d missed slot(s) late, from %s",
                schedule.describe(),
                len(kept),
                slot_text(kept[0]),
            )
        return kept

    async def _newest_record(self, schedule: Schedule) -> datetime | None:
        """The newest slot of the schedule's records (its ledger), or None."""
        jobs = await self._bus.store.list(
            ListParams(handler=schedule.record_handler, limit=_LEDGER_DEPTH, newest_first=True)
        )
        newest: datetime | None = None
        for job in jobs:
            text = job.meta.get("slot") if isinstance(job.meta, dict) else None
            try:
                slot = datetime.fromisoformat(text) if isinstance(text, str) else None
            except ValueError:
                slot = None
            if slot is not None and slot.tzinfo is not None and (newest is None or slot > newest):
                newest = slot
        return newest


def _due(schedule: Schedule, last: datetime, now: datetime) -> list[datetime]:
    """The slots after ``last`` up to ``now`` (bounded: a long outage of a frequent schedule
    keeps only the newest ``max_missed`` + 1 of them)."""
    bound = schedule.max_missed + 1
    due: list[datetime] = []
    slots = schedule.slots
    if isinstance(slots, Every):  # skip ahead instead of walking every slot of an outage
        last = max(last, now - timedelta(seconds=slots.interval * (bound + 1)))
    for slot in slots.after(last):
        if slot > now:
            break
        due.append(slot)
        if len(due) > bound:
            del due[0]
    return due
