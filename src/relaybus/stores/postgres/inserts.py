"""PostgreSQL's insert algorithm: array statements.

Jobs without unique keys are one ``INSERT ... SELECT FROM unnest(...)`` statement (one job: a
lighter statement). With unique jobs, entries sharing a key run in successive rounds (one
statement each, in one transaction), so a batch applies in input order exactly as if its entries
were inserted one by one; the partial unique index is the arbiter between processes (an entry
that loses a race comes back without an id and runs again). What a conflict replaces is decided
by :mod:`relaybus._jobrules` and bound as masks per holder state.
"""

from __future__ import annotations

import asyncio
import operator
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ..._driver import Inserted, NewJob
from ..._errors import StoreError
from ..._jobrules import replace_mask
from ..._options import bucket_key
from ..._types import JobState
from .._sql.dialect import Runner
from .._sql.executor import Tx

__all__ = ["insert_jobs"]

_MAX_ROUNDS_EXTRA = 50  # unique-insert rounds lost to concurrent writers before giving up
_TXN_ATTEMPTS = 5
_Group = tuple[bytes, float | None]


async def insert_jobs(
    run: Runner, channel: str | None, jobs: Sequence[NewJob], now: datetime | None
) -> list[Inserted]:
    """Insert ``jobs`` in input order (``now`` None: the database clock); notify ``channel``."""
    if not any(job.unique_key is not None and job.unique_states for job in jobs):
        return await run(lambda tx: _insert_plain(tx, channel, jobs, now))
    keys = _Keys(jobs, now)
    if len(jobs) == 1:
        return [await _insert_unique_one(run, channel, jobs[0], keys, now)]
    rounds = _UniqueRounds(channel, jobs, keys, now)
    return await rounds.run(run)


async def _insert_plain(
    tx: Tx, channel: str | None, jobs: Sequence[NewJob], now: datetime | None
) -> list[Inserted]:
    if len(jobs) == 1:
        job = jobs[0]
        row = await tx.fetchrow("insert_one", {**_one_args(job, now), "channel": channel})
        assert row is not None
        return [Inserted(row[0], "inserted")]
    metas, meta = _column(jobs, _get_meta)
    args: dict[str, Any] = {"now": now, "payloads": [j.payload.decode() for j in jobs]}
    for plural, single, get in _COLUMNS:
        args[plural], args[single] = _column(jobs, get)
    args["metas"] = None if metas is None else [m.decode() for m in metas]
    args["meta"] = None if meta is None else meta.decode()
    args["channel"] = channel
    row = await tx.fetchrow("insert_plain", args)
    ids = row[0] if row is not None else None
    if ids is None or len(ids) != len(jobs):  # pragma: no cover - a plain insert inserts all
        raise StoreError(f"inserted {0 if ids is None else len(ids)} rows for {len(jobs)} jobs")
    return [Inserted(job_id, "inserted") for job_id in ids]


def _one_args(job: NewJob, now: datetime | None) -> dict[str, Any]:
    return {
        "now": now,
        "handler": job.handler,
        "event": job.event,
        "queue": job.queue,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "payload": job.payload.decode(),
        "meta": job.meta.decode(),
        "timeout": job.timeout,
        "delay": job.delay,
        "at": job.at,
    }


class _Keys:
    """Per entry: the key to bind, its period (None: the key is final), and its group (entries
    of one group share a key and must run in successive rounds)."""

    def __init__(self, jobs: Sequence[NewJob], now: datetime | None) -> None:
        self.keys: list[bytes | None] = []
        self.periods: list[float | None] = []
        self.groups: list[_Group | None] = []
        for job in jobs:
            if job.unique_key is None or not job.unique_states:
                self.keys.append(None)
                self.periods.append(None)
                self.groups.append(None)
            elif now is not None:  # injected clock: the final key, exactly as bucket_key
                self.keys.append(bucket_key(job.unique_key, job.unique_period, now.timestamp()))
                self.periods.append(None)
                self.groups.append((job.unique_key, job.unique_period))
            else:  # database clock: the statement adds the bucket of its now()
                self.keys.append(job.unique_key)
                self.periods.append(job.unique_period)
                self.groups.append((job.unique_key, job.unique_period))

    def shared(self) -> bool:
        """Whether two entries share a key (then the rounds need one transaction)."""
        groups = [g for g in self.groups if g is not None]
        return len(set(groups)) != len(groups)


def _masks(job: NewJob) -> dict[str, int]:
    return {
        "rep_available": replace_mask(job.replace, JobState.AVAILABLE),
        "rep_scheduled": replace_mask(job.replace, JobState.SCHEDULED),
        "rep_retryable": replace_mask(job.replace, JobState.RETRYABLE),
    }


async def _insert_unique_one(
    run: Runner, channel: str | None, job: NewJob, keys: _Keys, now: datetime | None
) -> Inserted:
    args = {
        **_one_args(job, now),
        "channel": channel,
        "base_key": keys.keys[0],
        "period": keys.periods[0],
        "unique_states": job.unique_states,
        **_masks(job),
    }

    async def work(tx: Tx) -> Any:
        return await tx.fetchrow("insert_unique_one", args)

    for _ in range(_MAX_ROUNDS_EXTRA):
        try:
            row = await run(work)
        except Exception as exc:
            if run.caller_conn or run.kind_of(exc) != "retry":
                raise
            await asyncio.sleep(random.uniform(0.001, 0.01))
            continue
        if row is not None:
            return Inserted(row[0], row[1])
        # The key was taken after this statement's snapshot: the next one sees the holder.
    raise StoreError("unique insert kept losing races with concurrent writers; try again")


class _UniqueRounds:
    """One insert_many with unique jobs, across rounds (and transaction retries)."""

    def __init__(
        self, channel: str | None, jobs: Sequence[NewJob], keys: _Keys, now: datetime | None
    ) -> None:
        self.channel = channel
        self.jobs = jobs
        self.keys = keys
        self.now = now
        self.shared = keys.shared()
        self.reset()

    def reset(self) -> None:
        self.done: list[Inserted | None] = [None] * len(self.jobs)
        self.pending: list[int] = list(range(len(self.jobs)))

    async def run(self, run: Runner) -> list[Inserted]:
        for attempt in range(_TXN_ATTEMPTS):
            try:
                if self.shared:
                    self.reset()
                await run(self.rounds, transaction=self.shared)
                return self.results()
            except Exception as exc:
                if run.caller_conn or run.kind_of(exc) != "retry" or attempt == _TXN_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def results(self) -> list[Inserted]:
        out = [r for r in self.done if r is not None]
        if len(out) != len(self.jobs):  # pragma: no cover - rounds() resolves every entry
            raise StoreError("unique insert left entries unresolved")
        return out

    async def rounds(self, tx: Tx) -> None:
        budget = len(self.jobs) + _MAX_ROUNDS_EXTRA
        while self.pending:
            budget -= 1
            if budget < 0:
                raise StoreError(
                    "unique insert kept losing races with concurrent writers; try again"
                )
            batch, later = self._next_round()
            unresolved: list[int] = []
            for ord_, job_id, outcome, _ in await self._round(tx, batch):
                index = batch[ord_ - 1]
                if job_id is None:
                    unresolved.append(index)
                else:
                    self.done[index] = Inserted(job_id, outcome)
            self.pending = sorted(unresolved + later)

    def _next_round(self) -> tuple[list[int], list[int]]:
        """The pending entries whose key no earlier pending entry shares, and the rest."""
        seen: set[_Group] = set()
        batch: list[int] = []
        later: list[int] = []
        for i in self.pending:
            group = self.keys.groups[i]
            if group is None:
                batch.append(i)
            elif group in seen:
                later.append(i)
            else:
                seen.add(group)
                batch.append(i)
        return batch, later

    async def _round(self, tx: Tx, batch: list[int]) -> list[Any]:
        jobs = [self.jobs[i] for i in batch]
        masks = [_masks(j) for j in jobs]
        args = {
            "now": self.now,
            "handlers": [j.handler for j in jobs],
            "events": [j.event for j in jobs],
            "queues": [j.queue for j in jobs],
            "priorities": [j.priority for j in jobs],
            "max_attempts": [j.max_attempts for j in jobs],
            "payloads": [j.payload.decode() for j in jobs],
            "metas": [j.meta.decode() for j in jobs],
            "timeouts": [j.timeout for j in jobs],
            "delays": [j.delay for j in jobs],
            "ats": [j.at for j in jobs],
            "base_keys": [self.keys.keys[i] for i in batch],
            "periods": [self.keys.periods[i] for i in batch],
            "unique_states": [j.unique_states for j in jobs],
            "rep_available": [m["rep_available"] for m in masks],
            "rep_scheduled": [m["rep_scheduled"] for m in masks],
            "rep_retryable": [m["rep_retryable"] for m in masks],
            "channel": self.channel,
        }
        return await tx.fetch("insert_unique", args)


_get_meta = operator.attrgetter("meta")
#: insert_plain's columns other than payload and meta: (array bind, single bind, getter).
_COLUMNS: tuple[tuple[str, str, Callable[[NewJob], Any]], ...] = (
    ("handlers", "handler", operator.attrgetter("handler")),
    ("events", "event", operator.attrgetter("event")),
    ("queues", "queue", operator.attrgetter("queue")),
    ("priorities", "priority", operator.attrgetter("priority")),
    ("max_attempts_list", "max_attempts", operator.attrgetter("max_attempts")),
    ("timeouts", "timeout", operator.attrgetter("timeout")),
    ("delays", "delay", operator.attrgetter("delay")),
    ("ats", "at", operator.attrgetter("at")),
)


def _column(jobs: Sequence[NewJob], get: Callable[[NewJob], Any]) -> tuple[list[Any] | None, Any]:
    """One column of insert_plain: ``(values, None)``, or ``(None, value)`` when every job has
    the same value (a batch of one event type mostly does: then only the payloads go as an
    array, which asyncpg encodes element by element)."""
    values = list(map(get, jobs))
    first = values[0]
    if values.count(first) == len(values):
        return None, first
    return values, None
