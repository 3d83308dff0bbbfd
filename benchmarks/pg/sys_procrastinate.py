"""Procrastinate: ``PsycopgConnector`` (psycopg 3 pool), ``task.defer_async`` /
``task.batch_defer_async``, ``app.run_worker_async(concurrency=C)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import procrastinate

from . import hooks

logging.getLogger("procrastinate").setLevel(logging.WARNING)


async def bench(i: int, t: float) -> None:
    hooks.job_ran(i, t)


class Adapter:
    name = "procrastinate"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
        self.bench = self.app.task(name="bench", queue="default")(bench)
        self.task: asyncio.Task[None] | None = None

    async def _open(self) -> None:
        await self.app.open_async()

    async def install(self) -> None:
        await self._open()
        await self.app.schema_manager.apply_schema_async()
        await self.app.close_async()

    async def open_client(self) -> None:
        await self._open()

    async def enqueue_one(self, i: int, t: float) -> None:
        await self.bench.defer_async(i=i, t=t)

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        kwargs: list[Any] = [{"i": i, "t": t} for i, t in items]
        await self.bench.batch_defer_async(*kwargs)

    async def close_client(self) -> None:
        await self.app.close_async()

    async def start_worker(self, concurrency: int) -> None:
        # psycopg_pool's default is 4 connections; the worker needs one per concurrent job
        # plus its LISTEN connection, else jobs queue for a connection.
        connector = procrastinate.PsycopgConnector(
            conninfo=self.dsn, min_size=concurrency + 2, max_size=concurrency + 2
        )
        self.app = procrastinate.App(connector=connector)
        self.bench = self.app.task(name="bench", queue="default")(bench)
        await self._open()
        self.task = asyncio.create_task(
            self.app.run_worker_async(
                concurrency=concurrency,
                wait=True,
                install_signal_handlers=False,
                listen_notify=True,
            )
        )
        await asyncio.sleep(0)

    async def stop_worker(self) -> None:
        if self.task is not None:
            self.task.cancel()  # procrastinate's documented way to stop an embedded worker
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.app.close_async()
