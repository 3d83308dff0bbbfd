"""Store factories for tests: one entry per store kind, used by the conformance suite.

A store that needs a server it cannot reach is skipped locally but FAILS under CI=true, so a
missing database never passes silently.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from relaybus._clock import Clock
from relaybus.stores.memory import MemoryStore

PG_DSN = os.environ.get("RELAYBUS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_DSN = os.environ.get("RELAYBUS_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")


def server_missing(what: str, error: BaseException) -> None:
    """Skip locally; fail under CI=true (a skipped test is not a passed test)."""
    message = f"{what} is not reachable: {error!r}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def memory_store(clock: Clock, tmp_path: Path) -> AsyncIterator[Any]:
    yield MemoryStore(clock=clock)


STORE_FACTORIES: dict[str, Callable[[Clock, Path], AbstractAsyncContextManager[Any]]] = {
    "memory": memory_store,
}
