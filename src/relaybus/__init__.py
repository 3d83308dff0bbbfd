"""relaybus: an async-first event bus with a durable background job system.

Everything public is re-exported here; modules starting with ``_`` are internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import testing
from ._bus import Bus, DispatchMiddleware, HandlerMiddleware
from ._clock import Clock, SystemClock
from ._context import Context, Dispatch
from ._errors import (
    Cancel,
    ConfigurationError,
    Discard,
    DispatchError,
    EventError,
    HandlerOutcome,
    JobLost,
    JobNotFound,
    JobRunning,
    PayloadTooLarge,
    RelaybusError,
    Snooze,
    StoreClosed,
    StoreError,
    UniqueConflict,
)
from ._events import Event, event_name
from ._handlers import Handler, JobHandler
from ._lifecycle import JobCancelled, JobDiscarded
from ._observe import (
    InsertedJob,
    JobClaimed,
    JobFinished,
    JobOutcome,
    JobRescued,
    JobsInserted,
    LeadershipGained,
    LeadershipLost,
    NodeStarted,
    NodeStopped,
    Observer,
    RuntimeEvent,
)
from ._options import Backoff, Constant, Exponential, Linear, Replace, Retention, Unique
from ._runtime.worker import Worker
from ._schedules import Schedule
from ._types import (
    PENDING_STATES,
    TRACE_META_KEY,
    DispatchResult,
    InsertResult,
    Job,
    JobError,
    JobInfo,
    JobState,
    NodeInfo,
    Priority,
    QueueInfo,
    Throughput,
)
from .stores import registry
from .stores.memory import MemoryStore

if TYPE_CHECKING:
    from .stores.mysql import MySQLStore
    from .stores.postgres import PostgresStore
    from .stores.sqlalchemy import SQLAlchemyStore
    from .stores.sqlite import SQLiteStore

__version__ = "0.1.0"

__all__ = [
    "PENDING_STATES",
    "TRACE_META_KEY",
    "Backoff",
    "Bus",
    "Cancel",
    "Clock",
    "ConfigurationError",
    "Constant",
    "Context",
    "Discard",
    "Dispatch",
    "DispatchError",
    "DispatchMiddleware",
    "DispatchResult",
    "Event",
    "EventError",
    "Exponential",
    "Handler",
    "HandlerMiddleware",
    "HandlerOutcome",
    "InsertResult",
    "Job",
    "JobCancelled",
    "JobDiscarded",
    "JobError",
    "JobHandler",
    "JobInfo",
    "JobLost",
    "JobNotFound",
    "JobRunning",
    "JobState",
    "Linear",
    "NodeInfo",
    "MemoryStore",
    "MySQLStore",
    "PayloadTooLarge",
    "PostgresStore",
    "Priority",
    "QueueInfo",
    "Throughput",
    "RelaybusError",
    "Replace",
    "Retention",
    "SQLAlchemyStore",
    "SQLiteStore",
    "Schedule",
    "Snooze",
    "StoreClosed",
    "StoreError",
    "SystemClock",
    "Unique",
    "UniqueConflict",
    "Worker",
    "InsertedJob",
    "JobClaimed",
    "JobFinished",
    "JobOutcome",
    "JobRescued",
    "JobsInserted",
    "LeadershipGained",
    "LeadershipLost",
    "NodeStarted",
    "NodeStopped",
    "Observer",
    "RuntimeEvent",
    "event_name",
    "__version__",
    "testing",
]


def __getattr__(name: str) -> Any:
    # Database stores import their client libraries lazily: `import relaybus` needs only the
    # core. Which stores exist is the store registry's business.
    kind = registry.by_class_name(name)
    if kind is None:
        raise AttributeError(f"module 'relaybus' has no attribute {name!r}")
    return kind.load()
