"""The Bus: registry of handlers, dispatch, middleware, and the entry point to workers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from sys import getrefcount
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, Unpack, overload

from ._admin import Jobs, Queues
from ._context import Context, Dispatch
from ._driver import Driver
from ._errors import ConfigurationError, DispatchError
from ._handlers import HandlerFunc, Registry
from ._lifecycle import LIFECYCLE_CLASSES
from ._middleware import (
    DispatchMiddleware,
    HandlerMiddleware,
    run_dispatch_chain,
    run_with_middleware,
)
from ._observe import JobsInserted, Observer, Observers, RuntimeEvent, insert_observed
from ._options import BackoffLike, Replace, Retention, Unique
from ._plan import (
    DispatchOptions,
    JobOptions,
    LifecyclePlanner,
    Plan,
    build_jobs,
    check_options,
    record_inserted,
)
from ._runtime.worker import Worker, WorkerConfig
from ._schedules import Schedule, Schedules
from ._slots import Cron, Every
from ._types import DispatchKeywords, DispatchResult, ErrorMode, NodeInfo
from .stores.memory import MemoryStore

__all__ = ["Bus", "HandlerMiddleware", "DispatchMiddleware"]

S = TypeVar("S")
F = TypeVar("F", bound=HandlerFunc)

LIFECYCLE = tuple(LIFECYCLE_CLASSES.values())


class Bus(Generic[S]):
    """An event bus. Register handlers with ``on``/``job``/``register``; open it with
    ``async with bus:``; ``dispatch`` events; run jobs with ``bus.worker(...)``."""

    def __init__(
        self,
        store: Driver | None = None,
        *,
        state: S = None,  # type: ignore[assignment]
        middleware: Sequence[HandlerMiddleware] = (),
        errors: ErrorMode = "raise",
        max_payload_bytes: int = 1_048_576,
        validate: bool = False,
        lifecycle_events: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        if errors not in ("raise", "log"):
            raise ConfigurationError(f"errors must be 'raise' or 'log', not {errors!r}")
        if max_payload_bytes < 1:
            raise ConfigurationError("max_payload_bytes must be >= 1")
        self.store: Driver = store if store is not None else MemoryStore()
        self.state: S = state
        self.errors: ErrorMode = errors
        self.max_payload_bytes = max_payload_bytes
        #: Decode every job payload into its event class at dispatch (one decode per event),
        #: so an event that would never decode fails ``dispatch`` instead of every attempt.
        self.validate = bool(validate)
        self.logger = logger or logging.getLogger("relaybus")
        self.handler_logger = self.logger.getChild("handler")
        self.registry = Registry()
        self.middleware: list[HandlerMiddleware] = list(middleware)
        self.dispatch_middleware: list[DispatchMiddleware] = []
        #: Runtime event observers (``observe``); workers share this list.
        self.observers = Observers()
        #: The periodic schedules (``every`` / ``cron``), dispatched by the leading worker.
        self.schedules = Schedules()
        self.jobs = Jobs(self)
        self.queues = Queues(self)
        self._plans: dict[type, Plan] = self.registry.plans  # emptied by every registration
        self._options = DispatchOptions()
        self._wakers: dict[str, list[Callable[[], None]]] = {}
        self._cancellers: list[Callable[[int], None]] = []
        self._open = False
        #: Whether the store raises ``rb.JobDiscarded`` / ``rb.JobCancelled`` for this bus's
        #: handlers, in the transaction of each state change (see docs/lifecycle-events.md).
        self.lifecycle_events = bool(lifecycle_events)
        if self.lifecycle_events:
            if getattr(self.store, "lifecycle", None) is not None:
                raise ConfigurationError(
                    f"{self.store!r} already raises lifecycle events for another bus: give "
                    "each Bus(lifecycle_events=True) a store of its own"
                )
            self.store.lifecycle = LifecyclePlanner(self._plan, self.logger.getChild("lifecycle"))

    def __repr__(self) -> str:
        return f"Bus(store={self.store!r})"

    # -- lifecycle
    async def open(self) -> None:
        if not self._open:
            await self.store.open()
            self._open = True
            if not self.lifecycle_events and any(c in self.registry.jobs for c in LIFECYCLE):
                self.logger.warning(
                    "this bus has job handlers of rb.JobDiscarded / rb.JobCancelled but "
                    "lifecycle_events=False: they never run (use rb.Bus(..., "
                    "lifecycle_events=True))"
                )

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self.store.close()

    async def __aenter__(self) -> Bus[S]:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- registration
    def on(self, event: type, *, name: str | None = None) -> Callable[[F], F]:
        """Register an inline handler: awaited inside ``dispatch``."""

        def decorator(func: F) -> F:
            self.registry.add_inline(event, func, name)
            return func

        return decorator

    def job(
        self,
        event: type,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 2,
        max_attempts: int = 10,
        timeout: float | timedelta | None = 60.0,
        backoff: BackoffLike | None = None,
        unique: Unique | None = None,
        replace: Replace | None = None,
        isolation: Literal["process"] | None = None,
    ) -> Callable[[F], F]:
        """Register a job handler: each dispatch inserts one job for it into the store.
        ``isolation="process"``: a plain ``def`` handler runs in a child process of the
        worker's pool, killed at its timeout (see docs/isolation.md)."""

        def decorator(func: F) -> F:
            self.registry.add_job(
                event,
                func,
                name=name,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
                backoff=backoff,
                unique=unique,
                replace=replace,
                isolation=isolation,
            )
            return func

        return decorator

    def every(
        self,
        interval: float | timedelta,
        event: Any,
        *,
        name: str | None = None,
        missed: str = "latest",
        queue: str = "default",
        max_missed: int = 100,
    ) -> Schedule:
        """Dispatch ``event`` (an event, or a factory called with the slot time or nothing)
        every ``interval`` (seconds or timedelta), at multiples of it since the Unix epoch (UTC).
        The leading worker dispatches each slot exactly once; see docs/periodic-events.md."""
        return self.schedules.register(
            self.registry, Every(interval), event, name=name, missed=missed, queue=queue,
            max_missed=max_missed,
        )  # fmt: skip

    def cron(
        self,
        expr: str,
        event: Any,
        *,
        name: str | None = None,
        tz: str | None = None,
        missed: str = "latest",
        queue: str = "default",
        max_missed: int = 100,
    ) -> Schedule:
        """Dispatch ``event`` at the times matching the five-field cron expression ``expr`` in
        the time zone ``tz`` (an IANA name; default UTC). Needs ``relaybus[cron]``."""
        return self.schedules.register(
            self.registry, Cron(expr, tz), event, name=name, missed=missed, queue=queue,
            max_missed=max_missed,
        )  # fmt: skip

    def register(self, handler: object) -> None:
        """Register a class-based ``rb.Handler[E]`` or ``rb.JobHandler[E]`` instance."""
        self.registry.register(handler)

    @overload
    def use(self, middleware: HandlerMiddleware, *, on: Literal["handler"] = ...) -> None: ...

    @overload
    def use(self, middleware: DispatchMiddleware, *, on: Literal["dispatch"]) -> None: ...

    def use(self, middleware: Any, *, on: Literal["handler", "dispatch"] = "handler") -> None:
        """Add middleware: around each handler run (default) or around ``dispatch``."""
        if on == "handler":
            self.middleware.append(middleware)
        elif on == "dispatch":
            self.dispatch_middleware.append(middleware)
        else:
            raise ConfigurationError(f"use(on=...) takes 'handler' or 'dispatch', not {on!r}")

    def observe(
        self, observer: Observer, *, kinds: Iterable[type[RuntimeEvent]] | None = None
    ) -> Callable[[], None]:
        """Call ``observer(event)`` with every runtime event of this bus: jobs inserted, claimed,
        finished (with their outcome), rescued; leadership gained or lost; nodes started or
        stopped (the ``rb.RuntimeEvent`` classes). ``kinds``: only events of these classes (the
        runtime then builds no event nobody takes). It is called synchronously and must be
        quick; one that raises is logged and skipped. Returns a function that removes it."""
        return self.observers.add(observer, kinds)

    async def nodes(self) -> list[NodeInfo]:
        """The live nodes (workers) of this bus's store, with the leader marked."""
        return await self.store.nodes()

    # -- local wake-ups (workers in this process)
    def add_waker(self, queue: str, wake: Callable[[], None]) -> Callable[[], None]:
        wakers = self._wakers.setdefault(queue, [])
        wakers.append(wake)
        return lambda: wakers.remove(wake)

    def wake(self, queue: str) -> None:
        for wake in self._wakers.get(queue, ()):
            wake()

    def add_canceller(self, cancel: Callable[[int], None]) -> Callable[[], None]:
        self._cancellers.append(cancel)
        return lambda: self._cancellers.remove(cancel)

    def cancel_local(self, job_id: int) -> None:
        """Stop a run of ``job_id`` in this process's workers, if any (admin cancel)."""
        for cancel in self._cancellers:
            cancel(job_id)

    # -- dispatch
    def _plan(self, cls: type) -> Plan:
        plan = self._plans.get(cls)
        if plan is None:
            plan = self._plans[cls] = Plan(self.registry, cls)
        return plan

    async def dispatch(self, event: Any, **options: Unpack[DispatchKeywords]) -> DispatchResult:
        """Insert one job per job handler (one transaction), then run the inline handlers.

        Options, by keyword: ``meta``, ``delay``, ``at``, ``priority``, ``queue``, ``conn``,
        ``errors`` (as for ``dispatch_many``)."""
        if options:
            return await self._dispatch_one(event, **options)
        plan = self._plans.get(type(event))
        if plan is None:
            plan = self._plan(type(event))
        inline = plan.inline_only
        if inline is None or self.dispatch_middleware or self.middleware:
            return await self._dispatch_one(event)
        # The fast path: inline handlers only, no middleware, no options, in this one
        # coroutine (its options are ``**options`` because a keyword-only default costs more
        # per call than this whole check). The handlers share one Context in turn: the one
        # the plan kept from the last such dispatch, when nothing else held on to it (a
        # handler that keeps ``ctx`` or fills ``ctx.meta`` makes the next dispatch build a
        # new one; a concurrent dispatch of the same event class builds its own). The
        # DispatchResult is reused the same way, when the caller dropped the last one.
        ctx: Context[S] | None = plan.spare
        if ctx is None:
            ctx = Context(self.state, self, event, "", {}, self.handler_logger)
        else:
            plan.spare = None  # in use
            ctx.state = self.state
            ctx.event = event
        failures: list[Exception] | None = None
        for name, call in inline:
            ctx.handler = name
            try:
                await call(event, ctx)
            except Exception as exc:
                if failures is None:
                    failures = []
                failures.append(exc)
        if failures:
            self._inline_failed(failures, None, DispatchResult(event, []))
        elif not ctx.meta and getrefcount(ctx) == 2 and getrefcount(ctx.meta) == 2:
            # held only here (and by getrefcount's argument): nobody can see it change
            ctx.event = None
            plan.spare = ctx
        result: DispatchResult | None = plan.result
        # held by the plan, here and by getrefcount's argument, its job list by it alone
        if result is not None and getrefcount(result) == 3 and getrefcount(result.jobs) == 2:
            result.event = event
            return result
        result = plan.result = DispatchResult(event, [])
        return result

    async def _dispatch_one(
        self,
        event: Any,
        *,
        meta: dict[str, Any] | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        conn: Any = None,
        errors: ErrorMode | None = None,
    ) -> DispatchResult:
        results = await self._dispatch(
            [event], meta, delay, at, priority, queue, conn, errors, single=True
        )
        # Dispatch middleware may have dropped the event: then nothing was dispatched.
        return results[0] if results else DispatchResult(event, [])

    async def dispatch_many(
        self,
        events: Iterable[Any],
        *,
        meta: dict[str, Any] | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        conn: Any = None,
        errors: ErrorMode | None = None,
    ) -> list[DispatchResult]:
        """``dispatch`` for many events: one transaction and round trip; results in input order."""
        return await self._dispatch(
            list(events), meta, delay, at, priority, queue, conn, errors, single=False
        )

    async def _dispatch(
        self,
        events: list[Any],
        meta: dict[str, Any] | None,
        delay: float | timedelta | None,
        at: datetime | None,
        priority: int | None,
        queue: str | None,
        conn: Any,
        errors: ErrorMode | None,
        *,
        single: bool,
    ) -> list[DispatchResult]:
        if not self.dispatch_middleware:
            return await self._dispatch_core(
                events, dict(meta) if meta else {}, delay, at, priority, queue, conn, errors, single
            )
        envelope = Dispatch(events=events, meta=dict(meta or {}))

        async def core() -> list[DispatchResult]:
            return await self._dispatch_core(
                envelope.events, envelope.meta, delay, at, priority, queue, conn, errors, single
            )

        result: list[DispatchResult] = await run_dispatch_chain(
            self.dispatch_middleware, envelope, core
        )
        return result

    async def _dispatch_core(
        self,
        events: list[Any],
        meta: dict[str, Any],
        delay: float | timedelta | None,
        at: datetime | None,
        priority: int | None,
        queue: str | None,
        conn: Any,
        errors: ErrorMode | None,
        single: bool,
    ) -> list[DispatchResult]:
        delay_s = check_options(meta, delay, at, priority, queue)
        cached = self._plans.get  # a Plan is never falsy; _plan raises EventError for a non-event
        plans = [cached(type(event)) or self._plan(type(event)) for event in events]
        results = [DispatchResult(event, []) for event in events]
        if any(plan.jobs for plan in plans):
            options = self._options.of(
                meta, delay_s, at, priority, queue, self.max_payload_bytes, self.validate
            )
            await self._insert_jobs(events, plans, results, options, conn)
        failures: list[Exception] = []
        for event, plan in zip(events, plans, strict=True):
            if plan.inline:
                await self._run_inline(event, plan, meta, failures)
        if failures:
            self._inline_failed(failures, errors, results[0] if single and results else results)
        return results

    def _inline_failed(
        self, failures: list[Exception], errors: ErrorMode | None, result: Any
    ) -> None:
        if (errors or self.errors) == "raise":
            raise DispatchError(f"{len(failures)} inline handler(s) failed", failures, result)
        for failure in failures:
            self.logger.error("inline handler failed", exc_info=failure)

    async def _insert_jobs(
        self,
        events: list[Any],
        plans: list[Plan],
        results: list[DispatchResult],
        options: JobOptions,
        conn: Any,
    ) -> None:
        """Build the rows, insert them in one ``insert_many``, record the outcomes."""
        new_jobs, owners = build_jobs(events, plans, options)
        observers = self.observers.of(JobsInserted)
        if observers:
            inserted = await insert_observed(self.store, new_jobs, conn, observers, self.logger)
        else:
            inserted = await self.store.insert_many(new_jobs, conn)
        woken = record_inserted(results, owners, new_jobs, inserted)
        if conn is None:  # inside the caller's transaction, workers learn of it after commit
            for name in woken:
                self.wake(name)

    async def _run_inline(
        self, event: Any, plan: Plan, meta: dict[str, Any], failures: list[Exception]
    ) -> None:
        ctx: Context[S] = Context(self.state, self, event, "", meta, self.handler_logger)
        middleware = self.middleware
        for spec in plan.inline:
            ctx.handler = spec.name
            try:
                if middleware:
                    await run_with_middleware(middleware, spec.call, event, ctx)
                else:
                    await spec.call(event, ctx)
            except Exception as exc:
                failures.append(exc)

    # -- workers
    def worker(
        self,
        *,
        queues: dict[str, int] | None = None,
        node: str | None = None,
        poll_interval: float | timedelta = 1.0,
        heartbeat_interval: float | timedelta = 5.0,
        node_ttl: float | timedelta = 30.0,
        rescue_interval: float | timedelta = 15.0,
        max_rescues: int = 3,
        grace: float | timedelta = 30.0,
        prune_interval: float | timedelta = 60.0,
        retention: Retention | None = None,
        handle_signals: bool = False,
        app: str | None = None,
        process_pool: int | None = None,
    ) -> Worker:
        """A worker running this bus's jobs: ``async with bus.worker(...):`` or ``w.run()``.

        ``app="module:bus"`` names this bus for the child processes of process handlers
        (``isolation="process"``), ``process_pool`` their number."""
        config = WorkerConfig.build(
            queues=queues,
            node=node,
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            node_ttl=node_ttl,
            rescue_interval=rescue_interval,
            max_rescues=max_rescues,
            grace=grace,
            prune_interval=prune_interval,
            retention=retention,
            handle_signals=handle_signals,
            app=app,
            process_pool=process_pool,
        )
        return Worker(self, config)
