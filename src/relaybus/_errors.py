"""The exception tree. Every error relaybus raises on purpose derives from RelaybusError.

    RelaybusError
    ├── ConfigurationError (also ValueError)      bad names, options, prefixes
    ├── EventError (also TypeError)               not an event, unknown event class
    ├── PayloadTooLarge (also ValueError)         event over max_payload_bytes
    ├── DispatchError (also ExceptionGroup)       inline handlers failed
    ├── JobNotFound (also LookupError)            admin call with an unknown id
    ├── JobRunning                                admin delete of a running job
    ├── JobLost                                   ctx.transaction() of a stale run: rolled back
    ├── UniqueConflict                            admin retry blocked by a unique holder
    ├── StoreError                                the store failed or is misused
    │   └── StoreClosed                           used before ``async with bus`` / after close
    └── HandlerOutcome                            raised by handlers, never escapes a worker
        ├── Snooze, Cancel, Discard
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Cancel",
    "ConfigurationError",
    "Discard",
    "DispatchError",
    "EventError",
    "HandlerOutcome",
    "JobLost",
    "JobNotFound",
    "JobRunning",
    "PayloadTooLarge",
    "RelaybusError",
    "Snooze",
    "StoreClosed",
    "StoreError",
    "UniqueConflict",
]


class RelaybusError(Exception):
    """Base of every error relaybus raises on purpose."""


class ConfigurationError(RelaybusError, ValueError):
    """An invalid name, option or identifier."""


class EventError(RelaybusError, TypeError):
    """Something that is not a relaybus event was dispatched or registered."""


class PayloadTooLarge(RelaybusError, ValueError):
    """An event's JSON payload is larger than the bus's ``max_payload_bytes``."""


class JobNotFound(RelaybusError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class JobLost(RelaybusError):
    """``ctx.transaction()`` could not complete its job: the run is stale (the job was rescued
    and rerun, cancelled, or finished meanwhile), so the transaction was rolled back and none
    of its writes exist."""

    def __init__(self, job_id: int, attempt: int) -> None:
        super().__init__(
            f"job {job_id} is no longer running attempt {attempt} (rescued, cancelled or "
            "finished meanwhile): its transaction was rolled back"
        )
        self.job_id = job_id
        self.attempt = attempt


class JobRunning(RelaybusError):
    """An admin change a running job cannot take (delete it: cancel it first)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} is running: cancel it first")
        self.job_id = job_id


class UniqueConflict(RelaybusError):
    """Another pending job holds this job's unique key."""

    def __init__(self, job_id: int, holder_id: int) -> None:
        super().__init__(f"job {job_id} conflicts with job {holder_id}, which holds its unique key")
        self.job_id = job_id
        self.holder_id = holder_id


class StoreError(RelaybusError):
    """The store failed, or was used in a way it does not support."""


class StoreClosed(StoreError):
    """The store is not open: use ``async with bus:`` (or ``await bus.open()``)."""


class DispatchError(RelaybusError, ExceptionGroup[Exception]):
    """One or more inline handlers failed; jobs were inserted all the same.

    ``exceptions`` holds every failure; ``result`` the dispatch result(s).
    """

    result: Any

    def __new__(cls, message: str, exceptions: Any, result: Any = None) -> DispatchError:
        self = super().__new__(cls, message, exceptions)
        self.result = result
        return self

    def __init__(self, message: str, exceptions: Any, result: Any = None) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Any) -> DispatchError:  # type: ignore[override]
        return DispatchError(self.message, excs, self.result)


class HandlerOutcome(RelaybusError):
    """Base of the exceptions a job handler raises to choose its job's outcome."""


class Snooze(HandlerOutcome):
    """Run the job again after ``seconds``, without using an attempt."""

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__(f"snoozed for {seconds}s")
        if seconds < 0:
            raise ValueError("Snooze seconds must be >= 0")
        self.seconds = float(seconds)


class Cancel(HandlerOutcome):
    """End the job as ``cancelled`` now; it is not retried."""

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


class Discard(HandlerOutcome):
    """End the job as ``discarded`` now; it is not retried."""

    def __init__(self, reason: str = "discarded") -> None:
        super().__init__(reason)
        self.reason = reason
