"""Elector: one node at a time leads and runs the maintenance services."""

from __future__ import annotations

from collections.abc import Callable

from .._driver import Driver, ElectParams
from .._observe import LeadershipGained, LeadershipLost, Observers, emit
from .service import Backoff, Env, Periodic

__all__ = ["Elector"]


class Elector(Periodic):
    """Tries to take or renew a lease of ``ttl`` in the store every ``interval``.

    Leadership is trusted only until the local monotonic deadline (the time the attempt
    started + ttl), so a node paused past its lease stops acting as leader on its own. While
    the store fails it retries at least every ``interval``: its own backoff never costs the
    node its lease.
    """

    name = "elector"

    def __init__(
        self,
        store: Driver,
        node: str,
        ttl: float,
        interval: float,
        env: Env,
        on_elected: Callable[[], None] | None = None,
        observers: Observers | None = None,
    ) -> None:
        super().__init__(interval, env, Backoff(first=min(interval, 1.0), cap=interval))
        self._store = store
        self._clock = env.clock
        self._node = node
        self._ttl = ttl
        self._until = float("-inf")
        self._on_elected = on_elected
        self._observers = observers if observers is not None else Observers()
        self._reported = False  # observers were told this node leads

    def _report(self, leading: bool) -> None:
        """Tell observers about a change of leadership (a lapsed lease retaken: lost, gained)."""
        if not self._observers:
            return
        if self._reported:
            emit(self._observers.of(LeadershipLost), LeadershipLost(self._node), self.logger)
        if leading:
            emit(self._observers.of(LeadershipGained), LeadershipGained(self._node), self.logger)
        self._reported = leading

    def is_leader(self) -> bool:
        return self._clock.monotonic() < self._until

    async def run_once(self) -> bool:
        started = self._clock.monotonic()
        was_leader = self.is_leader()
        if await self._store.elect(ElectParams(self._node, self._ttl)):
            self._until = started + self._ttl
            if not was_leader:
                self.logger.info("node %s is now the leader", self._node)
                if self._on_elected is not None:
                    self._on_elected()
                self._report(True)
            return True
        self._until = float("-inf")
        if self._reported:
            self._report(False)
        return False

    async def resign(self) -> None:
        if self._until > float("-inf"):
            self._until = float("-inf")
            if self._reported:
                self._report(False)
            await self._store.resign(self._node)
