"""The Driver suite runs every test over every store of tests/stores.py (memory, postgres,
sqlite), each opened, on the fake clock of tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relaybus.testing import FakeClock
from tests.stores import STORE_FACTORIES


@pytest.fixture
async def store(store_kind: str, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh store of each kind, opened (closed again after the test)."""
    async with STORE_FACTORIES[store_kind](clock, tmp_path) as created:
        await created.open()
        try:
            yield created
        finally:
            await created.close()


@pytest.fixture
async def unopened(store_kind: str, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh store of each kind, never opened."""
    async with STORE_FACTORIES[store_kind](clock, tmp_path) as created:
        yield created
