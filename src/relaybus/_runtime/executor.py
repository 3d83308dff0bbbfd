"""Executor: runs one claimed job and turns what happened into a Completion."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Sequence
from typing import Any

from .._clock import Clock
from .._context import ContextFactory
from .._driver import Claimed, Completion
from .._errors import Cancel, Discard, Snooze
from .._handlers import JobSpec, Registry
from .._isolation.protocol import ChildError
from .._middleware import HandlerMiddleware, run_with_middleware
from .._options import Exponential
from .._types import JobError, JobInfo

__all__ = ["Executor"]

_DEFAULT_BACKOFF = Exponential()


def _kind(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class _Deadline:
    """Cancels the current task after ``seconds`` (a lighter ``asyncio.timeout``: one timer
    handle, no context manager). ``expired`` tells a timeout from any other cancellation."""

    __slots__ = ("expired", "handle", "task")

    def __init__(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        self.task = task
        self.expired = False
        self.handle = loop.call_at(loop.time() + seconds, self._fire)

    def _fire(self) -> None:
        self.expired = True
        self.task.cancel()


def job_fields(job: Claimed) -> dict[str, Any]:
    """The ``extra`` fields of every log record about one run of ``job`` (never its payload)."""
    return {"job_id": job.id, "handler": job.handler, "queue": job.queue, "attempt": job.attempt}


def _brief(message: str, limit: int = 300) -> str:
    """An error message for a log line: its first line, cut to ``limit`` characters."""
    first = message.splitlines()[0] if message else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _asked_to_cancel() -> bool:
    """Whether someone cancelled the current task (the runtime: timeout, shutdown, lost), as
    opposed to a handler raising ``CancelledError`` itself or awaiting a cancelled future."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Executor:
    """Decodes the payload, builds the context, applies middleware and the timeout, runs the
    handler and maps the outcome. Never raises for anything a handler does (``SystemExit``,
    ``KeyboardInterrupt`` and a ``CancelledError`` nobody asked for included: each is a failed
    attempt), except a cancellation of the running task: the caller decides what that means.

    It needs the handlers (``registry``), the handler ``middleware`` (the bus's own list, so
    later ``bus.use`` calls apply), the ``contexts`` it builds each run's ``Context`` with, a
    ``logger`` and the store's ``clock`` (error timestamps); never the Bus itself.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        middleware: Sequence[HandlerMiddleware],
        contexts: ContextFactory,
        logger: logging.Logger,
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._middleware = middleware
        self._new_context = contexts.for_job  # a bound method: the cheapest call
        self._clock = clock
        self._logger = logger

    def timeout_of(self, job: Claimed) -> float | None:
        """The handler's timeout (the stored one when this bus lacks the handler)."""
        spec = self._registry.job_by_name.get(job.handler)
        return spec.timeout if spec is not None else job.timeout

    def timed_out(self, job: Claimed) -> Completion:
        """The failed attempt of a run stopped at its timeout."""
        spec = self._registry.job_by_name.get(job.handler)
        timeout = self.timeout_of(job)
        note = "" if spec is None or spec.is_async else " (sync handler abandoned in its thread)"
        if spec is not None and spec.isolation == "process":
            note = " (process handler: its child process was killed)"
        return self._failed(job, spec, "timeout", f"timed out after {timeout}s{note}")

    async def execute_with_timeout(self, job: Claimed) -> Completion:
        """``execute`` under the handler's timeout, in the current task (for ``drain``)."""
        timeout = self.timeout_of(job)
        deadline = None if timeout is None else _Deadline(timeout)
        try:
            return await self.execute(job)
        except asyncio.CancelledError:
            if deadline is None or not deadline.expired:
                raise
            deadline.task.uncancel()
            return self.timed_out(job)
        finally:
            if deadline is not None:
                deadline.handle.cancel()

    def _unprepared(self, job: Claimed, spec: JobSpec | None) -> Completion:
        """The failed attempt of a job with no handler here, an undecodable stored field or
        the wrong event (the cases ``execute``'s fast path leaves to this slow path)."""
        if spec is None:
            return self._failed(
                job, None, "unknown_handler", f"no job handler named {job.handler!r} on this bus"
            )
        if job.problem is not None:  # a stored field did not decode (see Claimed.problem)
            return self._failed(job, spec, "decode_error", job.problem)
        name = self._registry.codecs[spec.event].name
        return self._failed(
            job,
            spec,
            "decode_error",
            f"job holds event {job.event!r} but handler {spec.name!r} takes {name!r}",
        )

    async def execute(self, job: Claimed) -> Completion:
        """Run ``job`` (no timeout: the caller enforces it by cancelling the task): the handler
        inside the middleware, and how it ended mapped to a Completion. One coroutine per job:
        this is the hot path, so the common case is inline and the rare ones are in
        ``_unprepared``."""
        spec = self._registry.job_by_name.get(job.handler)
        if spec is None:
            return self._unprepared(job, None)
        codec = self._registry.codecs[spec.event]
        if job.problem is not None or job.event != codec.name:
            return self._unprepared(job, spec)
        try:
            event = codec.decode(job.payload)
        except Exception as exc:
            return self._failed(
                job,
                spec,
                "decode_error",
                f"payload does not decode into {spec.event.__qualname__}: {exc}",
            )
        info = JobInfo(
            job.id, job.handler, job.attempt, job.max_attempts, job.queue, job.priority,
            job.meta, job.inserted_at, job.scheduled_at,
        )  # fmt: skip
        ctx = self._new_context(event, spec.name, job.meta, info)
        middleware = self._middleware
        logger = self._logger
        debug = logger.isEnabledFor(logging.DEBUG)  # a cached lookup: cheap per job
        if debug:
            logger.debug(
                "job %s (%s) on %s attempt %s/%s started",
                job.id, job.handler, job.queue, job.attempt, job.max_attempts,
                extra=job_fields(job),
            )
        try:
            if middleware:
                await run_with_middleware(middleware, spec.call, event, ctx)
            else:
                await spec.call(event, ctx)
        except Snooze as snooze:
            return Completion(job.id, job.attempt, "snooze", None, snooze.seconds)
        except Cancel as cancel:
            return Completion(
                job.id, job.attempt, "cancel", self._error(job, "cancelled", cancel.reason)
            )
        except Discard as discard:
            return Completion(
                job.id, job.attempt, "discard", self._error(job, "discarded", discard.reason)
            )
        except asyncio.CancelledError as exc:
            if _asked_to_cancel():
                raise
            return self._raised(job, spec, exc)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: never fatal
            return self._raised(job, spec, exc)
        if debug:
            logger.debug(
                "job %s (%s) on %s attempt %s/%s completed",
                job.id, job.handler, job.queue, job.attempt, job.max_attempts,
                extra=job_fields(job),
            )
        return Completion(job.id, job.attempt, "completed")

    def _raised(self, job: Claimed, spec: JobSpec, exc: BaseException) -> Completion:
        if isinstance(exc, ChildError):  # raised in a child process: its own kind and traceback
            return self._failed(job, spec, exc.kind, exc.message, exc.remote_traceback)
        if not isinstance(exc, Exception):
            self._logger.error(
                "job %s (%s) on %s attempt %s raised %s: a failed attempt; the worker keeps "
                "running",
                job.id, job.handler, job.queue, job.attempt, _kind(exc),
                extra=job_fields(job),
            )
        tb = "".join(traceback.format_exception(exc))
        return self._failed(job, spec, _kind(exc), str(exc) or repr(exc), tb)

    def _error(self, job: Claimed, kind: str, message: str, tb: str | None = None) -> JobError:
        return JobError(self._clock.now(), job.attempt, kind, message, tb)

    def _failed(
        self, job: Claimed, spec: JobSpec | None, kind: str, message: str, tb: str | None = None
    ) -> Completion:
        error = self._error(job, kind, message, tb)
        if job.attempt >= job.max_attempts:
            self._logger.error(
                "job %s (%s) on %s attempt %s/%s failed with %s: %s; discarded",
                job.id, job.handler, job.queue, job.attempt, job.max_attempts, kind,
                _brief(message),
                extra=job_fields(job),
            )
            return Completion(job.id, job.attempt, "discard", error)
        backoff = spec.backoff if spec is not None else _DEFAULT_BACKOFF
        try:
            delay = max(0.0, float(backoff(job.attempt)))
        except Exception:
            self._logger.exception(
                "backoff of handler %s failed; using the default", job.handler,
                extra=job_fields(job),
            )
            delay = _DEFAULT_BACKOFF(job.attempt)
        self._logger.warning(
            "job %s (%s) on %s attempt %s/%s failed with %s: %s; retry in %.3gs",
            job.id, job.handler, job.queue, job.attempt, job.max_attempts, kind,
            _brief(message), delay,
            extra=job_fields(job),
        )
        return Completion(job.id, job.attempt, "retry", error, delay)
