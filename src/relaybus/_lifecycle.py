"""Lifecycle events: built-in events about jobs, handled by ordinary job handlers.

On a bus made with ``rb.Bus(..., lifecycle_events=True)``, a job that ends ``discarded`` raises
:class:`JobDiscarded` and one that ends ``cancelled`` raises :class:`JobCancelled`, each carrying
the job's record as it is after the change. Which state change raises which event is decided in
:mod:`relaybus._jobrules` (``lifecycle_event``); the jobs of the handlers registered for the
event are built by :class:`relaybus._plan.LifecyclePlanner`, and each store inserts them in the
same transaction as the state change.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._events import Event
from ._jobrules import LIFECYCLE_EVENTS
from ._types import Job, JobState

__all__ = ["LIFECYCLE_CLASSES", "JobCancelled", "JobDiscarded", "LifecycleEvent"]


@dataclass(frozen=True)
class JobDiscarded(Event, name=LIFECYCLE_EVENTS[JobState.DISCARDED]):
    """A job ended ``discarded``: its attempts ran out, a handler raised ``rb.Discard``, it was
    lost with its node ``max_rescues`` times (``worker_lost``), or another job held its unique
    key when it came due. ``job.errors[-1]`` says which."""

    job: Job


@dataclass(frozen=True)
class JobCancelled(Event, name=LIFECYCLE_EVENTS[JobState.CANCELLED]):
    """A job ended ``cancelled``: a handler raised ``rb.Cancel``, or an admin cancelled it
    (``bus.jobs.cancel``, ``cancel_many``, ``relaybus jobs cancel``)."""

    job: Job


LifecycleEvent = JobDiscarded | JobCancelled

#: The lifecycle event classes by wire name.
LIFECYCLE_CLASSES: dict[str, type[JobDiscarded] | type[JobCancelled]] = {
    LIFECYCLE_EVENTS[JobState.DISCARDED]: JobDiscarded,
    LIFECYCLE_EVENTS[JobState.CANCELLED]: JobCancelled,
}
