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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.stores("postgres", ...)``: a store-parametrized test that does not apply
    to a store kind is deselected for it (it never shows as a skipped test)."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("stores")
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("store_kind") if callspec is not None else None
        if marker is not None and kind is not None and kind not in marker.args:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
