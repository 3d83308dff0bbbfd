"""Completer: writes the ends of runs to the store in batches, never dropping one."""

from __future__ import annotations

import asyncio
import logging

from .._driver import Completion, Driver

__all__ = ["Completer"]


class Completer:
    """Collects completions and flushes them with ``complete_many``.

    While one flush is in flight, new completions queue up and go together in the next one, so
    batches grow with load without any timer. A failed flush (dropped connection) is retried
    with backoff; the fencing in the store makes a late write harmless.
    """

    def __init__(self, store: Driver, logger: logging.Logger) -> None:
        self._store = store
        self._logger = logger
        self._pending: list[Completion] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    def add(self, completion: Completion) -> None:
        self._pending.append(completion)
        self._idle.clear()
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
                self._idle.set()
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._pending = self._pending, []
            try:
                await self._store.complete_many(batch)
                delay = 0.05
            except Exception:
                self._logger.exception(
                    "writing %d completions failed; retrying in %.2gs", len(batch), delay
                )
                self._pending[:0] = batch
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
