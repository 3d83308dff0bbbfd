"""Elector: one node at a time leads and runs the maintenance services."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._clock import Clock
from .._driver import Driver, ElectParams
from .service import Periodic

__all__ = ["Elector"]


class Elector(Periodic):
    """Tries to take or renew a lease of ``ttl`` in the store every ``interval``.

    Leadership is trusted only until the local monotonic deadline (the time the attempt
    started + ttl), so a node paused past its lease stops acting as leader on its own.
    """

    name = "elector"

    def __init__(
        self,
        store: Driver,
        clock: Clock,
        node: str,
        ttl: float,
        interval: float,
        logger: logging.Logger,
        on_elected: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(interval, logger)
        self._store = store
        self._clock = clock
        self._node = node
        self._ttl = ttl
        self._until = float("-inf")
        self._on_elected = on_elected

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
            return True
        self._until = float("-inf")
        return False

    async def resign(self) -> None:
        if self._until > float("-inf"):
            self._until = float("-inf")
            await self._store.resign(self._node)
