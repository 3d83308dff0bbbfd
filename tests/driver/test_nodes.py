"""heartbeat (which runs a node lost), elect / resign / release_node."""

from __future__ import annotations

from typing import Any

from relaybus._driver import ElectParams, StageParams
from relaybus.testing import FakeClock

from ._support import S, beat, claim, ended, errors_of, get, insert, new_job, rescue


async def test_heartbeat_reports_jobs_no_longer_running_there(store: Any) -> None:
    a, b, c = await insert(store, new_job(), new_job(), new_job())
    await claim(store, "n1", limit=2)
    await claim(store, "n2", limit=1)
    await store.cancel(b)
    running = [(a, 1), (b, 1), (c, 1), (a, 2)]
    assert await beat(store, "n1", running) == [b, c, a]


async def test_heartbeat_reports_finished_rescued_and_unknown_runs(
    store: Any, clock: FakeClock
) -> None:
    done, rescued, kept = await insert(store, new_job(), new_job(), new_job())
    await claim(store, "n1", limit=1)
    await claim(store, "dead", limit=1)
    await claim(store, "n1", limit=1)
    assert await beat(store, "n1", [(done, 1), (kept, 1)]) == []
    assert await store.complete_many([ended((done, 1))]) == [done]
    assert await rescue(store) == 1  # "dead" never beat: its job goes back
    assert await state_of_rescued(store, rescued)
    lost = await beat(store, "n1", [(done, 1), (kept, 1), (rescued, 1), (424242, 1)])
    assert lost == [done, rescued, 424242]
    assert await beat(store, "n1", []) == []


async def state_of_rescued(store: Any, job_id: int) -> bool:
    found = await get(store, job_id)
    return found.state is S.RETRYABLE and errors_of(found)[-1][0] == "rescued"


async def test_heartbeat_keeps_a_node_alive_for_its_ttl(store: Any, clock: FakeClock) -> None:
    (job_id,) = await insert(store, new_job(timeout=None))
    await claim(store, "n1")
    await beat(store, "n1", [(job_id, 1)], ttl=30)
    clock.advance(29)
    assert await rescue(store) == 0
    await beat(store, "n1", [(job_id, 1)], ttl=30)  # renewed from now
    clock.advance(29)
    assert await rescue(store) == 0
    clock.advance(1)  # expires_at = last beat + ttl: expired
    assert await rescue(store) == 1
    assert await beat(store, "n1", [(job_id, 1)]) == [job_id]


async def test_elect_resign_and_release(store: Any, clock: FakeClock) -> None:
    assert await store.elect(ElectParams("n1", ttl=10))
    assert not await store.elect(ElectParams("n2", ttl=10))
    assert await store.elect(ElectParams("n1", ttl=10))  # renews
    clock.advance(10)
    assert await store.elect(ElectParams("n2", ttl=10))  # the lease ran out
    await store.resign("n1")  # not the leader: nothing happens
    assert not await store.elect(ElectParams("n1", ttl=10))
    await store.release_node("n2")
    assert await store.elect(ElectParams("n1", ttl=10))


async def test_a_renewed_lease_runs_from_the_renewal(store: Any, clock: FakeClock) -> None:
    assert await store.elect(ElectParams("n1", ttl=10))
    clock.advance(8)
    assert await store.elect(ElectParams("n1", ttl=10))
    clock.advance(8)  # 16 s after the first election, 8 s after the renewal
    assert not await store.elect(ElectParams("n2", ttl=10))
    clock.advance(2)
    assert await store.elect(ElectParams("n2", ttl=10))
    assert not await store.elect(ElectParams("n1", ttl=10))


async def test_resign_by_the_leader_frees_the_lease_at_once(store: Any) -> None:
    assert await store.elect(ElectParams("n1", ttl=60))
    await store.resign("n2")
    assert not await store.elect(ElectParams("n2", ttl=60))
    await store.resign("n1")
    assert await store.elect(ElectParams("n2", ttl=60))


async def test_release_node_drops_its_heartbeat_so_its_jobs_are_rescued(
    store: Any, clock: FakeClock
) -> None:
    (job_id,) = await insert(store, new_job(timeout=None))
    await claim(store, "n1")
    await beat(store, "n1", [(job_id, 1)], ttl=3600)
    assert await rescue(store) == 0
    await store.release_node("n1")
    assert await rescue(store) == 1
    found = await get(store, job_id)
    assert found.state is S.RETRYABLE
    assert errors_of(found) == [
        ("rescued", "the lease of node n1 expired while it ran attempt 1", 1)
    ]
    assert await store.stage(StageParams()) == ["default"]


async def test_resign_on_a_closed_store_does_nothing(unopened: Any) -> None:
    await unopened.resign("n1")
    await unopened.open()
    assert await unopened.elect(ElectParams("n1", ttl=60))
    await unopened.close()
    await unopened.resign("n1")
