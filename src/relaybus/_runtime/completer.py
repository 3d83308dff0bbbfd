"""Completer: writes the ends of runs to the store in batches, never dropping one."""

from __future__ import annotations

import asyncio

from .._driver import Completion, Driver
from .service import Backoff, Env, Outage, Service

__all__ = ["Completer"]


#: Retrying a failed write: from 50 ms, doubling, up to 5 s (completions are waiting).
WRITE_BACKOFF = Backoff(first=0.05, cap=5.0)


class Completer(Service):
    """Collects completions and writes them in batches.

    A producer about to fetch takes every pending completion along (``take``), so that one
    statement finishes a node's last runs and claims its next ones; what no fetch carries, the
    completer writes itself with ``complete_many``. While a write is in flight new completions
    queue up and go together in the next one, so batches grow with load without any timer. A
    failed write (dropped connection) is given back and retried with backoff; the fencing in the
    store makes a late or repeated write harmless. ``stop()`` returns once everything pending is
    written.
    """

    name = "completer"

    def __init__(self, store: Driver, env: Env, backoff: Backoff = WRITE_BACKOFF) -> None:
        super().__init__(env)
        self._store = store
        self._backoff = backoff
        self.outage = Outage("writing completions", env.logger, env.clock)
        self._never = asyncio.Event()  # a retry wait that stopping does not cut short
        self._pending: list[Completion] = []
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

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

    def _wake_for_stop(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Write everything pending in one ``complete_many`` (given back if it fails)."""
        batch = self.take()
        try:
            if batch:
                await self._store.complete_many(batch)
        except BaseException:
            self.restore(batch)
            raise
        self.settle(batch)
        return len(batch)

    async def _main(self) -> None:
        while True:
            if not self._pending:
                if not self._in_flight:
                    self._idle.set()
                    if self._stopping.is_set():
                        return
                await self._wake.wait()
                self._wake.clear()
                # Yield once: a producer woken by the same finished runs fetches now and
                # carries these completions in its own statement.
                await asyncio.sleep(0)
                continue
            try:
                written = await self.run_once()
            except Exception as exc:
                delay = self._backoff.delay(self.outage.failures + 1, self.env.rng)
                self.outage.failed(exc, delay)
                await self.env.sleep(delay, self._never)  # even when stopping: never drop
            else:
                if written:
                    self.outage.recovered()
