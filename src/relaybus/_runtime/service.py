"""The lifecycle every background service shares: ``run_once()`` plus a periodic loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["Periodic"]


class Periodic:
    """A service that does ``run_once()`` every ``interval`` seconds until stopped.

    Failures are logged and retried on the next tick: a maintenance service never dies, and
    never takes the worker down. ``leader_only`` services skip ticks while the node is not the
    leader (see :class:`~relaybus._runtime.elector.Elector`).
    """

    name = "service"
    leader_only = False

    def __init__(self, interval: float, logger: logging.Logger) -> None:
        self.interval = interval
        self.logger = logger
        self.ran = asyncio.Event()  # set after each successful run_once (a test signal)

    async def run_once(self) -> Any:
        raise NotImplementedError

    def active(self) -> bool:
        """Whether this tick should run (leader-only services override)."""
        return True

    async def loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            if self.active():
                try:
                    await self.run_once()
                    self.ran.set()
                except Exception:
                    self.logger.exception("%s failed; retrying in %.3gs", self.name, self.interval)
            try:
                async with asyncio.timeout(self.interval):
                    await stopping.wait()
            except TimeoutError:
                pass
