"""OpenTelemetry traces for relaybus (the ``otel`` extra): ``relaybus.otel.instrument(bus)``.

Built on the public API only: a dispatch middleware, a handler middleware and an observer.

- **dispatch** (``dispatch``/``dispatch_many``): a ``PRODUCER`` span, ``send <event>``. Inside
  it the trace context is injected into the dispatch meta under ``rb.TRACE_META_KEY`` (W3C
  ``traceparent``/``tracestate`` with the default propagator), so every job of the dispatch
  carries it into the store; unique keys ignore that key.
- **insert**: a ``CLIENT`` span ``insert <queue>``, child of the dispatch span, timed by the
  ``rb.JobsInserted`` observer event (its jobs' ids, handlers and outcomes).
- **each handler run**: a job run is a ``CONSUMER`` span ``process <queue>`` whose parent is
  the context found in the job's meta, so it belongs to the trace of the request that
  dispatched it, in whatever process; an inline run is an ``INTERNAL`` span
  ``process <handler>`` inside the dispatch span. Attributes: job id, handler, queue, attempt
  and outcome; an exception is recorded on the span with an error status.

Attribute names follow the OpenTelemetry messaging semantic conventions where they exist
(``messaging.system``, ``messaging.operation.type``, ``messaging.operation.name``,
``messaging.destination.name``, ``messaging.message.id``, ``messaging.batch.message_count``,
``error.type``); the rest are ``relaybus.*``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.context import attach, detach
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

import relaybus as rb

__all__ = ["ATTRIBUTES", "Tracing", "instrument"]

SYSTEM = "relaybus"
#: The span attribute names used (semantic-convention names where they exist).
ATTRIBUTES = {
    "system": "messaging.system",
    "operation_type": "messaging.operation.type",
    "operation_name": "messaging.operation.name",
    "destination": "messaging.destination.name",
    "message_id": "messaging.message.id",
    "batch_count": "messaging.batch.message_count",
    "error_type": "error.type",
    "handler": "relaybus.job.handler",
    "attempt": "relaybus.job.attempt",
    "outcome": "relaybus.job.outcome",
    "event": "relaybus.event",
    "insert_outcome": "relaybus.insert.outcome",
}
_A = ATTRIBUTES


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _event_label(event: object) -> str:
    try:
        return rb.event_name(type(event))
    except Exception:  # not an event: dispatch itself raises EventError
        return type(event).__qualname__


def _failed(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_attribute(_A["error_type"], _error_type(exc))
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))


_INTERRUPTED = "stopped by the runtime (timeout, shutdown or lost)"


def _interrupted() -> bool:
    """The runtime cancelled this run (timeout, shutdown, or the job was taken away)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Tracing:
    """Spans for one or more buses. ``tracer_provider``: the global one by default;
    ``propagator``: the global text-map propagator (W3C trace context) by default.

    ``follow_parent_sampling``: a job run whose carried trace context says "not sampled" gets
    no span of its own; the carried context is made current instead, so what the handler
    dispatches stays in the same unsampled trace. That is what a parent-based sampler (the
    SDK's default, ``ParentBased``) decides for such a run anyway, without the SDK's cost of
    deciding it (about 10 µs per run); with a sampler that is not parent-based, leave it off.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        *,
        follow_parent_sampling: bool = False,
    ) -> None:
        self.tracer: Tracer = trace.get_tracer(
            "relaybus", rb.__version__, tracer_provider=tracer_provider
        )
        self._propagator = propagator
        self.follow_parent_sampling = follow_parent_sampling
        #: The last carrier extracted: (its key, its context, whether it says "not sampled").
        self._last: tuple[tuple[Any, Any], OtelContext, bool] | None = None

    @property
    def propagator(self) -> TextMapPropagator:
        return self._propagator if self._propagator is not None else propagate.get_global_textmap()

    def instrument(self, bus: rb.Bus[Any]) -> None:
        """Add the middleware and the observer to ``bus``. Call it before adding your own
        middleware, so the spans wrap it."""
        bus.use(self.dispatch_middleware, on="dispatch")
        bus.use(self.handler_middleware)
        bus.observe(self.observer, kinds=(rb.JobsInserted,))

    # -- dispatch
    async def dispatch_middleware(
        self, d: rb.Dispatch, call_next: Callable[[], Awaitable[Any]]
    ) -> Any:
        names = sorted({_event_label(event) for event in d.events})
        destination = names[0] if len(names) == 1 else "(several)"
        attributes: dict[str, Any] = {
            _A["system"]: SYSTEM,
            _A["operation_type"]: "send",
            _A["operation_name"]: "dispatch",
            _A["destination"]: destination,
        }
        if len(d.events) != 1:
            attributes[_A["batch_count"]] = len(d.events)
        with self.tracer.start_as_current_span(
            f"send {destination}",
            kind=SpanKind.PRODUCER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            carrier: dict[str, str] = {}
            self.propagator.inject(carrier)
            if carrier:
                d.meta[rb.TRACE_META_KEY] = carrier
            try:
                return await call_next()
            except BaseException as exc:
                _failed(span, exc)
                raise

    # -- inserts (observer)
    def observer(self, event: rb.RuntimeEvent) -> None:
        if isinstance(event, rb.JobsInserted):
            self._insert_span(event)

    def _insert_span(self, event: rb.JobsInserted) -> None:
        start = int(event.started_at.timestamp() * 1e9)
        queues = sorted({job.queue for job in event.jobs})
        destination = queues[0] if len(queues) == 1 else "(several)"
        attributes: dict[str, Any] = {
            _A["system"]: SYSTEM,
            _A["operation_type"]: "send",
            _A["operation_name"]: "insert",
            _A["batch_count"]: len(event.jobs),
        }
        if queues:
            attributes[_A["destination"]] = destination
        if len(event.jobs) == 1:
            job = event.jobs[0]
            attributes[_A["message_id"]] = str(job.id)
            attributes[_A["handler"]] = job.handler
            attributes[_A["insert_outcome"]] = job.outcome
        span = self.tracer.start_span(
            f"insert {destination}", kind=SpanKind.CLIENT, attributes=attributes, start_time=start
        )
        if event.error is not None:
            _failed(span, event.error)
        span.end(end_time=start + int(event.duration * 1e9))

    # -- handler runs
    async def handler_middleware(
        self, ctx: rb.Context[Any], call_next: Callable[[], Awaitable[Any]]
    ) -> Any:
        job = ctx.job
        if job is None:
            return await self._inline(ctx, call_next)
        carrier = job.meta.get(rb.TRACE_META_KEY)
        parent: OtelContext | None = None
        if isinstance(carrier, dict):
            parent, unsampled = self._extract(carrier)
            if unsampled and self.follow_parent_sampling:
                token = attach(parent)
                try:
                    return await call_next()
                finally:
                    detach(token)
        span = self.tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                _A["system"]: SYSTEM,
                _A["operation_type"]: "process",
                _A["destination"]: job.queue,
                _A["message_id"]: str(job.id),
                _A["handler"]: job.handler,
                _A["attempt"]: job.attempt,
            },
        )
        token = attach(trace.set_span_in_context(span, parent))
        outcome = "completed"
        try:
            return await call_next()
        except rb.Snooze:
            outcome = "snoozed"
            raise
        except rb.Cancel:
            outcome = "cancelled"
            raise
        except rb.Discard:
            outcome = "discarded"
            raise
        except asyncio.CancelledError as exc:
            if _interrupted():
                outcome = "interrupted"
                span.set_status(Status(StatusCode.ERROR, _INTERRUPTED))
            else:
                outcome = self._job_failed(span, job, exc)
            raise
        except BaseException as exc:
            outcome = self._job_failed(span, job, exc)
            raise
        finally:
            detach(token)
            span.set_attribute(_A["outcome"], outcome)
            span.end()

    def _extract(self, carrier: dict[str, Any]) -> tuple[OtelContext, bool]:
        """The context in a job's carrier, and whether it carries a remote parent that was not
        sampled. The jobs of one dispatch share theirs, so the last one extracted is kept (a
        carrier of W3C trace context only)."""
        key = (carrier.get("traceparent"), carrier.get("tracestate"))
        last = self._last
        if last is not None and last[0] == key and len(carrier) <= 2:
            return last[1], last[2]
        context = self.propagator.extract(carrier)
        parent = trace.get_current_span(context).get_span_context()
        unsampled = parent.is_valid and parent.is_remote and not parent.trace_flags.sampled
        if len(carrier) <= 2 and key[0] is not None:
            self._last = (key, context, unsampled)
        return context, unsampled

    @staticmethod
    def _job_failed(span: Span, job: rb.JobInfo, exc: BaseException) -> str:
        _failed(span, exc)
        return "discarded" if job.attempt >= job.max_attempts else "retried"

    async def _inline(self, ctx: rb.Context[Any], call_next: Callable[[], Awaitable[Any]]) -> Any:
        attributes: dict[str, Any] = {
            _A["system"]: SYSTEM,
            _A["operation_type"]: "process",
            _A["operation_name"]: "process",
            _A["destination"]: _event_label(ctx.event),
            _A["handler"]: ctx.handler,
        }
        with self.tracer.start_as_current_span(
            f"process {ctx.handler}",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await call_next()
            except BaseException as exc:
                span.set_attribute(_A["outcome"], "failed")
                _failed(span, exc)
                raise
            span.set_attribute(_A["outcome"], "completed")
            return result


def instrument(
    bus: rb.Bus[Any],
    *,
    tracer_provider: TracerProvider | None = None,
    propagator: TextMapPropagator | None = None,
    follow_parent_sampling: bool = False,
) -> Tracing:
    """Trace ``bus``: dispatches, inserts and handler runs (see the module docstring and
    ``Tracing``)."""
    tracing = Tracing(tracer_provider, propagator, follow_parent_sampling=follow_parent_sampling)
    tracing.instrument(bus)
    return tracing
