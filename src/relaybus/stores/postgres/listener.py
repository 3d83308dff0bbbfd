"""LISTEN on a store's channel, with reconnects: one connection held for notifications."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = ["ListenSource", "Listener"]

_logger = logging.getLogger("relaybus.postgres")
_LISTEN_PING = 10.0  # seconds between health checks of the LISTEN connection


class ListenSource(Protocol):
    """Where a listener gets its connection (the executor)."""

    ping_sql: str

    async def listen_connection(self) -> tuple[Any, Callable[[], Awaitable[None]]]: ...

    def describe(self, exc: BaseException) -> str: ...


def _set_event(event: asyncio.Event, *_: Any) -> None:
    event.set()


class Listener:
    """LISTEN on the store's channel; call ``on_insert(queue)`` per notification. Reconnects by
    itself, with backoff, when the connection drops (a database restart, a terminated backend,
    a half-open socket found by a periodic ping)."""

    def __init__(
        self,
        source: ListenSource,
        channel: str,
        on_insert: Callable[[str], None],
        stopped: Callable[[Listener], None],
    ) -> None:
        self._source = source
        self._channel = channel
        self._on_insert = on_insert
        self._stopped = stopped
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._queues: set[str] = set()
        self.ping_interval = _LISTEN_PING
        self.connections = 0  # how many times LISTEN was (re)established

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relaybus-postgres-listen")
        try:
            async with asyncio.timeout(10):
                await self._ready.wait()
        except TimeoutError:
            _logger.warning("LISTEN is not established yet; polling until it is")

    async def stop(self) -> None:
        self._stopping = True
        self._stopped(self)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if len(self._queues) < 1024:
            self._queues.add(payload)
        try:
            self._on_insert(payload)
        except Exception:
            _logger.exception("on_insert callback failed for queue %r", payload)

    async def _give_back(self, conn: Any, release: Callable[[], Awaitable[None]]) -> None:
        if not conn.is_closed():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await conn.remove_listener(self._channel, self._notified)
        await release()

    async def _run(self) -> None:
        source = self._source
        delay = 0.05
        while not self._stopping:
            release: Callable[[], Awaitable[None]] | None = None
            conn: Any = None
            try:
                conn, release = await source.listen_connection()
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await conn.add_listener(self._channel, self._notified)
                self.connections += 1
                if self.connections > 1:
                    _logger.info("LISTEN re-established on %s", self._channel)
                    for queue in list(self._queues):  # whatever was missed meanwhile
                        self._notified(conn, 0, self._channel, queue)
                self._ready.set()
                delay = 0.05
                while not lost.is_set():
                    try:
                        async with asyncio.timeout(self.ping_interval):
                            await lost.wait()
                    except TimeoutError:
                        async with asyncio.timeout(max(self.ping_interval, 5.0)):
                            await conn.fetchval(source.ping_sql)
                raise ConnectionError("the LISTEN connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    break
                _logger.warning(
                    "LISTEN connection lost (%s); reconnecting in %.2fs",
                    source.describe(exc),
                    delay,
                )
            finally:
                if release is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._give_back(conn, release))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 5.0)
