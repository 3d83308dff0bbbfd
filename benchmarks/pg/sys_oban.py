"""Oban for Python (needs Python >= 3.12; run from its own venv): ``Oban(pool=...)``,
``oban.enqueue`` / ``oban.enqueue_many``, ``Oban(queues={'default': C})``."""

from __future__ import annotations

import logging
from typing import Any

from oban import Oban, worker
from oban.schema import install as install_schema

from . import hooks

logging.getLogger("oban").setLevel(logging.WARNING)


@worker(queue="default")
class Bench:
    async def process(self, job: Any) -> None:
        hooks.job_ran(job.args["i"], job.args["t"])


def _new(args: dict[str, Any]) -> Any:
    """``Bench.new(args)``: the method is added by Oban's ``@worker`` decorator."""
    factory: Any = Bench
    return factory.new(args)


class Adapter:
    name = "oban"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: Any = None
        self.oban: Any = None

    async def install(self) -> None:
        pool = await Oban.create_pool(self.dsn)
        await install_schema(pool)
        await pool.close()

    async def open_client(self) -> None:
        self.pool = await Oban.create_pool(self.dsn)
        self.oban = Oban(pool=self.pool)
        await self.oban.start()

    async def enqueue_one(self, i: int, t: float) -> None:
        await self.oban.enqueue(_new({"i": i, "t": t}))

    async def enqueue_batch(self, items: list[tuple[int, float]]) -> None:
        await self.oban.enqueue_many([_new({"i": i, "t": t}) for i, t in items])

    async def close_client(self) -> None:
        if self.oban is not None:
            await self.oban.stop()
        if self.pool is not None:
            await self.pool.close()
        self.oban = self.pool = None

    async def start_worker(self, concurrency: int) -> None:
        self.pool = await Oban.create_pool(self.dsn)
        self.oban = Oban(pool=self.pool, queues={"default": concurrency})
        await self.oban.start()

    async def stop_worker(self) -> None:
        await self.close_client()
