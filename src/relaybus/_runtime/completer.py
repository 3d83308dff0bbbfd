"""Completer: writes the ends of runs to the store in batches, never dropping one."""

from __future__ import annotations

import asyncio
import logging

from .._driver import Completion, Driver

__all__ = ["Completer"]


class Completer:
    """Collects completions and writes them in batches.

    A producer about to fetch takes every pending completion along (``take``), so that one
    statement finishes a node's last runs and claims its next ones; what no fetch carries, the
    completer writes itself with ``complete_many``. While a write is in flight new completions
    queue up and go together in the next one, so batches grow with load without any timer. A
    failed write (dropped connection) is given back and retried with backoff; the fencing in the
    store makes a late or repeated write harmless.
    """

    def __init__(self, store: Driver, logger: logging.Logger) -> None:
        self._store = store
        self._logger = logger
        self._pending: list[Completion] = []
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    def add(self, completion: Completion) -> None:
        self._pending.append(completion)
        self._idle.clear()
        self._wake.set()

    def take(self) -> list[Completion]:
        """Everything pending, for a write elsewhere: ``settle`` it once written, or
        ``restore`` it if the write failed."""
        batch, self._pending = self._pending, []
        self._in_flight += len(batch)
        return batch

    def settle(self, batch: list[Completion]) -> None:
        self._in_flight -= len(batch)
        if not self._pending and not self._in_flight:
            self._idle.set()

    def restore(self, batch: list[Completion]) -> None:
        self._in_flight -= len(batch)
        if batch:
            self._pending[:0] = batch
            self._wake.set()

    async def flush(self) -> None:
        """Wait until every completion added so far is written."""
        await self._idle.wait()

    def close(self) -> None:
        """Let ``run`` return once everything pending is written."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        delay = 0.05
        while True:
            if not self._pending:
                if not self._in_flight:
                    self._idle.set()
                    if self._closing:
                        return
                await self._wake.wait()
                self._wake.clear()
                # Yield once: a producer woken by the same finished runs fetches now and
                # carries these completions in its own statement.
                await asyncio.sleep(0)
                continue
            batch = self.take()
            try:
                await self._store.complete_many(batch)
            except Exception:
                self._logger.exception(
                    "writing %d completions failed; retrying in %.2gs", len(batch), delay
                )
                self.restore(batch)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                self.settle(batch)
                delay = 0.05
