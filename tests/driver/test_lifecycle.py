"""StoreClosed before open and after close; conn= that is not the store's own connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from relaybus._driver import (
    ElectParams,
    FetchParams,
    HeartbeatParams,
    ListParams,
    PruneParams,
    RescueParams,
    StageParams,
)
from relaybus._errors import StoreClosed, StoreError

from ._support import S, ended, get, insert, new_job

OPERATIONS: dict[str, Callable[[Any], Awaitable[Any]]] = {
    "insert_many": lambda s: s.insert_many([new_job()]),
    "fetch": lambda s: s.fetch(FetchParams("default", 10, "n", 2, True)),
    "complete_many": lambda s: s.complete_many([ended((1, 1))]),
    "heartbeat": lambda s: s.heartbeat(HeartbeatParams("n", 30.0)),
    "release_node": lambda s: s.release_node("n"),
    "elect": lambda s: s.elect(ElectParams("n", 30.0)),
    "stage": lambda s: s.stage(StageParams()),
    "rescue": lambda s: s.rescue(RescueParams(grace=5, max_rescues=3)),
    "prune": lambda s: s.prune(PruneParams({S.COMPLETED: 60.0})),
    "get": lambda s: s.get(1),
    "list": lambda s: s.list(ListParams()),
    "retry": lambda s: s.retry(1),
    "cancel": lambda s: s.cancel(1),
    "stats": lambda s: s.stats(),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_every_operation_raises_store_closed_before_open_and_after_close(
    unopened: Any, operation: str
) -> None:
    call = OPERATIONS[operation]
    with pytest.raises(StoreClosed, match="is not open"):
        await call(unopened)
    await unopened.open()
    (job_id,) = await insert(unopened, new_job())
    assert job_id == 1
    await unopened.close()
    with pytest.raises(StoreClosed, match="is not open"):
        await call(unopened)


async def test_close_is_idempotent_and_a_store_reopens(unopened: Any) -> None:
    await unopened.close()
    await unopened.open()
    await unopened.close()
    await unopened.close()
    with pytest.raises(StoreClosed):
        await unopened.stats()


async def test_a_conn_that_is_not_the_stores_connection_is_a_store_error(store: Any) -> None:
    with pytest.raises(StoreError):
        await store.insert_many([new_job()], conn=object())
    assert await store.stats() == {}
    (job_id,) = await insert(store, new_job())
    assert (await get(store, job_id)).state is S.AVAILABLE
