"""What handlers and middleware receive: Context (per handler run) and Dispatch (per dispatch)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._types import JobInfo

if TYPE_CHECKING:
    from ._bus import Bus

__all__ = ["Context", "ContextFactory", "Dispatch", "JobLogger"]

S = TypeVar("S")


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``ctx.logger``: the handler logger with the run's fields on every record, as ``extra``
    (``job_id``, ``handler``, ``queue``, ``attempt`` for a job; ``handler`` inline). A caller's
    own ``extra=`` is kept alongside."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.get("extra")
        kwargs["extra"] = self.extra if extra is None else {**extra, **(self.extra or {})}
        return msg, kwargs


class Context(Generic[S]):
    """The second argument of every handler.

    - ``state``: the object given as ``rb.Bus(state=...)`` (type it with ``rb.Context[AppState]``)
    - ``bus``: dispatch follow-up events
    - ``job``: ``None`` inline; for jobs a :class:`JobInfo` (id, attempt, max_attempts, queue,
      priority, meta, inserted_at, scheduled_at)
    - ``meta``: the dispatch's meta (a job's stored meta)
    - ``logger``: a logger for handler code; every record carries the run's job id, handler,
      queue and attempt as ``extra`` fields (built on first use)
    - ``event`` and ``handler``: the event being handled and the handler's name (for middleware)
    """

    __slots__ = ("_adapter", "_logger", "bus", "event", "handler", "job", "meta", "state")

    def __init__(
        self,
        state: S,
        bus: Bus[Any],
        event: Any,
        handler: str,
        meta: dict[str, Any],
        logger: logging.Logger,
        job: JobInfo | None = None,
    ) -> None:
        self.state = state
        self.bus = bus
        self.event = event
        self.handler = handler
        self.meta = meta
        self._logger = logger
        self._adapter: JobLogger | None = None
        self.job = job

    @property
    def logger(self) -> JobLogger:
        """The handler logger, with this run's fields on every record (made on first use)."""
        job = self.job
        if job is None:  # inline: one context serves several handlers in turn
            return JobLogger(self._logger, {"handler": self.handler})
        adapter = self._adapter
        if adapter is None:
            adapter = self._adapter = JobLogger(
                self._logger,
                {"job_id": job.id, "handler": job.handler, "queue": job.queue,
                 "attempt": job.attempt},
            )
        return adapter

    def __repr__(self) -> str:
        where = f"job={self.job.id}" if self.job is not None else "inline"
        return f"Context(handler={self.handler!r}, {where})"


class ContextFactory:
    """Builds the ``Context`` of each job run for the runtime, which never sees the Bus
    itself: it holds the bus only as the value of ``ctx.bus`` (and reads ``ctx.state`` from
    it at each run, so a replaced ``bus.state`` applies)."""

    __slots__ = ("_bus", "_logger")

    def __init__(self, bus: Bus[Any], logger: logging.Logger) -> None:
        self._bus = bus
        self._logger = logger

    def for_job(
        self, event: Any, handler: str, meta: dict[str, Any], job: JobInfo | None
    ) -> Context[Any]:
        bus = self._bus
        return Context(bus.state, bus, event, handler, meta, self._logger, job)


@dataclass(slots=True)
class Dispatch:
    """What dispatch middleware sees and may change before the events are handled."""

    events: list[Any]
    meta: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
