"""Worker: wires the services of one node together and owns their shared lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, StoreClosed
from .._options import Retention
from .._validate import check_name, seconds
from .completer import Completer
from .elector import Elector
from .executor import Executor
from .maintenance import Heartbeat, Pruner, Rescuer, Stager
from .node import NodeState, Watchdog, node_id
from .producer import Producer
from .service import Periodic

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
    ) -> WorkerConfig:
        queues = {"default": 10} if queues is None else dict(queues)
        if not queues:
            raise ConfigurationError("queues= must name at least one queue")
        for name, concurrency in queues.items():
            check_name("queue", name)
            if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
                raise ConfigurationError(
                    f"queue {name!r} concurrency must be an integer >= 1, not {concurrency!r}"
                )
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
        return cls(
            queues=queues,
            node=node,
            grace=seconds("grace", grace),
            max_rescues=max_rescues,
            retention=retention or Retention(),
            handle_signals=handle_signals,
            **intervals,
        )


class Worker:
    """Runs the jobs of the configured queues on this node.

    ``async with bus.worker(...) as w:`` runs it in the background for the block (graceful stop
    on exit); or ``await w.run()`` until ``await w.stop(grace=...)``. The services are attributes
    (``producers``, ``completer``, ``heartbeat``, ``elector``, ``stager``, ``rescuer``,
    ``pruner``), each with ``run_once()`` for tests.
    """

    def __init__(self, bus: Bus[Any], config: WorkerConfig) -> None:
        self.bus = bus
        self.config = config
        store = bus.store
        logger = bus.logger.getChild("worker")
        self.logger = logger
        self.node = NodeState(node_id(config.node), isolate_after=max(1, config.max_rescues - 1))
        self.executor = Executor(bus, logger)
        self.completer = Completer(store, logger)
        self.elector = Elector(
            store,
            store.clock,
            self.node.id,
            config.node_ttl,
            config.heartbeat_interval,
            logger,
            on_elected=self._on_elected,
        )
        self.heartbeat = Heartbeat(
            store, config.heartbeat_interval, logger, self.node, config.node_ttl
        )
        self.stager = Stager(
            store, min(config.poll_interval, 1.0), logger, self.elector, self._wake_queue
        )
        self.rescuer = Rescuer(
            store,
            config.rescue_interval,
            logger,
            self.elector,
            grace=config.grace,
            max_rescues=config.max_rescues,
        )
        self.pruner = Pruner(store, config.prune_interval, logger, self.elector, config.retention)
        self.producers = {
            queue: Producer(
                queue=queue,
                concurrency=concurrency,
                store=store,
                node=self.node,
                executor=self.executor,
                completer=self.completer,
                poll_interval=config.poll_interval,
                on_idle=self._node_idle,
                logger=logger,
            )
            for queue, concurrency in config.queues.items()
        }
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._stopping = asyncio.Event()
        self._grace = config.grace
        self._done = asyncio.Event()
        self._running = False
        self._background: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"Worker(node={self.node.id!r}, queues={self.config.queues!r})"

    # -- wake-ups
    def _wake_queue(self, queue: str) -> None:
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
        self.pruner.ran.clear()
        # Prune as soon as leadership is gained, then every prune_interval.
        task = asyncio.get_running_loop().create_task(self._prune_now())
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    async def _prune_now(self) -> None:
        try:
            await self.pruner.run_once()
        except Exception:
            self.logger.exception("pruning failed")

    # -- lifecycle
    async def run(self) -> None:
        """Run until ``stop()`` (or a signal with ``handle_signals=True``); then stop gracefully."""
        if self._running:
            raise RuntimeError("this worker is already running")
        self._running = True
        bus = self.bus
        if not getattr(bus, "_open", False):
            raise StoreClosed("open the bus before running a worker: `async with bus:`")
        await self.heartbeat.run_once()  # the node row exists before the first claim
        unsubscribe = await bus.store.subscribe(self._wake_queue)
        removers = [bus.add_waker(queue, p.wake) for queue, p in self.producers.items()]
        removers.append(bus.add_canceller(self._cancel_local))
        removers.append(self._install_signals())
        services: list[Periodic] = [self.heartbeat, self.elector, self.stager, self.rescuer]
        services.append(self.pruner)
        service_tasks = [asyncio.create_task(s.loop(self._stopping)) for s in services]
        timeouts = [s.timeout for s in bus.registry.job_by_name.values() if s.timeout]
        self.watchdog = Watchdog(self.node, min(timeouts, default=10.0) / 10)
        service_tasks.append(asyncio.create_task(self.watchdog.loop(self._stopping)))
        completer_task = asyncio.create_task(self.completer.run())
        producer_tasks = [asyncio.create_task(p.run()) for p in self.producers.values()]
        self.logger.info("worker %s started: %s", self.node.id, self.config.queues)
        try:
            await self._stop_requested.wait()
            await self._shutdown(producer_tasks)
        except asyncio.CancelledError:
            self._force.set()
            await asyncio.shield(self._shutdown(producer_tasks))
            raise
        finally:
            self._stopping.set()
            self.completer.close()
            with contextlib.suppress(Exception):
                await completer_task
            for task in service_tasks:
                task.cancel()
            await asyncio.gather(*service_tasks, *self._helpers, return_exceptions=True)
            for remove in removers:
                remove()
            if unsubscribe is not None:
                with contextlib.suppress(Exception):
                    await unsubscribe()
            with contextlib.suppress(Exception):
                await self.elector.resign()
            with contextlib.suppress(Exception):
                await bus.store.release_node(self.node.id)
            self._done.set()
            self.logger.info("worker %s stopped", self.node.id)

    async def _shutdown(self, producer_tasks: list[asyncio.Task[None]]) -> None:
        for producer in self.producers.values():
            producer.stop()
        await asyncio.gather(*producer_tasks, return_exceptions=True)
        slots = [slot for producer in self.producers.values() for slot in producer.slots]
        pending = [slot for slot in slots if not slot.done()]
        if pending and self._grace > 0 and not self._force.is_set():
            force = asyncio.ensure_future(self._force.wait())
            try:
                await asyncio.wait([*pending, force], timeout=self._grace)
            finally:
                force.cancel()
        for run in list(self.node.runs.values()):
            self.node.cancel(run.job_id, "shutdown")
        await asyncio.gather(*slots, return_exceptions=True)
        await self.completer.flush()

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

    def _install_signals(self) -> Any:
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
