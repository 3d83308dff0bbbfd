"""§2 Unique: handler name always in the key; by payload / queue / meta; keys / meta_keys;
period buckets on the store's clock; states; canonical JSON; duplicates return the existing id."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

import relaybus as rb
from relaybus.testing import drain

from ._support import Doc, Ping, claim, job_of, nonzero, one_id, outcomes

S = rb.JobState


async def test_duplicate_returns_the_existing_id_and_inserts_nothing(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.payload", unique=rb.Unique())
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        first = await bus.dispatch(Ping(1))
        assert outcomes(first) == ["inserted"]
        again = await bus.dispatch(Ping(1))
        assert outcomes(again) == ["duplicate"]
        assert one_id(again) == one_id(first)
        other = await bus.dispatch(Ping(2))
        assert outcomes(other) == ["inserted"]
        assert one_id(other) != one_id(first)
        assert nonzero(await bus.jobs.stats()) == {"default": {"available": 2}}


async def test_duplicate_does_not_change_the_existing_job(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Doc, name="conf.uniq.nochange", unique=rb.Unique(keys=("key",)))
    async def h(event: Doc, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Doc("k", {"v": 1}), delay=100, meta={"m": 1}))
        before = await job_of(bus, job_id)
        result = await bus.dispatch(Doc("k", {"v": 2}), delay=5, meta={"m": 2}, priority=0)
        assert outcomes(result) == ["duplicate"]
        assert await job_of(bus, job_id) == before


async def test_handler_name_is_always_part_of_the_key(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.a", unique=rb.Unique())
    async def a(event: Ping, ctx: rb.Context) -> None: ...

    @bus.job(Ping, name="conf.uniq.b", unique=rb.Unique())
    async def b(event: Ping, ctx: rb.Context) -> None: ...

    @bus.job(Ping, name="conf.uniq.plain")
    async def plain(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        first = await bus.dispatch(Ping(1))
        assert outcomes(first) == ["inserted"] * 3
        second = await bus.dispatch(Ping(1))
        by_handler = {r.handler: r for r in second.jobs}
        assert by_handler["conf.uniq.a"].outcome == "duplicate"
        assert by_handler["conf.uniq.b"].outcome == "duplicate"
        assert by_handler["conf.uniq.plain"].outcome == "inserted"
        first_ids = {r.handler: r.id for r in first.jobs}
        assert by_handler["conf.uniq.a"].id == first_ids["conf.uniq.a"]
        assert by_handler["conf.uniq.b"].id == first_ids["conf.uniq.b"]
        assert len(await bus.jobs.list()) == 4


async def test_by_queue(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.queue", unique=rb.Unique(by=("queue",)))
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        assert outcomes(await bus.dispatch(Ping(1))) == ["inserted"]
        assert outcomes(await bus.dispatch(Ping(2))) == ["duplicate"]  # payload ignored
        assert outcomes(await bus.dispatch(Ping(1), queue="q2")) == ["inserted"]
        assert outcomes(await bus.dispatch(Ping(3), queue="q2")) == ["duplicate"]


async def test_by_payload_and_queue(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.pq", unique=rb.Unique(by=("payload", "queue")))
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        assert outcomes(await bus.dispatch(Ping(1))) == ["inserted"]
        assert outcomes(await bus.dispatch(Ping(1), queue="q2")) == ["inserted"]
        assert outcomes(await bus.dispatch(Ping(2))) == ["inserted"]
        assert outcomes(await bus.dispatch(Ping(1))) == ["duplicate"]
        assert outcomes(await bus.dispatch(Ping(1), queue="q2")) == ["duplicate"]


async def test_by_meta_and_meta_keys_with_canonical_json(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.meta", unique=rb.Unique(by=("meta",)))
    async def whole(event: Ping, ctx: rb.Context) -> None: ...

    by_tenant = rb.Unique(by=("meta",), meta_keys=("tenant",))

    @bus.job(Ping, name="conf.uniq.meta_keys", unique=by_tenant)
    async def tenant(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        r = await bus.dispatch(Ping(1), meta={"tenant": "a", "trace": 1})
        assert outcomes(r) == ["inserted", "inserted"]
        # same meta, other key order, other payload: both duplicates
        r = await bus.dispatch(Ping(2), meta={"trace": 1, "tenant": "a"})
        assert outcomes(r) == ["duplicate", "duplicate"]
        # other trace: the whole-meta key differs, the tenant-only key does not
        r = await bus.dispatch(Ping(1), meta={"tenant": "a", "trace": 2})
        assert {x.handler: x.outcome for x in r.jobs} == {
            "conf.uniq.meta": "inserted",
            "conf.uniq.meta_keys": "duplicate",
        }
        r = await bus.dispatch(Ping(1), meta={"tenant": "b", "trace": 1})
        assert outcomes(r) == ["inserted", "inserted"]


TRACED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_the_reserved_trace_meta_key_is_never_part_of_a_unique_key(store) -> None:
    bus = rb.Bus(store=store)
    seen: list[dict] = []

    @bus.job(Ping, name="conf.uniq.traced", unique=rb.Unique(by=("payload", "meta")))
    async def h(event: Ping, ctx: rb.Context) -> None:
        seen.append(dict(ctx.meta))

    async def trace(d: rb.Dispatch, call_next):  # what a tracing dispatch middleware does
        if d.meta.pop("traced", None):
            d.meta[rb.TRACE_META_KEY] = {"traceparent": TRACED}
        return await call_next()

    bus.use(trace, on="dispatch")
    async with bus:
        first = await bus.dispatch(Ping(1), meta={"tenant": "a", "traced": True})
        assert outcomes(first) == ["inserted"]
        stored = {"tenant": "a", rb.TRACE_META_KEY: {"traceparent": TRACED}}
        assert (await job_of(bus, one_id(first))).meta == stored  # kept as given
        # untraced, or traced by another request: still the same job
        untraced = await bus.dispatch(Ping(1), meta={"tenant": "a"})
        assert outcomes(untraced) == ["duplicate"]
        assert one_id(untraced) == one_id(first)
        other = {"tenant": "a", rb.TRACE_META_KEY: {"traceparent": OTHER_TRACE}}
        assert outcomes(await bus.dispatch(Ping(1), meta=other)) == ["duplicate"]
        # the rest of the meta still counts
        assert outcomes(await bus.dispatch(Ping(1), meta={"tenant": "b"})) == ["inserted"]
        many = await bus.dispatch_many([Ping(1), Ping(2)], meta={"tenant": "a", "traced": True})
        assert [outcomes(r) for r in many] == [["duplicate"], ["inserted"]]
        await drain(bus)
    assert stored in seen  # the handler sees the trace context in ctx.meta
    with pytest.raises(rb.ConfigurationError, match="reserved"):
        rb.Unique(by=("meta",), meta_keys=("tenant", rb.TRACE_META_KEY))


async def test_keys_restrict_the_payload(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Doc, name="conf.uniq.keys", unique=rb.Unique(keys=("key",)))
    async def h(event: Doc, ctx: rb.Context) -> None: ...

    async with bus:
        first = await bus.dispatch(Doc("a", {"x": 1}))
        again = await bus.dispatch(Doc("a", {"x": 2}))
        assert outcomes(again) == ["duplicate"]
        assert one_id(again) == one_id(first)
        assert outcomes(await bus.dispatch(Doc("b", {"x": 1}))) == ["inserted"]


async def test_payload_is_compared_as_canonical_json(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Doc, name="conf.uniq.canonical", unique=rb.Unique())
    async def h(event: Doc, ctx: rb.Context) -> None: ...

    async with bus:
        body = {"x": 1, "y": {"b": 2, "a": [1, {"q": 1, "p": 2}]}}
        reordered = {"y": {"a": [1, {"p": 2, "q": 1}], "b": 2}, "x": 1}
        first = await bus.dispatch(Doc("k", body))
        again = await bus.dispatch(Doc("k", reordered))
        assert outcomes(again) == ["duplicate"]
        assert one_id(again) == one_id(first)
        # list order does matter
        changed = {"x": 1, "y": {"b": 2, "a": [{"q": 1, "p": 2}, 1]}}
        assert outcomes(await bus.dispatch(Doc("k", changed))) == ["inserted"]


async def test_period_buckets_on_the_store_clock(store, clock) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.hourly", unique=rb.Unique(period=3600))
    async def hourly(event: Ping, ctx: rb.Context) -> None: ...

    @bus.job(Ping, name="conf.uniq.daily", unique=rb.Unique(period=timedelta(days=1)))
    async def daily(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        # the fake clock starts on an hour boundary (12:00:00 UTC): buckets are floor(t / period)
        assert clock.now().timestamp() % 3600 == 0
        first = await bus.dispatch(Ping(1))
        assert outcomes(first) == ["inserted", "inserted"]
        clock.advance(3599)
        assert outcomes(await bus.dispatch(Ping(1))) == ["duplicate", "duplicate"]
        clock.advance(1)  # 13:00:00: a new hourly bucket, same day
        r = await bus.dispatch(Ping(1))
        assert {x.handler: x.outcome for x in r.jobs} == {
            "conf.uniq.hourly": "inserted",
            "conf.uniq.daily": "duplicate",
        }
        hourly_ids = {x.id for x in first.jobs} | {x.id for x in r.jobs}
        assert len(hourly_ids) == 3
        clock.advance(11 * 3600)  # next day 00:00:00
        assert outcomes(await bus.dispatch(Ping(1))) == ["inserted", "inserted"]


async def test_completed_cancelled_discarded_do_not_block_by_default(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.ends", unique=rb.Unique(), max_attempts=1)
    async def h(event: Ping, ctx: rb.Context) -> None:
        if event.n == 2:
            raise rb.Cancel("c")
        if event.n == 3:
            raise ValueError("d")

    async with bus:
        first = {n: one_id(await bus.dispatch(Ping(n))) for n in (1, 2, 3)}
        await drain(bus)
        for n, job_id in first.items():
            r = await bus.dispatch(Ping(n))
            assert outcomes(r) == ["inserted"]
            assert one_id(r) != job_id


async def test_every_pending_state_blocks_by_default(store, clock) -> None:
    bus = rb.Bus(store=store)
    inner: list[rb.DispatchResult] = []

    @bus.job(Ping, name="conf.uniq.pending", unique=rb.Unique(), backoff=rb.Constant(60))
    async def h(event: Ping, ctx: rb.Context) -> None:
        if event.n == 1:  # running: a dispatch from inside the handler is a duplicate
            inner.append(await ctx.bus.dispatch(Ping(1)))
        if event.n == 2:
            raise ValueError("to retryable")

    async with bus:
        scheduled = one_id(await bus.dispatch(Ping(0), delay=600))
        r = await bus.dispatch(Ping(0))
        assert (outcomes(r), one_id(r)) == (["duplicate"], scheduled)

        available = one_id(await bus.dispatch(Ping(9), delay=0))
        r = await bus.dispatch(Ping(9))
        assert (outcomes(r), one_id(r)) == (["duplicate"], available)

        running = one_id(await bus.dispatch(Ping(1)))
        retryable = one_id(await bus.dispatch(Ping(2)))
        await drain(bus)
        assert len(inner) == 1
        assert (outcomes(inner[0]), one_id(inner[0])) == (["duplicate"], running)

        assert (await job_of(bus, retryable)).state is S.RETRYABLE
        r = await bus.dispatch(Ping(2))
        assert (outcomes(r), one_id(r)) == (["duplicate"], retryable)


async def test_states_may_include_finished_states(store) -> None:
    bus = rb.Bus(store=store)
    states = frozenset(rb.JobState) - {S.CANCELLED, S.DISCARDED}

    @bus.job(Ping, name="conf.uniq.forever", unique=rb.Unique(states=states))
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        await drain(bus)
        assert (await job_of(bus, job_id)).state is S.COMPLETED
        r = await bus.dispatch(Ping(1))
        assert (outcomes(r), one_id(r)) == (["duplicate"], job_id)


@pytest.mark.parametrize("missing", [S.SCHEDULED, S.AVAILABLE, S.RUNNING])
def test_states_must_include_scheduled_available_running(missing) -> None:
    states = {S.SCHEDULED, S.AVAILABLE, S.RUNNING, S.RETRYABLE} - {missing}
    with pytest.raises(ValueError):
        rb.Unique(states=frozenset(states))


def test_states_without_retryable_and_strings_are_accepted() -> None:
    rb.Unique(states=frozenset({S.SCHEDULED, S.AVAILABLE, S.RUNNING}))
    rb.Unique(states={"scheduled", "available", "running", "completed"})


def test_bad_unique_options_are_rejected() -> None:
    with pytest.raises(ValueError):
        rb.Unique(by=("payload", "nonsense"))
    with pytest.raises(ValueError):
        rb.Unique(period=0)
    with pytest.raises(ValueError):
        rb.Unique(period=-5)


async def test_retryable_outside_states_comes_back_or_is_discarded_on_conflict(
    store, clock
) -> None:
    bus = rb.Bus(store=store)
    runs: list[tuple[int, int]] = []
    blocking = frozenset({S.SCHEDULED, S.AVAILABLE, S.RUNNING})

    @bus.job(
        Ping,
        name="conf.uniq.no_retryable",
        unique=rb.Unique(states=blocking),
        backoff=rb.Constant(60),
    )
    async def h(event: Ping, ctx: rb.Context) -> None:
        runs.append((event.n, ctx.job.attempt))
        if ctx.job.attempt == 1 and event.n in (1, 2):
            raise ValueError("fail once")

    async with bus:
        # 1) no other holder: the retried job comes back and runs
        lone = one_id(await bus.dispatch(Ping(1)))
        await drain(bus)
        assert (await job_of(bus, lone)).state is S.RETRYABLE
        clock.advance(60)
        assert await drain(bus) == 1
        assert (await job_of(bus, lone)).state is S.COMPLETED

        # 2) a retryable job does not block: a new job takes the key meanwhile
        old = one_id(await bus.dispatch(Ping(2)))
        await drain(bus)
        assert (await job_of(bus, old)).state is S.RETRYABLE
        holder = await bus.dispatch(Ping(2), delay=3600)  # holds the key as `scheduled`
        assert outcomes(holder) == ["inserted"]
        holder_id = one_id(holder)
        assert holder_id != old

        # when the old job comes back, the holder wins: never two blocking copies
        clock.advance(60)
        runs.clear()
        assert await drain(bus) == 0
        job = await job_of(bus, old)
        assert job.state is S.DISCARDED
        assert job.errors[-1].kind == "unique_conflict"
        assert re.search(rf"\b{holder_id}\b", job.errors[-1].message)
        assert len(job.errors) == 2
        assert (await job_of(bus, holder_id)).state is S.SCHEDULED
        assert runs == []


async def test_dispatch_many_in_batch_duplicates_in_input_order(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.batch", unique=rb.Unique())
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        results = await bus.dispatch_many([Ping(1), Ping(2), Ping(1), Ping(3), Ping(2)])
        assert [outcomes(r) for r in results] == [
            ["inserted"],
            ["inserted"],
            ["duplicate"],
            ["inserted"],
            ["duplicate"],
        ]
        ids = [one_id(r) for r in results]
        assert ids[2] == ids[0]
        assert ids[4] == ids[1]
        assert len(set(ids)) == 3
        assert len(await bus.jobs.list()) == 3


async def test_queue_is_not_in_the_key_unless_asked(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.not_queue", unique=rb.Unique())
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        first = await bus.dispatch(Ping(1), queue="a")
        again = await bus.dispatch(Ping(1), queue="b")
        assert (outcomes(again), one_id(again)) == (["duplicate"], one_id(first))
        assert (await job_of(bus, one_id(first))).queue == "a"


async def test_admin_cancel_frees_the_key(store) -> None:
    bus = rb.Bus(store=store)

    @bus.job(Ping, name="conf.uniq.admin_cancel", unique=rb.Unique())
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        first = one_id(await bus.dispatch(Ping(1), delay=60))
        await bus.jobs.cancel(first)
        r = await bus.dispatch(Ping(1))
        assert outcomes(r) == ["inserted"]
        assert one_id(r) != first


async def test_a_snoozed_job_keeps_its_key_even_without_retryable(store, clock) -> None:
    bus = rb.Bus(store=store)
    blocking = frozenset({S.SCHEDULED, S.AVAILABLE, S.RUNNING})

    @bus.job(Ping, name="conf.uniq.snoozed", unique=rb.Unique(states=blocking))
    async def h(event: Ping, ctx: rb.Context) -> None:
        raise rb.Snooze(60)

    async with bus:
        first = one_id(await bus.dispatch(Ping(1)))
        await drain(bus)
        assert (await job_of(bus, first)).state is S.SCHEDULED
        r = await bus.dispatch(Ping(1))
        assert (outcomes(r), one_id(r)) == (["duplicate"], first)


async def test_a_rescued_job_outside_states_loses_to_a_new_holder(store, clock) -> None:
    bus = rb.Bus(store=store)
    blocking = frozenset({S.SCHEDULED, S.AVAILABLE, S.RUNNING})

    @bus.job(Ping, name="conf.uniq.rescued", unique=rb.Unique(states=blocking))
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        w = bus.worker(queues={"default": 1}, node_ttl=30)
        old = one_id(await bus.dispatch(Ping(1)))
        assert [j.id for j in await claim(store, "dead-node")] == [old]
        clock.advance(31)
        assert await w.rescuer.run_once() == 1
        assert (await job_of(bus, old)).state is S.RETRYABLE  # due now, but holds no key
        holder = await bus.dispatch(Ping(1), delay=600)
        assert outcomes(holder) == ["inserted"]
        await w.stager.run_once()
        job = await job_of(bus, old)
        assert job.state is S.DISCARDED
        assert [e.kind for e in job.errors] == ["rescued", "unique_conflict"]
        assert re.search(rf"\b{one_id(holder)}\b", job.errors[-1].message)


async def test_admin_retry_of_the_holder_itself_is_no_conflict(store) -> None:
    bus = rb.Bus(store=store)
    forever = frozenset(rb.JobState)

    @bus.job(Ping, name="conf.uniq.self_retry", unique=rb.Unique(states=forever))
    async def h(event: Ping, ctx: rb.Context) -> None: ...

    async with bus:
        job_id = one_id(await bus.dispatch(Ping(1)))
        await drain(bus)
        assert (await bus.jobs.retry(job_id)).state is S.AVAILABLE
        r = await bus.dispatch(Ping(1))
        assert (outcomes(r), one_id(r)) == (["duplicate"], job_id)
        assert await drain(bus) == 1


async def test_finished_states_in_unique_states_never_make_a_second_holder(store, clock) -> None:
    """With finished states in ``states`` (unique "ever"), a job that finishes while another
    job holds its key ends as it must and does not take the key over."""
    bus = rb.Bus(store=store)
    blocking = frozenset(
        {S.SCHEDULED, S.AVAILABLE, S.RUNNING, S.COMPLETED, S.CANCELLED, S.DISCARDED}
    )

    @bus.job(
        Ping, name="conf.uniq.ever", unique=rb.Unique(states=blocking), backoff=rb.Constant(60)
    )
    async def h(event: Ping, ctx: rb.Context) -> None:
        if ctx.job.attempt == 1:
            raise ValueError("fail once")

    async with bus:
        old = one_id(await bus.dispatch(Ping(1)))
        await drain(bus)
        assert (await job_of(bus, old)).state is S.RETRYABLE  # retryable does not block
        holder = one_id(await bus.dispatch(Ping(1), delay=3600))
        assert holder != old
        clock.advance(60)
        await drain(bus)  # the old job comes back into `available`: the holder wins
        job = await job_of(bus, old)
        assert job.state is S.DISCARDED
        assert job.errors[-1].kind == "unique_conflict"
        again = await bus.dispatch(Ping(1))
        assert (outcomes(again), one_id(again)) == (["duplicate"], holder)
        cancelled = await bus.jobs.cancel(holder)  # the holder keeps the key when cancelled
        assert cancelled.state is S.CANCELLED
        assert outcomes(await bus.dispatch(Ping(1))) == ["duplicate"]
