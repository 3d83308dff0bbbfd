"""Leader-only maintenance: Stager, Rescuer, Pruner (plus the node's Heartbeat)."""

from __future__ import annotations

from collections.abc import Callable

from .._driver import Driver, HeartbeatParams, PruneParams, RescueParams, StageParams
from .._observe import JobRescued, Observers, emit
from .._options import Retention
from .._types import TERMINAL_STATES
from .elector import Elector
from .executor import job_fields
from .node import NodeState
from .service import Backoff, Env, Periodic

__all__ = ["Heartbeat", "Pruner", "Rescuer", "Stager"]


class _LeaderService(Periodic):
    leader_only = True

    def __init__(self, interval: float, env: Env, elector: Elector) -> None:
        super().__init__(interval, env)
        self._elector = elector

    def active(self) -> bool:
        return self._elector.is_leader()


class Stager(_LeaderService):
    """Makes due scheduled and retryable jobs available, and wakes local producers."""

    name = "stager"

    def __init__(
        self,
        store: Driver,
        interval: float,
        env: Env,
        elector: Elector,
        wake: Callable[[str], None],
    ) -> None:
        super().__init__(interval, env, elector)
        self._store = store
        self._wake = wake

    async def run_once(self) -> int:
        total = 0
        while True:
            queues = await self._store.stage(StageParams(limit=1000))
            for queue in queues:
                self._wake(queue)
            total += len(queues)
            if not queues:
                return total


class Rescuer(_LeaderService):
    """Returns the running jobs of dead nodes (and jobs past timeout + grace) to retryable."""

    name = "rescuer"

    def __init__(
        self,
        store: Driver,
        interval: float,
        env: Env,
        elector: Elector,
        *,
        grace: float,
        max_rescues: int,
        node: str = "",
        observers: Observers | None = None,
    ) -> None:
        super().__init__(interval, env, elector)
        self._store = store
        self._params = RescueParams(grace=grace, max_rescues=max_rescues)
        self._node = node
        self._observers = observers if observers is not None else Observers()

    async def run_once(self) -> int:
        total = 0
        while True:
            rescued = await self._store.rescue(self._params)
            total += len(rescued)
            observers = self._observers.of(JobRescued)
            if observers:
                for r in rescued:
                    event = JobRescued(self._node, r.id, r.handler, r.queue, r.attempt, r.state)
                    emit(observers, event, self.logger)
            if len(rescued) < self._params.limit:
                if total:
                    self.logger.warning(
                        "rescued %d jobs (their node's lease expired, or they ran past their "
                        "timeout plus grace)", total,
                    )
                return total


class Pruner(_LeaderService):
    """Deletes finished jobs past their retention, in bounded batches."""

    name = "pruner"

    def __init__(
        self,
        store: Driver,
        interval: float,
        env: Env,
        elector: Elector,
        retention: Retention,
    ) -> None:
        super().__init__(interval, env, elector)
        self._store = store
        self._params = PruneParams(
            retention={state: retention.seconds_for(state) for state in TERMINAL_STATES},
            limit=1000,
        )

    async def run_once(self) -> int:
        total = 0
        while True:
            pruned = await self._store.prune(self._params)
            total += pruned
            if pruned < self._params.limit:
                return total


class Heartbeat(Periodic):
    """Stamps this node alive (the store's clock) and stops runs the store took away. While
    the store fails it retries at least every ``interval``, so the node keeps its lease."""

    name = "heartbeat"

    def __init__(
        self,
        store: Driver,
        interval: float,
        env: Env,
        node: NodeState,
        ttl: float,
    ) -> None:
        super().__init__(interval, env, Backoff(first=min(interval, 1.0), cap=interval))
        self._store = store
        self._node = node
        self._ttl = ttl

    async def run_once(self) -> list[int]:
        lost = await self._store.heartbeat(
            HeartbeatParams(self._node.id, self._ttl, self._node.running_pairs())
        )
        node = self._node
        for job_id in lost:
            run = node.runs.get(job_id)
            waiting = node.waiting.get(job_id)
            if run is not None and node.cancel(job_id, "lost"):
                self.logger.warning(
                    "job %s (%s) on %s attempt %s was cancelled or rescued elsewhere; stopped it",
                    job_id, run.handler, run.queue, run.attempt, extra=run.log_fields(),
                )
            elif waiting is not None and node.cancel(job_id, "lost"):
                job = waiting.job
                self.logger.warning(
                    "job %s (%s) on %s attempt %s was cancelled or rescued elsewhere before it "
                    "started here; dropped it",
                    job_id, job.handler, job.queue, job.attempt, extra=job_fields(job),
                )
        return lost
