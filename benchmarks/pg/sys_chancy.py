"""Chancy: ``Chancy(dsn)`` (psycopg 3 pool), ``push`` / ``push_many``, ``Worker`` with the
asyncio executor."""

from __future__ import annotations

import logging
from typing import Any

from chancy import Chancy, Job, Queue, Worker

from . import hooks

QUEUE = "default"


async def bench(*, i: int, t: float) -> None:
    hooks.job_ran(i, t)


def _log() -> logging.Logger:
    log = logging.getLogger("bench.chancy")
    log.setLevel(logging.WARNING)
    return log


class Adapter:
    name = "chancy"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.chancy: Any = None
        self.worker: Any = None

    async def _open(self) -> Any:
        self.chancy = Chancy(self.dsn, log=_log())
        await self.chancy.__aenter__()
        return self.chancy

    async def install(self, concurrency: int = 10) -> None:
        chancy = await self._open()
        await chancy.migrate()
        await chancy.declare(
            Queue(
                QUEUE,
                concurrency=concurrency,
                executor=Chancy.Executor.Async,
                polling_interval=1,
                eager_polling=True,
            ),
            upsert=True,
        )
        await chancy.__aexit__(None, None, None)

    async def open_client(self) -> None:
        await self._open()
        self.job = Job.from_func(bench, queue=QUEUE)

    async def enqueue_one(self, i: int, t: float) -> None:
        await self.chancy.push(self.job.with_kwargs(i=i, t=t))

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        jobs = [self.job.with_kwargs(i=i, t=t) for i, t in items]
        async for _refs in self.chancy.push_many(jobs, batch_size=1000):
            pass

    async def close_client(self) -> None:
        if self.chancy is not None:
            await self.chancy.__aexit__(None, None, None)
            self.chancy = None

    async def start_worker(self, concurrency: int) -> None:
        chancy = await self._open()
        self.worker = Worker(chancy, register_signal_handlers=False)
        await self.worker.start()

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        await self.close_client()
