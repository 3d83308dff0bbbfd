"""Worker: wires the services of one node together and owns their shared lifecycle."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._context import ContextFactory
from .._driver import Claimed
from .._errors import ConfigurationError, StoreClosed
from .._isolation.call import CURRENT_POOL
from .._isolation.pool import ProcessPool
from .._isolation.setup import check_pool_options, pool_for
from .._observe import NodeStarted, NodeStopped, emit
from .._options import Retention
from .._validate import check_name, seconds
from .completer import Completer
from .elector import Elector
from .executor import Executor
from .maintenance import Heartbeat, Pruner, Rescuer, Stager
from .node import NodeState, Watchdog, node_id
from .producer import MAX_WAIT, Producer
from .scheduler import Scheduler
from .service import Env, Service

if TYPE_CHECKING:
    from .._bus import Bus

__all__ = ["Worker", "WorkerConfig"]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    queues: dict[str, int]
    node: str | None
    poll_interval: float
    heartbeat_interval: float
    node_ttl: float
    rescue_interval: float
    max_rescues: int
    grace: float
    prune_interval: float
    retention: Retention
    handle_signals: bool
    app: str | None = None  # MODULE:BUS, imported by the child processes of process handlers
    process_pool: int | None = None  # their number (default: see isolation.pool_size)

    @classmethod
    def build(
        cls,
        *,
        queues: dict[str, int] | None,
        node: str | None,
        poll_interval: float | timedelta,
        heartbeat_interval: float | timedelta,
        node_ttl: float | timedelta,
        rescue_interval: float | timedelta,
        max_rescues: int,
        grace: float | timedelta,
        prune_interval: float | timedelta,
        retention: Retention | None,
        handle_signals: bool,
        app: str | None = None,
        process_pool: int | None = None,
    ) -> WorkerConfig:
        queues = _check_queues({"default": 10} if queues is None else dict(queues))
        if node is not None:
            check_name("node", node)
        if not isinstance(max_rescues, int) or max_rescues < 1:
            raise ConfigurationError("max_rescues must be an integer >= 1")
        intervals = {
            "poll_interval": seconds("poll_interval", poll_interval),
            "heartbeat_interval": seconds("heartbeat_interval", heartbeat_interval),
            "node_ttl": seconds("node_ttl", node_ttl),
            "rescue_interval": seconds("rescue_interval", rescue_interval),
            "prune_interval": seconds("prune_interval", prune_interval),
        }
        for name, value in intervals.items():
            if value <= 0:
                raise ConfigurationError(f"{name} must be > 0")
        if intervals["heartbeat_interval"] >= intervals["node_ttl"]:
            raise ConfigurationError("heartbeat_interval must be shorter than node_ttl")
        check_pool_options(app, process_pool)
        return cls(
            queues=queues,
            node=node,
            grace=seconds("grace", grace),
            max_rescues=max_rescues,
            retention=retention or Retention(),
            handle_signals=handle_signals,
            app=app,
            process_pool=process_pool,
            **intervals,
        )


def _check_queues(queues: dict[str, int]) -> dict[str, int]:
    if not queues:
        raise ConfigurationError("queues= must name at least one queue")
    for name, concurrency in queues.items():
        check_name("queue", name)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigurationError(
                f"queue {name!r} concurrency must be an integer >= 1, not {concurrency!r}"
            )
    return queues


class Worker:
    """Runs the jobs of the configured queues on this node.

    ``async with bus.worker(...) as w:`` runs it in the background for the block (graceful stop
    on exit); or ``await w.run()`` until ``await w.stop(grace=...)``. The services are attributes
    (``producers``, ``completer``, ``heartbeat``, ``elector``, ``stager``, ``rescuer``,
    ``pruner``, ``scheduler``, ``watchdog``), each a
    :class:`~relaybus._runtime.service.Service` with ``run_once()`` for tests; the worker
    starts them all, then stops them all, the same way.
    """

    def __init__(self, bus: Bus[Any], config: WorkerConfig, env: Env | None = None) -> None:
        self.bus = bus
        self.config = config
        store = bus.store
        self.logger = bus.logger.getChild("worker")
        self.env = env = env or Env(self.logger, store.clock)
        self.node = NodeState(node_id(config.node), isolate_after=max(1, config.max_rescues - 1))
        self.executor = Executor(
            registry=bus.registry,
            middleware=bus.middleware,
            contexts=ContextFactory(bus, bus.handler_logger),
            logger=self.logger,
            clock=store.clock,
        )
        self.completer = Completer(store, env)
        self.observers = bus.observers  # shared: bus.observe applies to running workers
        beat, ttl = config.heartbeat_interval, config.node_ttl
        self.elector = Elector(
            store, self.node.id, ttl, beat, env, on_elected=self._on_elected,
            observers=self.observers,
        )  # fmt: skip
        self.heartbeat = Heartbeat(store, beat, env, self.node, ttl)
        self.stager = Stager(store, min(config.poll_interval, 1.0), env, self.elector, self._wake)
        self.rescuer = Rescuer(
            store,
            config.rescue_interval,
            env,
            self.elector,
            grace=config.grace,
            max_rescues=config.max_rescues,
            node=self.node.id,
            observers=self.observers,
        )
        self.pruner = Pruner(store, config.prune_interval, env, self.elector, config.retention)
        self.scheduler = Scheduler(
            bus, min(config.poll_interval, 1.0), env, self.elector, served=config.queues
        )
        self.producers = {
            queue: self._producer(queue, concurrency)
            for queue, concurrency in config.queues.items()
        }
        self.watchdog = self._watchdog()
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._grace = config.grace
        self._done = asyncio.Event()
        self._running = False
        self._background: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[Any]] = set()
        #: The child processes of the process handlers (``isolation="process"``) while it runs.
        self.pool: ProcessPool | None = None

    def __repr__(self) -> str:
        return f"Worker(node={self.node.id!r}, queues={self.config.queues!r})"

    def _producer(self, queue: str, concurrency: int) -> Producer:
        return Producer(
            queue=queue,
            concurrency=concurrency,
            store=self.bus.store,
            node=self.node,
            executor=self.executor,
            completer=self.completer,
            poll_interval=self.config.poll_interval,
            on_idle=self._node_idle,
            env=self.env,
            observers=self.observers,
            wait_limit=self._wait_limit(),
        )

    def _wait_limit(self) -> float:
        """How long a job claimed ahead may wait for a slot: a quarter of the grace, at most
        ``MAX_WAIT`` (0 with no grace: claim only for idle slots)."""
        return min(MAX_WAIT, self.config.grace / 4)

    def _watchdog(self) -> Watchdog:
        resolution = self._watchdog_resolution()
        limit = self._wait_limit()
        if limit > 0:  # a job waiting past its limit is handed back within another limit
            resolution = min(resolution, limit)
        return Watchdog(self.node, resolution, self.env, self._give_back)

    def _give_back(self, job: Claimed) -> None:
        self.producers[job.queue].give_back(job)

    def _watchdog_resolution(self) -> float:
        """A tenth of the shortest handler timeout (the watchdog bounds it to 5 ms - 1 s)."""
        timeouts = [s.timeout for s in self.bus.registry.job_by_name.values() if s.timeout]
        return min(timeouts, default=10.0) / 10

    @property
    def services(self) -> list[Service]:
        """Every service, in start order (they stop in the reverse order)."""
        maintenance = [
            self.heartbeat, self.elector, self.stager, self.rescuer, self.pruner, self.scheduler,
        ]
        return [self.completer, *maintenance, self.watchdog, *self.producers.values()]

    # -- wake-ups
    def _wake(self, queue: str) -> None:
        producer = self.producers.get(queue)
        if producer is not None:
            producer.wake()

    def _node_idle(self, isolated_ended: bool) -> None:
        for producer in self.producers.values():
            if isolated_ended or producer.retry_when_idle:
                producer.wake()

    def _cancel_local(self, job_id: int) -> None:
        self.node.cancel(job_id, "lost")

    def _on_elected(self) -> None:
        self.scheduler.reset()  # read the schedules' records again: another node may have led
        self.pruner.ran.clear()
        # Prune as soon as leadership is gained, then every prune_interval.
        task = asyncio.get_running_loop().create_task(self._prune_now())
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    async def _prune_now(self) -> None:
        try:
            await self.pruner.run_once()
        except Exception:
            self.logger.exception("pruning on election failed; the pruner tries again later")

    # -- lifecycle
    async def run(self) -> None:
        """Run until ``stop()`` (or a signal with ``handle_signals=True``); then stop gracefully."""
        if self._running:
            raise RuntimeError("this worker is already running")
        self._running = True
        try:
            if not getattr(self.bus, "_open", False):
                raise StoreClosed("open the bus before running a worker: `async with bus:`")
            # Room in the pool for this node's own statements while every slot holds a
            # ctx.transaction() (at least concurrency + 3 connections).
            self.bus.store.reserve_connections(sum(self.config.queues.values()))
            self.pool = pool_for(self.bus.registry, self.config, self.logger)
            if self.pool is not None:
                await self.pool.start()
            token = CURRENT_POOL.set(self.pool)  # the services' tasks inherit it
            try:
                await self.heartbeat.run_once()  # the node row exists before the first claim
                disconnect = await self._connect()
                try:
                    await self._serve()
                finally:
                    await self._stop_services()
                    await disconnect()
            finally:
                CURRENT_POOL.reset(token)
                if self.pool is not None:
                    await self.pool.stop()
        finally:
            self._done.set()

    async def _connect(self) -> Callable[[], Awaitable[None]]:
        """Hook this node up to wake-ups, admin cancels and signals; returns the undo."""
        bus = self.bus
        unsubscribe = await bus.store.subscribe(self._wake)
        removers = [bus.add_waker(queue, p.wake) for queue, p in self.producers.items()]
        removers.append(bus.add_canceller(self._cancel_local))
        removers.append(self._install_signals())

        async def disconnect() -> None:
            for remove in removers:
                remove()
            if unsubscribe is not None:
                await self._attempt("unsubscribing", unsubscribe)
            await self._attempt("resigning leadership", self.elector.resign)
            await self._attempt("releasing the node", lambda: bus.store.release_node(self.node.id))
            self.logger.info("worker %s stopped", self.node.id)
            if stopped := self.observers.of(NodeStopped):
                emit(stopped, NodeStopped(self.node.id), self.logger)

        return disconnect

    async def _serve(self) -> None:
        """Start every service, run until asked to stop, then finish or hand back the jobs."""
        self.watchdog = self._watchdog()
        for service in self.services:
            service.start()
        self.logger.info("worker %s started: %s", self.node.id, self.config.queues)
        if started := self.observers.of(NodeStarted):
            emit(started, NodeStarted(self.node.id, dict(self.config.queues)), self.logger)
        self._warn_if_idle_by_design()
        try:
            await self._stop_requested.wait()
            await self._finish_jobs()
        except asyncio.CancelledError:
            self._force.set()
            await asyncio.shield(self._finish_jobs())
            raise

    def _warn_if_idle_by_design(self) -> None:
        """A worker whose queues serve none of the bus's job handlers would run nothing:
        say so, naming the queues the handlers use."""
        handler_queues = sorted({spec.queue for spec in self.bus.registry.job_by_name.values()})
        served = self.config.queues
        if not handler_queues:
            self.logger.warning(
                "worker %s: this bus has no job handlers, so it runs only jobs whose handlers "
                "other code registers (it will fail jobs of unknown handlers)", self.node.id,
            )
        elif not any(queue in served for queue in handler_queues):
            self.logger.warning(
                "worker %s serves queues %s, but no job handler of this bus uses them: the "
                "handlers' queues are %s",
                self.node.id, sorted(served), handler_queues,
            )

    async def _finish_jobs(self) -> None:
        """Stop fetching; let running jobs end within grace; stop and hand back the rest."""
        await asyncio.gather(*(producer.stop() for producer in self.producers.values()))
        slots = [slot for producer in self.producers.values() for slot in producer.slots]
        await self._await_within_grace([slot for slot in slots if not slot.done()])
        for run in list(self.node.runs.values()):
            self.node.cancel(run.job_id, "shutdown")
        await asyncio.gather(*slots, return_exceptions=True)
        await self.completer.flush()

    async def _await_within_grace(self, slots: list[asyncio.Task[None]]) -> None:
        """Return as soon as every slot has ended, the grace is over, or a stop is forced."""
        if not slots or self._grace <= 0 or self._force.is_set():
            return
        ended: asyncio.Future[Any] = asyncio.gather(*slots, return_exceptions=True)
        forced: asyncio.Future[Any] = asyncio.ensure_future(self._force.wait())
        try:
            await asyncio.wait(
                [ended, forced], timeout=self._grace, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            forced.cancel()

    async def _stop_services(self) -> None:
        for service in reversed(self.services):
            await service.stop()  # logs whatever the service ended with
            if service is self.pruner:
                await asyncio.gather(*self._helpers, return_exceptions=True)

    async def _attempt(self, what: str, step: Callable[[], Awaitable[Any]]) -> None:
        """One teardown step: a failure is logged, and the next steps still run."""
        try:
            await step()
        except Exception:
            self.logger.warning(
                "%s failed while stopping worker %s", what, self.node.id, exc_info=True
            )

    async def stop(self, grace: float | timedelta | None = None) -> None:
        """Stop fetching, let running jobs finish within ``grace`` (default: the worker's),
        return the rest to ``available`` without charging an attempt, and wait for all that."""
        if grace is not None:
            value = seconds("grace", grace)
            if self._stop_requested.is_set():
                if value < self._grace:
                    self._force.set()
            else:
                self._grace = value
        self._stop_requested.set()
        if self._running:
            await self._done.wait()

    def _install_signals(self) -> Callable[[], None]:
        if not self.config.handle_signals:
            return lambda: None
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)

        def on_signal() -> None:
            if self._stop_requested.is_set():
                self.logger.warning("second signal: cancelling running jobs now")
                self._force.set()
            else:
                self.logger.info("signal received: stopping gracefully")
                self._stop_requested.set()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal)

        def remove() -> None:
            for sig in signals:
                loop.remove_signal_handler(sig)

        return remove

    # -- async context manager
    async def __aenter__(self) -> Worker:
        self._background = asyncio.create_task(self.run())
        started = asyncio.ensure_future(self.heartbeat.ran.wait())
        await asyncio.wait([self._background, started], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._background.done():
            self._background.result()  # raise what stopped it
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if self._background is not None:
            await self._background
