from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relaybus.testing import FakeClock
from tests.stores import STORE_FACTORIES, drop_test_schemas

START = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_test_schemas() -> Iterator[None]:
    yield
    asyncio.run(drop_test_schemas())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(store_kind: str, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh, unopened store of each kind, on the fake clock."""
    async with STORE_FACTORIES[store_kind](clock, tmp_path) as created:
        yield created
