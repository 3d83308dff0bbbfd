"""insert_many: outcomes (inserted / duplicate / replaced), batches applied in input order,
unique keys and periods on the store's clock, Replace field selection per state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

from relaybus._driver import ListParams, NewJob
from relaybus.testing import FakeClock

from ._support import (
    EVENT,
    HANDLER,
    NO_RETRYABLE,
    TIMEOUT,
    S,
    claim,
    ended,
    failure,
    get,
    insert,
    new_job,
)


async def test_an_empty_batch_inserts_nothing(store: Any) -> None:
    assert await store.insert_many([]) == []
    assert await store.stats() == {}


async def test_an_inserted_job_has_every_field_it_was_given(store: Any, clock: FakeClock) -> None:
    (job_id,) = await insert(
        store,
        new_job({"b": [1, 2], "a": "é"}, queue="mail", priority=7, max_attempts=4, meta={"t": 1}),
    )
    found = await get(store, job_id)
    assert (found.handler, found.event, found.queue) == (HANDLER, EVENT, "mail")
    assert (found.state, found.priority, found.attempt, found.max_attempts) == (
        S.AVAILABLE,
        7,
        0,
        4,
    )
    assert found.payload == {"b": [1, 2], "a": "é"}
    assert found.meta == {"t": 1}
    assert found.errors == ()
    assert found.inserted_at == found.scheduled_at == clock.now()
    assert (found.attempted_at, found.attempted_by, found.finalized_at) == (None, None, None)


async def test_delay_and_at_decide_scheduled_at_and_the_state(store: Any, clock: FakeClock) -> None:
    now = clock.now()
    later, zero, past, future, at_wins = await insert(
        store,
        new_job(delay=30),
        new_job(delay=0),
        new_job(at=now - timedelta(hours=1)),
        new_job(at=now + timedelta(seconds=5)),
        new_job(delay=600, at=now - timedelta(seconds=1)),  # at= wins over delay
    )
    expected = {
        later: (S.SCHEDULED, now + timedelta(seconds=30)),
        zero: (S.AVAILABLE, now),
        past: (S.AVAILABLE, now - timedelta(hours=1)),
        future: (S.SCHEDULED, now + timedelta(seconds=5)),
        at_wins: (S.AVAILABLE, now - timedelta(seconds=1)),
    }
    for job_id, (state, scheduled_at) in expected.items():
        found = await get(store, job_id)
        assert (found.state, found.scheduled_at, found.inserted_at) == (state, scheduled_at, now)


async def test_payload_bytes_are_kept_byte_for_byte(store: Any) -> None:
    raw = b'{"z":1,"a":"nul \\u0000 and \\u00e9","f":1.50}'
    plain = new_job()
    [inserted] = await store.insert_many([msgspec.structs.replace(plain, payload=raw)])
    [claimed] = await claim(store)
    assert claimed.id == inserted.id
    assert claimed.payload == raw
    assert (await get(store, inserted.id)).payload == {"z": 1, "a": "nul \x00 and \xe9", "f": 1.5}


async def test_batch_keeps_input_order_and_applies_unique_entries_in_order(store: Any) -> None:
    replace = {S.AVAILABLE: ("payload",)}
    results = await store.insert_many(
        [
            new_job({"n": 1}),
            new_job({"v": 1}, key=b"k", replace=replace),
            new_job({"n": 2}),
            new_job({"v": 2}, key=b"k", replace=replace),  # replaces the entry above
            new_job({"v": 3}, key=b"k"),  # no Replace: a duplicate
            new_job({"v": 4}, key=b"other"),
            new_job({"n": 3}),
        ]
    )
    assert [r.outcome for r in results] == [
        "inserted",
        "inserted",
        "inserted",
        "replaced",
        "duplicate",
        "inserted",
        "inserted",
    ]
    ids = [r.id for r in results]
    assert ids[3] == ids[4] == ids[1]
    inserted = [ids[i] for i in (0, 1, 2, 5, 6)]
    assert inserted == sorted(inserted)
    assert len(set(inserted)) == 5
    assert (await get(store, ids[1])).payload == {"v": 2}
    assert [j.id for j in await store.list(ListParams())] == inserted


async def test_batch_outcomes_with_intra_batch_duplicates_and_replaces(store: Any) -> None:
    k1, k2 = b"k" * 32, b"j" * 32
    rep = {S.AVAILABLE: ("payload", "priority")}
    result = await store.insert_many(
        [
            new_job({"n": 1}, key=k1),
            new_job({"n": 2}),  # not unique
            new_job({"n": 3}, key=k1),  # duplicate of entry 0
            new_job({"n": 4}, key=k2, replace=rep),
            new_job({"n": 5}, key=k2, replace=rep, priority=0),  # replaces entry 3
            new_job({"n": 6}),
            new_job({"n": 7}, key=k1, replace=rep, priority=7),  # replaces entry 0
        ]
    )
    assert [r.outcome for r in result] == [
        "inserted",
        "inserted",
        "duplicate",
        "inserted",
        "replaced",
        "inserted",
        "replaced",
    ]
    ids = [r.id for r in result]
    assert ids[2] == ids[0] and ids[6] == ids[0] and ids[4] == ids[3]
    inserted = [ids[0], ids[1], ids[3], ids[5]]
    assert inserted == sorted(inserted)  # ids follow input order
    first, second = await get(store, ids[0]), await get(store, ids[3])
    assert (first.payload, first.priority) == ({"n": 7}, 7)
    assert (second.payload, second.priority) == ({"n": 5}, 0)
    # A later batch meets the holders in the store.
    again = await store.insert_many(
        [new_job({"n": 8}, key=k1), new_job({"n": 9}, key=k2, replace=rep)]
    )
    assert [(r.id, r.outcome) for r in again] == [(ids[0], "duplicate"), (ids[3], "replaced")]
    assert (await get(store, ids[3])).payload == {"n": 9}
    assert await store.stats() == {"default": {"available": 4}}


async def test_unique_keys_differ_by_key_and_a_duplicate_changes_nothing(store: Any) -> None:
    [a] = await store.insert_many([new_job({"n": 1}, key=b"a", priority=1)])
    [dup, b] = await store.insert_many(
        [new_job({"n": 2}, key=b"a", priority=5, queue="x"), new_job({"n": 3}, key=b"b")]
    )
    assert (dup.id, dup.outcome) == (a.id, "duplicate")
    assert b.outcome == "inserted" and b.id > a.id
    found = await get(store, a.id)
    assert (found.payload, found.priority, found.queue) == ({"n": 1}, 1, "default")


async def test_unique_period_buckets_on_the_store_clock(store: Any, clock: FakeClock) -> None:
    base = b"q" * 32
    clock.set(clock.now().replace(minute=0, second=0, microsecond=0))  # a bucket boundary
    [a] = await store.insert_many([new_job({"n": 1}, key=base, period=60)])
    clock.advance(59)
    [b] = await store.insert_many([new_job({"n": 1}, key=base, period=60)])
    clock.advance(1)  # the next bucket: a new key
    [c] = await store.insert_many([new_job({"n": 1}, key=base, period=60)])
    [d] = await store.insert_many([new_job({"n": 1}, key=base, period=60)])
    assert (b.id, b.outcome) == (a.id, "duplicate")
    assert c.outcome == "inserted" and c.id != a.id
    assert (d.id, d.outcome) == (c.id, "duplicate")
    [forever] = await store.insert_many([new_job({"n": 1}, key=base)])  # period=None: no bucket
    assert forever.outcome == "inserted" and forever.id not in (a.id, c.id)


async def test_retryable_outside_unique_states_frees_the_key(store: Any, clock: FakeClock) -> None:
    (first,) = await insert(store, new_job(key=b"k", states=NO_RETRYABLE))
    [run] = await claim(store)
    await store.complete_many([ended(run, "retry", error=failure(clock, 1), delay=30)])
    [second] = await store.insert_many([new_job(key=b"k", states=NO_RETRYABLE)])
    assert second.outcome == "inserted" and second.id != first
    [third] = await store.insert_many([new_job(key=b"k", states=NO_RETRYABLE)])
    assert (third.id, third.outcome) == (second.id, "duplicate")


async def test_a_finished_job_frees_its_unique_key(store: Any) -> None:
    (first,) = await insert(store, new_job(key=b"k"))
    [run] = await claim(store)
    assert await store.complete_many([ended(run)]) == [first]
    [again] = await store.insert_many([new_job(key=b"k")])
    assert again.outcome == "inserted"
    assert again.id != first


async def test_a_terminal_state_in_unique_states_keeps_holding(store: Any) -> None:
    ever = NO_RETRYABLE | S.COMPLETED.bit
    (first,) = await insert(store, new_job(key=b"k", states=ever))
    [run] = await claim(store)
    assert await store.complete_many([ended(run)]) == [first]
    [again] = await store.insert_many([new_job(key=b"k", states=ever)])
    assert (again.id, again.outcome) == (first, "duplicate")


# -- Replace


ALL_FIELDS = ("payload", "priority", "meta", "scheduled_at", "queue", "max_attempts")


def _replacing(fields: tuple[str, ...], **extra: Any) -> NewJob:
    """The second insert of key ``k``: every field differs from ``_first``."""
    return new_job(
        {"v": 2},
        key=b"k",
        replace={S.AVAILABLE: fields, S.SCHEDULED: fields, S.RETRYABLE: fields},
        priority=0,
        meta={"m": 2},
        queue="other",
        max_attempts=9,
        **extra,
    )


def _first(**extra: Any) -> NewJob:
    return new_job({"v": 1}, key=b"k", priority=5, meta={"m": 1}, max_attempts=3, **extra)


def _fields(job: Any) -> dict[str, Any]:
    return {
        "payload": job.payload,
        "priority": job.priority,
        "meta": job.meta,
        "scheduled_at": job.scheduled_at,
        "queue": job.queue,
        "max_attempts": job.max_attempts,
    }


async def test_replace_updates_exactly_the_listed_fields(store: Any, clock: FakeClock) -> None:
    now = clock.now()
    new_values = {
        "payload": {"v": 2},
        "priority": 0,
        "meta": {"m": 2},
        "scheduled_at": now - timedelta(seconds=30),
        "queue": "other",
        "max_attempts": 9,
    }
    for field in ALL_FIELDS:
        (first,) = await insert(store, _first(at=now - timedelta(seconds=10)))
        before = _fields(await get(store, first))
        [result] = await store.insert_many([_replacing((field,), at=now - timedelta(seconds=30))])
        assert (result.id, result.outcome) == (first, "replaced"), field
        after = await get(store, first)
        assert after.state is S.AVAILABLE
        assert _fields(after) == {**before, field: new_values[field]}, field
        await store.cancel(first)  # cancelled frees the key for the next round


async def test_replace_chooses_the_fields_by_the_holders_state(
    store: Any, clock: FakeClock
) -> None:
    replace = {S.AVAILABLE: ("payload",), S.SCHEDULED: ("priority",), S.RETRYABLE: ("meta",)}

    def again(n: int) -> NewJob:
        return new_job({"v": n}, key=f"k{n}".encode(), replace=replace, priority=0, meta={"m": n})

    def first(n: int, **extra: Any) -> NewJob:
        return new_job({"v": 0}, key=f"k{n}".encode(), priority=5, **extra)

    available, scheduled = await insert(store, first(1), first(2, delay=60))
    await store.insert_many([first(3)])
    [run] = await claim(store, limit=1)  # the available job of key k1 runs first...
    assert run.id == available
    await store.complete_many([ended(run, "retry", error=failure(clock, 1), delay=30)])
    retryable = available
    (available,) = [j.id for j in await store.list(ListParams(state=S.AVAILABLE))]
    results = await store.insert_many([again(3), again(2), again(1)])
    assert [(r.id, r.outcome) for r in results] == [
        (available, "replaced"),
        (scheduled, "replaced"),
        (retryable, "replaced"),
    ]
    a, s, r = await get(store, available), await get(store, scheduled), await get(store, retryable)
    assert (a.state, a.payload, a.priority, a.meta) == (S.AVAILABLE, {"v": 3}, 5, {})
    assert (s.state, s.payload, s.priority, s.meta) == (S.SCHEDULED, {"v": 0}, 0, {})
    assert (r.state, r.payload, r.priority, r.meta) == (S.RETRYABLE, {"v": 0}, 5, {"m": 1})


async def test_a_state_without_replace_fields_gives_a_duplicate(store: Any) -> None:
    replace = {S.AVAILABLE: ("scheduled_at",)}
    [a] = await store.insert_many([new_job({"n": 1}, key=b"s", replace=replace)])
    # available -> scheduled (listed for available); then scheduled is not listed: duplicate,
    # even though the new scheduled_at equals the one the job already has.
    b, c = await store.insert_many(
        [
            new_job({"n": 2}, key=b"s", replace=replace, delay=60),
            new_job({"n": 3}, key=b"s", replace=replace, delay=60),
        ]
    )
    assert (b.id, b.outcome, c.id, c.outcome) == (a.id, "replaced", a.id, "duplicate")
    found = await get(store, a.id)
    assert (found.state, found.payload) == (S.SCHEDULED, {"n": 1})


async def test_replace_scheduled_at_moves_the_job_between_available_and_scheduled(
    store: Any, clock: FakeClock
) -> None:
    replace = {S.AVAILABLE: ("scheduled_at", "priority"), S.SCHEDULED: ("scheduled_at",)}
    (first,) = await insert(store, new_job(key=b"k", replace=replace))
    [result] = await store.insert_many([new_job(key=b"k", replace=replace, priority=0, delay=60)])
    assert (result.id, result.outcome) == (first, "replaced")
    found = await get(store, first)
    assert (found.state, found.priority) == (S.SCHEDULED, 0)
    assert found.scheduled_at == clock.now() + timedelta(seconds=60)
    [back] = await store.insert_many([new_job(key=b"k", replace=replace, delay=0)])
    assert (back.id, back.outcome) == (first, "replaced")
    found = await get(store, first)
    assert (found.state, found.scheduled_at) == (S.AVAILABLE, clock.now())
    assert [j.id for j in await claim(store)] == [first]


async def test_replace_scheduled_at_keeps_a_retryable_job_retryable(
    store: Any, clock: FakeClock
) -> None:
    replace = {S.RETRYABLE: ("scheduled_at",)}
    (first,) = await insert(store, new_job(key=b"k", replace=replace))
    [run] = await claim(store)
    await store.complete_many([ended(run, "retry", error=failure(clock, 1), delay=300)])
    [result] = await store.insert_many([new_job(key=b"k", replace=replace, delay=0)])
    assert (result.id, result.outcome) == (first, "replaced")
    found = await get(store, first)
    assert (found.state, found.scheduled_at, found.attempt) == (S.RETRYABLE, clock.now(), 1)


async def test_a_running_holder_is_never_modified(store: Any) -> None:
    replace = {state: ALL_FIELDS for state in (S.AVAILABLE, S.RUNNING, S.SCHEDULED)}
    (first,) = await insert(store, new_job({"n": 1}, key=b"k", replace=replace))
    [run] = await claim(store)
    before = await get(store, first)
    [result] = await store.insert_many(
        [new_job({"n": 2}, key=b"k", replace=replace, priority=0, queue="x", delay=60)]
    )
    assert (result.id, result.outcome) == (first, "duplicate")
    assert await get(store, first) == before
    assert before.state is S.RUNNING and before.payload == {"n": 1}
    assert await store.complete_many([ended(run)]) == [first]


async def test_timeout_is_carried_to_the_claim(store: Any) -> None:
    await insert(store, new_job(timeout=None), new_job(), new_job(timeout=1.5))
    assert [c.timeout for c in await claim(store)] == [None, TIMEOUT, 1.5]
