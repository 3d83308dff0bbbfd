"""fetch: claim order (priority, scheduled_at, id), limit, queues, due-ness, the isolation of
poison suspects (isolate_after + idle), and the completions FetchParams.complete carries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from relaybus._driver import StageParams
from relaybus.testing import FakeClock

from ._support import (
    EVENT,
    HANDLER,
    S,
    claim,
    ended,
    failure,
    get,
    insert,
    new_job,
    rescue,
    state_of,
)


async def _suspect(store: Any, job_id: int, times: int) -> None:
    """Rescue ``job_id`` (the only available job) ``times`` times from a dead node."""
    for _ in range(times):
        assert [c.id for c in await claim(store, "ghost")] == [job_id]
        assert await rescue(store, grace=0, max_rescues=100) == 1
        assert await store.stage(StageParams()) == ["default"]


async def test_fetch_order_is_priority_then_scheduled_at_then_id(
    store: Any, clock: FakeClock
) -> None:
    now = clock.now()
    a, b, c, d, e = await insert(
        store,
        new_job("a", priority=2, at=now - timedelta(seconds=10)),
        new_job("b", priority=1, at=now),
        new_job("c", priority=2, at=now - timedelta(seconds=20)),
        new_job("d", priority=2, at=now - timedelta(seconds=10)),
        new_job("e", priority=1, at=now - timedelta(seconds=5)),
    )
    assert a < b < c < d < e
    first = await claim(store, limit=2)
    rest = await claim(store, limit=10)
    assert [j.id for j in first] == [e, b]
    assert [j.id for j in rest] == [c, a, d]
    assert [j.payload for j in first + rest] == [b'"e"', b'"b"', b'"c"', b'"a"', b'"d"']
    assert all(j.attempt == 1 for j in first + rest)
    assert await claim(store) == []
    found = await get(store, c)
    assert found.state is S.RUNNING
    assert found.attempted_by == "node-a"
    assert found.attempted_at == clock.now()
    assert found.scheduled_at == now - timedelta(seconds=20)


async def test_small_claims_take_the_head_of_a_long_queue_in_run_order(
    store: Any, clock: FakeClock
) -> None:
    """Claims of a few jobs each, out of many inserted in no particular order, take exactly
    the next ones in run order every time (a store that reads candidates beyond its limit
    must still take the first of them)."""
    now = clock.now()
    specs = [(n * 7 % 5, n * 11 % 13) for n in range(60)]  # (priority, seconds ago), mixed
    ids = await insert(
        store, *[new_job(n, priority=p, at=now - timedelta(seconds=ago)) for n, (p, ago) in
                 enumerate(specs)]
    )  # fmt: skip
    order = sorted((p, -ago, i) for i, (p, ago) in zip(ids, specs, strict=True))
    expected = [i for _, _, i in order]
    taken: list[int] = []
    while batch := await claim(store, limit=7):
        taken.extend(job.id for job in batch)
    assert taken == expected


async def test_a_claim_carries_the_job(store: Any, clock: FakeClock) -> None:
    inserted_at = clock.now()
    (job_id,) = await insert(
        store, new_job({"x": 1}, queue="q", priority=4, max_attempts=7, meta={"tenant": "t"})
    )
    clock.advance(3)
    [claimed] = await claim(store, "node-b", queue="q")
    assert (claimed.id, claimed.handler, claimed.event, claimed.queue) == (
        job_id,
        HANDLER,
        EVENT,
        "q",
    )
    assert (claimed.priority, claimed.attempt, claimed.max_attempts, claimed.rescues) == (
        4,
        1,
        7,
        0,
    )
    assert claimed.payload == b'{"x": 1}'
    assert claimed.meta == {"tenant": "t"}
    assert claimed.inserted_at == claimed.scheduled_at == inserted_at
    found = await get(store, job_id)
    assert (found.state, found.attempt, found.attempted_by) == (S.RUNNING, 1, "node-b")
    assert found.attempted_at == clock.now()


async def test_fetch_takes_only_its_queue_and_due_jobs(store: Any, clock: FakeClock) -> None:
    mail, later, default = await insert(
        store, new_job(queue="mail"), new_job(delay=30), new_job(meta={"m": 1})
    )
    got = await claim(store)
    assert [j.id for j in got] == [default]
    assert got[0].meta == {"m": 1}
    assert await state_of(store, later) is S.SCHEDULED
    assert await state_of(store, mail) is S.AVAILABLE
    clock.advance(30)
    assert await claim(store) == []  # due, but scheduled until stage makes it available
    assert [j.id for j in await claim(store, queue="mail")] == [mail]


async def test_limit_bounds_the_claim(store: Any) -> None:
    ids = await insert(store, *(new_job({"n": n}) for n in range(5)))
    assert [j.id for j in await claim(store, limit=1)] == ids[:1]
    assert [j.id for j in await claim(store, limit=3)] == ids[1:4]
    assert [j.id for j in await claim(store, limit=3)] == ids[4:]
    assert await claim(store, limit=3) == []


async def test_fetch_with_limit_zero_claims_nothing(store: Any) -> None:
    (suspect,) = await insert(store, new_job())
    await _suspect(store, suspect, 2)
    (plain,) = await insert(store, new_job())
    for idle in (True, False):
        assert await claim(store, limit=0, idle=idle) == []
    assert await state_of(store, suspect) is S.AVAILABLE
    assert await state_of(store, plain) is S.AVAILABLE


async def test_isolated_jobs_run_alone_and_only_when_idle(store: Any) -> None:
    iso1, iso2 = await insert(store, new_job(priority=1), new_job(priority=1))
    for _ in range(2):
        assert len(await claim(store, "ghost")) == 2
        assert await rescue(store, grace=0, max_rescues=5) == 2
        await store.stage(StageParams())
    (normal,) = await insert(store, new_job(priority=3))
    assert [j.id for j in await claim(store, idle=False)] == [normal]
    assert [j.id for j in await claim(store, idle=False)] == []
    alone = await claim(store, idle=True)
    assert [(j.id, j.rescues) for j in alone] == [(iso1, 2)]
    assert [j.id for j in await claim(store, idle=True)] == [iso2]


async def test_a_suspect_at_the_head_is_claimed_alone(store: Any) -> None:
    (suspect,) = await insert(store, new_job(priority=0))
    await _suspect(store, suspect, 2)
    a, b = await insert(store, new_job(), new_job())
    busy = await claim(store, idle=False, limit=10)
    assert [c.id for c in busy] == [a, b]  # the suspect is passed over, not claimed
    assert await state_of(store, suspect) is S.AVAILABLE
    assert [c.id for c in await claim(store, idle=True, limit=10)] == [suspect]


async def test_isolate_after_counts_rescues(store: Any) -> None:
    (suspect,) = await insert(store, new_job())
    await _suspect(store, suspect, 1)
    (normal,) = await insert(store, new_job())
    # rescued once: below isolate_after=2 it is an ordinary job
    assert [c.id for c in await claim(store, idle=False, isolate_after=2, limit=1)] == [suspect]
    assert [c.id for c in await claim(store, idle=False, isolate_after=2)] == [normal]


async def test_isolated_job_behind_a_normal_one_waits(store: Any) -> None:
    (suspect,) = await insert(store, new_job(priority=3))
    await _suspect(store, suspect, 1)
    (normal,) = await insert(store, new_job(priority=1))
    # idle, but the first job in line is a normal one: take it, not the suspect
    assert [j.id for j in await claim(store, idle=True, isolate_after=1)] == [normal]
    assert [j.id for j in await claim(store, idle=True, isolate_after=1)] == [suspect]


# -- FetchParams.complete


async def test_completions_carried_by_fetch_are_applied_before_the_claim(
    store: Any, clock: FakeClock
) -> None:
    a, b, c, d = await insert(store, new_job(), new_job(), new_job(), new_job())
    first = await claim(store, limit=2)
    assert [j.id for j in first] == [a, b]
    done = [ended(first[0]), ended(first[1], "retry", error=failure(clock, 1), delay=30)]
    nxt = await claim(store, limit=1, complete=done)
    assert [j.id for j in nxt] == [c]
    assert await state_of(store, a) is S.COMPLETED
    retried = await get(store, b)
    assert (retried.state, retried.scheduled_at) == (
        S.RETRYABLE,
        clock.now() + timedelta(seconds=30),
    )
    assert [(e.kind, e.message) for e in retried.errors] == [("ValueError", "boom")]
    assert await state_of(store, d) is S.AVAILABLE


async def test_plain_completions_carried_by_a_claim_are_fenced_and_finalized(
    store: Any, clock: FakeClock
) -> None:
    """Every carried end a plain completion (MySQL has a leaner statement for that case): the
    current runs complete with finalized_at stamped, a stale one changes nothing, and the claim
    still takes the next job."""
    a, b, c = await insert(store, new_job(), new_job(), new_job())
    first = await claim(store, limit=2)
    assert [j.id for j in first] == [a, b]
    done = [ended(first[0]), ended((b, 2))]  # b: a stale attempt
    assert [j.id for j in await claim(store, limit=1, complete=done)] == [c]
    completed = await get(store, a)
    assert (completed.state, completed.finalized_at, completed.errors) == (
        S.COMPLETED, clock.now(), (),
    )  # fmt: skip
    assert await state_of(store, b) is S.RUNNING


async def test_completions_carried_by_fetch_are_applied_with_limit_zero(store: Any) -> None:
    a, b = await insert(store, new_job(), new_job())
    runs = await claim(store, limit=2)
    assert await claim(store, limit=0, complete=[ended(r) for r in runs]) == []
    assert await state_of(store, a) is S.COMPLETED
    assert await state_of(store, b) is S.COMPLETED
    assert await store.stats() == {"default": {"completed": 2}}


async def test_completions_carried_by_fetch_are_fenced(store: Any) -> None:
    a, b = await insert(store, new_job(), new_job())
    [run] = await claim(store, limit=1)
    stale = [ended((a, 2)), ended((b, 1)), ended((999, 1))]  # wrong attempt, not running, unknown
    assert [j.id for j in await claim(store, limit=0, complete=stale)] == []
    assert await state_of(store, a) is S.RUNNING
    assert await state_of(store, b) is S.AVAILABLE
    assert await store.complete_many([ended(run)]) == [a]
