"""complete_many: what every CompletionKind does (state, attempt refund, delay, errors,
finalized_at), and the fence: a stale attempt or a job no longer running changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from relaybus._driver import CompletionKind
from relaybus._types import TERMINAL_STATES, JobError
from relaybus.testing import FakeClock

from ._support import S, claim, ended, errors_of, failure, get, insert, new_job, state_of


async def test_an_empty_list_applies_nothing(store: Any) -> None:
    assert await store.complete_many([]) == []


async def test_completed_ends_the_job(store: Any, clock: FakeClock) -> None:
    (job_id,) = await insert(store, new_job())
    [run] = await claim(store)
    clock.advance(2)
    assert await store.complete_many([ended(run)]) == [job_id]
    found = await get(store, job_id)
    assert (found.state, found.attempt, found.errors) == (S.COMPLETED, 1, ())
    assert found.finalized_at == clock.now()
    assert found.attempted_at == clock.now() - timedelta(seconds=2)


# kind, delay -> state, attempt after the run, error kept, scheduled_at offset (None: unchanged)
OUTCOMES: list[tuple[CompletionKind, float, S, int, bool, float | None]] = [
    ("retry", 30, S.RETRYABLE, 1, True, 30),
    ("retry", 0, S.AVAILABLE, 1, True, 0),
    ("snooze", 45, S.SCHEDULED, 0, False, 45),
    ("snooze", 0, S.AVAILABLE, 0, False, 0),
    ("return", 0, S.AVAILABLE, 0, False, 0),
    ("cancel", 0, S.CANCELLED, 1, True, None),
    ("discard", 0, S.DISCARDED, 1, True, None),
]


@pytest.mark.parametrize(("kind", "delay", "state", "attempt", "kept", "due"), OUTCOMES)
async def test_each_completion_kind(
    store: Any,
    clock: FakeClock,
    kind: CompletionKind,
    delay: float,
    state: S,
    attempt: int,
    kept: bool,
    due: float | None,
) -> None:
    (job_id,) = await insert(store, new_job(queue="q"))
    [run] = await claim(store, queue="q")
    clock.advance(5)
    error = failure(clock, 1, f"{kind} reason") if kept else None
    assert await store.complete_many([ended(run, kind, error=error, delay=delay)]) == [job_id]
    found = await get(store, job_id)
    assert (found.state, found.attempt, found.max_attempts) == (state, attempt, 3)
    assert found.errors == ((error,) if error is not None else ())
    assert found.finalized_at == (clock.now() if state in TERMINAL_STATES else None)
    if due is not None:
        assert found.scheduled_at == clock.now() + timedelta(seconds=due)
    else:
        assert found.scheduled_at == clock.now() - timedelta(seconds=5)
    assert await store.stats() == {"q": {state.value: 1}}
    # the next run (when there is one) numbers its attempt from the refunded count
    if state is S.AVAILABLE:
        assert [c.attempt for c in await claim(store, queue="q")] == [attempt + 1]


async def test_snooze_and_return_refund_the_attempt(store: Any) -> None:
    a, b = await insert(store, new_job(), new_job())
    await claim(store)
    applied = await store.complete_many(
        [ended((a, 1), "snooze", delay=10), ended((b, 1), "return")]
    )
    assert applied == [a, b]
    snoozed, returned = await get(store, a), await get(store, b)
    assert (snoozed.state, snoozed.attempt, snoozed.errors) == (S.SCHEDULED, 0, ())
    assert (returned.state, returned.attempt, returned.errors) == (S.AVAILABLE, 0, ())
    assert [j.attempt for j in await claim(store)] == [1]


async def test_cancel_and_discard_completions_record_the_reason(
    store: Any, clock: FakeClock
) -> None:
    a, b = await insert(store, new_job(), new_job())
    await claim(store)
    reason = JobError(clock.now(), 1, "Cancel", "no longer wanted", None)
    assert await store.complete_many(
        [ended((a, 1), "cancel", error=reason), ended((b, 1), "discard", error=reason)]
    ) == [a, b]
    cancelled, discarded = await get(store, a), await get(store, b)
    assert cancelled.state is S.CANCELLED
    assert discarded.state is S.DISCARDED
    assert cancelled.errors == discarded.errors == (reason,)


async def test_errors_are_appended_attempt_after_attempt(store: Any, clock: FakeClock) -> None:
    (job_id,) = await insert(store, new_job(max_attempts=3))
    for attempt in (1, 2):
        [run] = await claim(store)
        assert run.attempt == attempt
        error = failure(clock, attempt, f"failure {attempt}", kind="KeyError")
        await store.complete_many([ended(run, "retry", error=error)])
        clock.advance(1)
    [run] = await claim(store)
    last = failure(clock, 3, "gave up", kind="RuntimeError")
    await store.complete_many([ended(run, "discard", error=last)])
    found = await get(store, job_id)
    assert found.state is S.DISCARDED
    assert errors_of(found) == [
        ("KeyError", "failure 1", 1),
        ("KeyError", "failure 2", 2),
        ("RuntimeError", "gave up", 3),
    ]
    assert found.errors[0].traceback == "Traceback (most recent call last): ..."
    assert [e.at for e in found.errors] == [
        clock.now() - timedelta(seconds=2),
        clock.now() - timedelta(seconds=1),
        clock.now(),
    ]


async def test_complete_many_is_a_compare_and_set_on_id_state_and_attempt(
    store: Any, clock: FakeClock
) -> None:
    a, b = await insert(store, new_job(), new_job())
    await claim(store)
    stale = [ended((a, 2)), ended((999, 1))]
    assert await store.complete_many(stale) == []
    assert await state_of(store, a) is S.RUNNING
    done = [ended((a, 1)), ended((b, 1), "retry", error=failure(clock, 1), delay=30)]
    assert await store.complete_many(done) == [a, b]
    assert await store.complete_many(done) == []  # applied once only
    completed, retried = await get(store, a), await get(store, b)
    assert completed.state is S.COMPLETED
    assert completed.finalized_at == clock.now()
    assert retried.state is S.RETRYABLE
    assert retried.scheduled_at == clock.now() + timedelta(seconds=30)
    assert retried.finalized_at is None
    assert errors_of(retried) == [("ValueError", "boom", 1)]


@pytest.mark.parametrize("kind", ["completed", "retry", "snooze", "cancel", "discard", "return"])
async def test_a_stale_completion_of_any_kind_changes_nothing(
    store: Any, clock: FakeClock, kind: CompletionKind
) -> None:
    running, waiting, done = await insert(store, new_job(), new_job(delay=60), new_job())
    await claim(store)
    assert await store.complete_many([ended((done, 1))]) == [done]
    before = [await get(store, job_id) for job_id in (running, waiting, done)]
    error = failure(clock, 1)
    stale = [
        ended((running, 2), kind, error=error),  # an attempt that is not the current one
        ended((running, 0), kind, error=error),
        ended((waiting, 0), kind, error=error),  # not running
        ended((done, 1), kind, error=error),  # finished
        ended((12345, 1), kind, error=error),  # no such job
    ]
    assert await store.complete_many(stale) == []
    assert [await get(store, job_id) for job_id in (running, waiting, done)] == before


async def test_only_applied_completions_are_returned_in_input_order(
    store: Any, clock: FakeClock
) -> None:
    a, b, c, d, e = await insert(store, new_job(), new_job(), new_job(), new_job(), new_job())
    await claim(store, limit=4)
    error = failure(clock, 1)
    applied = await store.complete_many(
        [
            ended((d, 1), "discard", error=error),
            ended((e, 1)),  # not running
            ended((b, 1)),
            ended((a, 1), "retry", error=error, delay=10),
            ended((999, 1)),  # no such job
            ended((c, 1), "snooze", delay=10),
        ]
    )
    assert applied == [d, b, a, c]
    assert [await state_of(store, i) for i in (a, b, c, d, e)] == [
        S.RETRYABLE,
        S.COMPLETED,
        S.SCHEDULED,
        S.DISCARDED,
        S.AVAILABLE,
    ]


async def test_a_run_listed_twice_is_applied_once(store: Any, clock: FakeClock) -> None:
    a, b, c = await insert(store, new_job(), new_job(), new_job())
    await claim(store)
    assert set(await store.complete_many([ended((a, 1)), ended((a, 1))])) == {a}
    assert await state_of(store, a) is S.COMPLETED
    error = failure(clock, 1)
    twice = [ended((b, 1), "retry", error=error, delay=10), ended((b, 1), "discard", error=error)]
    assert set(await store.complete_many(twice)) == {b}
    found = await get(store, b)
    assert (found.state, found.errors) == (S.RETRYABLE, (error,))  # the first one wins
    # a stale entry next to the current run of the same job: only the current one applies
    stale_first = [ended((c, 2), "discard", error=error), ended((c, 1))]
    assert set(await store.complete_many(stale_first)) == {c}
    found = await get(store, c)
    assert (found.state, found.errors) == (S.COMPLETED, ())


async def test_an_id_listed_twice_is_returned_once(store: Any, clock: FakeClock) -> None:
    a, b = await insert(store, new_job(), new_job())
    await claim(store)
    assert await store.complete_many([ended((a, 1)), ended((a, 1))]) == [a]
    assert await store.complete_many([ended((b, 2)), ended((b, 1))]) == [b]


async def test_a_refunded_run_cannot_be_completed_again(store: Any) -> None:
    (job_id,) = await insert(store, new_job())
    [run] = await claim(store)
    assert await store.complete_many([ended(run, "return")]) == [job_id]
    # attempt is back to 0: neither the old attempt nor the refunded number matches a run
    assert await store.complete_many([ended((job_id, 1)), ended((job_id, 0))]) == []
    [again] = await claim(store)
    assert again.attempt == 1
    assert await store.complete_many([ended(again)]) == [job_id]
