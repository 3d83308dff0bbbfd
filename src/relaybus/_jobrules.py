"""Job policy, once: what each Driver operation does to a job.

Pure functions of plain values. Every store (memory and every SQL dialect) asks this module what
a completion, a rescue, a stage conflict, an admin retry or cancel, or a replace-on-conflict does
to a job -- the target state, the attempt refund, the next due delay, the error record and every
message users read -- and then applies the answer: MemoryStore to its rows, SQL stores as bound
values of fenced statements. SQL evaluates only what needs the database itself: due-ness
against the database clock (``scheduled_at > now``) and who holds a unique key (the unique index).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime

import msgspec

from ._driver import Completion, CompletionKind
from ._types import JobError, JobState

__all__ = [
    "REPLACE_BITS",
    "LIFECYCLE_EVENTS",
    "RunEnd",
    "admin_cancel_error",
    "due_state",
    "end_of_run",
    "finish_keep_mask",
    "holds_key",
    "lifecycle_event",
    "may_raise_lifecycle",
    "replace_fields",
    "replace_mask",
    "replaced_state",
    "rescue_end",
    "rescue_reason",
    "retry_max_attempts",
    "unique_conflict_error",
]

S = JobState


class RunEnd(msgspec.Struct, frozen=True, gc=False):
    """How one run ends, decided. ``delay``: seconds after the store's now for the new
    ``scheduled_at`` (None keeps it). ``rescued``: 1 when this end counts a rescue. A msgspec
    Struct: one is made per finished job, and a Struct is several times cheaper to make than a
    frozen dataclass."""

    id: int
    attempt: int
    state: JobState
    refund: int
    delay: float | None
    error: JobError | None
    rescued: int = 0

    @property
    def finalize(self) -> bool:
        """Whether the job ends here (``finalized_at`` is stamped)."""
        return self.state in _TERMINAL


_TERMINAL = frozenset({S.COMPLETED, S.CANCELLED, S.DISCARDED})
_PLAIN_END: dict[CompletionKind, JobState] = {
    "completed": S.COMPLETED,
    "cancel": S.CANCELLED,
    "discard": S.DISCARDED,
}
_LATER: dict[CompletionKind, JobState] = {
    "retry": S.RETRYABLE,
    "snooze": S.SCHEDULED,
    "return": S.SCHEDULED,
}


def end_of_run(done: Completion) -> RunEnd:
    """A completion, decided.

    completed / cancel / discard: that terminal state (a completion records no error).
    retry: error kept; retryable after ``delay`` (available when the delay is 0).
    snooze / return: attempt refunded, no error; scheduled after ``delay`` (available at 0).
    """
    kind = done.kind
    final = _PLAIN_END.get(kind)
    if final is not None:
        error = None if final is S.COMPLETED else done.error
        return RunEnd(done.id, done.attempt, final, 0, None, error)
    state = _LATER[kind] if done.delay > 0 else S.AVAILABLE
    refund = 0 if kind == "retry" else 1
    return RunEnd(done.id, done.attempt, state, refund, float(done.delay), done.error)


def rescue_reason(node: str | None, attempt: int, node_lost: bool) -> str:
    """Why a running job is being rescued: its node's lease expired (the node died, was killed
    or lost the database for longer than ``node_ttl``), or it outran timeout + grace."""
    if node_lost:
        return f"the lease of node {node} expired while it ran attempt {attempt}"
    return f"attempt {attempt} ran past its timeout plus grace"


def rescue_end(
    *,
    job_id: int,
    attempt: int,
    max_attempts: int,
    rescues: int,
    max_rescues: int,
    node: str | None,
    node_lost: bool,
    now: datetime,
) -> RunEnd:
    """A stuck running job, decided: back to retryable and due now with a ``rescued`` error;
    discarded when its attempts are exhausted, or as ``worker_lost`` once rescued
    ``max_rescues`` times (counting this rescue)."""
    reason = rescue_reason(node, attempt, node_lost)
    rescues += 1
    if rescues >= max_rescues:
        error = JobError(now, attempt, "worker_lost", f"{reason}; rescued {rescues} times", None)
        return RunEnd(job_id, attempt, S.DISCARDED, 0, None, error, rescued=1)
    if attempt >= max_attempts:
        error = JobError(now, attempt, "rescued", f"{reason}; attempts exhausted", None)
        return RunEnd(job_id, attempt, S.DISCARDED, 0, None, error, rescued=1)
    error = JobError(now, attempt, "rescued", reason, None)
    return RunEnd(job_id, attempt, S.RETRYABLE, 0, 0.0, error, rescued=1)


#: The lifecycle event each state change raises on a bus with ``lifecycle_events=True``: a job
#: that ends discarded (attempts exhausted, ``Discard``, ``worker_lost``, a unique conflict when
#: staged) or cancelled (``Cancel``, an admin cancel). Wire names of ``rb.JobDiscarded`` and
#: ``rb.JobCancelled``.
LIFECYCLE_EVENTS: Mapping[JobState, str] = {
    S.DISCARDED: "relaybus.job_discarded",
    S.CANCELLED: "relaybus.job_cancelled",
}
_LIFECYCLE_NAMES = frozenset(LIFECYCLE_EVENTS.values())


def may_raise_lifecycle(state: JobState) -> bool:
    """Whether a job moving to ``state`` may raise a lifecycle event (then the store reads the
    job back in the same transaction and asks :func:`lifecycle_event`)."""
    return state in LIFECYCLE_EVENTS


def lifecycle_event(state: JobState, event: str) -> str | None:
    """The lifecycle event (its wire name) a job of ``event`` raises as it moves to ``state``,
    or None. One per state change; none for a job that handles a lifecycle event itself, so a
    failing dead-letter handler never raises another event about itself (no loops)."""
    name = LIFECYCLE_EVENTS.get(state)
    if name is None or event in _LIFECYCLE_NAMES:
        return None
    return name


def unique_conflict_error(now: datetime, attempt: int, holder: int | None) -> JobError:
    """The error of a job discarded because ``holder`` holds its unique key."""
    return JobError(now, attempt, "unique_conflict", f"job {holder} holds this job's unique key")


def admin_cancel_error(now: datetime, attempt: int) -> JobError:
    return JobError(now, attempt, "cancelled", "cancelled through the admin API", None)


def retry_max_attempts(attempt: int, max_attempts: int) -> int:
    """An admin retry of an exhausted job grants it one more attempt."""
    return attempt + 1 if attempt >= max_attempts else max_attempts


def holds_key(has_key: bool, unique_states: int, state: JobState) -> bool:
    """Whether a job in ``state`` holds its unique key under the mask ``unique_states``."""
    return has_key and bool(unique_states & state.bit)


def finish_keep_mask(unique_states: int, state: JobState, other_holder: bool) -> int:
    """The unique-states mask a job keeps when it moves to ``state``: a job finishing while
    another holds its key never becomes a second holder, so it drops that state's bit."""
    if other_holder and state in _TERMINAL:
        return unique_states & ~state.bit
    return unique_states


def due_state(due_later: bool) -> JobState:
    """A job that is not running yet: scheduled if due later, else available."""
    return S.SCHEDULED if due_later else S.AVAILABLE


def replace_fields(replace: Mapping[JobState, tuple[str, ...]], held: JobState) -> tuple[str, ...]:
    """The fields an insert replaces on the job holding its key (none on a running job)."""
    if held is S.RUNNING:
        return ()
    return replace.get(held, ())


def replaced_state(held: JobState, fields: tuple[str, ...], due_later: bool) -> JobState:
    """The state of a replaced job: a new ``scheduled_at`` re-times a scheduled or available
    job (a retryable job stays retryable until the stager promotes it)."""
    if "scheduled_at" in fields and held is not S.RETRYABLE:
        return due_state(due_later)
    return held


#: Replace fields as bits, for SQL that applies a replace inside one statement.
REPLACE_BITS: Mapping[str, int] = {
    "payload": 1,
    "meta": 2,
    "priority": 4,
    "queue": 8,
    "scheduled_at": 16,
    "max_attempts": 32,
}


@functools.lru_cache(maxsize=256)
def _mask(fields: tuple[str, ...]) -> int:
    mask = 0
    for name in fields:
        mask |= REPLACE_BITS[name]
    return mask


def replace_mask(replace: Mapping[JobState, tuple[str, ...]], held: JobState) -> int:
    """:func:`replace_fields` as a bitmask of :data:`REPLACE_BITS`."""
    fields = replace_fields(replace, held)
    return _mask(tuple(fields)) if fields else 0
