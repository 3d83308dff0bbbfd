"""relaybus demo: a small shop backend on a durable SQLite store, end to end.

    relaybus demo    (or: make demo, python examples/demo.py)

It lives in the package so that an installed relaybus runs it too (``relaybus demo``); it uses
a SQLite file of its own in a temporary directory, so it never touches your jobs.

It shows, in order:
  1. fan-out: one OrderPlaced event runs an inline handler at once and inserts three jobs;
  2. unique jobs: dispatching the same order again is a "duplicate" for the receipt and label
     jobs and "replaced" for the stock-sync job (the newer quantities win);
  3. priorities: four report jobs on a one-slot queue run in priority order;
  4. retries: the shipping label fails on its first attempt and succeeds on the retry;
  5. a real worker runs every job, then stops gracefully; the final job table is printed.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import relaybus as rb

# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderPlaced(rb.Event, name="shop.order_placed"):
    order_id: int
    email: str
    items: dict[str, int]  # sku -> quantity


@dataclass(frozen=True)
class ReportRequested(rb.Event, name="shop.report_requested"):
    title: str


# -- application state, handed to every handler as ctx.state ------------------------------------


@dataclass
class Shop:
    started: float = field(default_factory=time.perf_counter)
    cache: dict[int, str] = field(default_factory=dict)
    report_order: list[str] = field(default_factory=list)
    label_attempts: int = 0

    def say(self, who: str, message: str) -> None:
        print(f"  {time.perf_counter() - self.started:6.2f}s  {who:<16} {message}")


def build_bus(store: rb.SQLiteStore) -> rb.Bus[Shop]:
    bus: rb.Bus[Shop] = rb.Bus(store=store, state=Shop())

    @bus.on(OrderPlaced, name="cache.refresh")
    async def refresh_cache(event: OrderPlaced, ctx: rb.Context[Shop]) -> None:
        ctx.state.cache[event.order_id] = "placed"
        ctx.state.say("inline", f"cache: order {event.order_id} is placed (inside dispatch)")

    @bus.job(
        OrderPlaced,
        name="mail.receipt",
        queue="mail",
        unique=rb.Unique(keys=("order_id",)),  # one pending receipt per order
    )
    async def send_receipt(event: OrderPlaced, ctx: rb.Context[Shop]) -> None:
        ctx.state.say("job mail", f"receipt for order {event.order_id} sent to {event.email}")

    @bus.job(
        OrderPlaced,
        name="stock.sync",
        queue="stock",
        unique=rb.Unique(keys=("order_id",)),
        replace=rb.Replace(available=("payload",)),  # a newer dispatch updates a waiting job
    )
    async def sync_stock(event: OrderPlaced, ctx: rb.Context[Shop]) -> None:
        ctx.state.say("job stock", f"stock reserved for order {event.order_id}: {event.items}")

    @bus.job(
        OrderPlaced,
        name="shipping.label",
        queue="shipping",
        unique=rb.Unique(keys=("order_id",)),
        max_attempts=3,
        backoff=rb.Constant(0.5),  # retry half a second after a failure
    )
    async def print_label(event: OrderPlaced, ctx: rb.Context[Shop]) -> None:
        assert ctx.job is not None
        ctx.state.label_attempts += 1
        if ctx.job.attempt == 1:
            ctx.state.say("job shipping", f"attempt {ctx.job.attempt}: label printer offline!")
            raise ConnectionError("label printer offline")
        ctx.state.say("job shipping", f"attempt {ctx.job.attempt}: label printed")

    @bus.job(ReportRequested, name="reports.build", queue="reports")
    async def build_report(event: ReportRequested, ctx: rb.Context[Shop]) -> None:
        assert ctx.job is not None
        ctx.state.report_order.append(event.title)
        ctx.state.say("job reports", f"priority {ctx.job.priority}: {event.title}")

    return bus


async def wait_until_settled(bus: rb.Bus[Shop]) -> None:
    """Wait until no job is pending (scheduled, available, running or retryable)."""
    pending = {state.value for state in rb.PENDING_STATES}
    while True:
        stats = await bus.jobs.stats()
        counts = [n for by_state in stats.values() for s, n in by_state.items() if s in pending]
        if not any(counts):
            return
        await asyncio.sleep(0.05)


def print_table(jobs: list[rb.Job]) -> None:
    header = (
        f"  {'id':>3}  {'handler':<16} {'queue':<9} {'prio':>4}  {'state':<10} {'attempt':>7}"
        "  errors"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for job in jobs:
        errors = "; ".join(f"#{e.attempt} {e.kind}: {e.message}" for e in job.errors) or "-"
        print(
            f"  {job.id:>3}  {job.handler:<16} {job.queue:<9} {job.priority:>4}  "
            f"{job.state.value:<10} {job.attempt:>3}/{job.max_attempts:<3}  {errors}"
        )


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # the demo prints its own story
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shop.db"
        bus = build_bus(rb.SQLiteStore(path))
        shop = bus.state
        print(f"relaybus {rb.__version__} demo on {bus.store!r}\n")

        async with bus:
            print("1. fan-out: one event, one inline handler and three job handlers")
            order = OrderPlaced(1001, "ada@example.com", {"book": 1})
            result = await bus.dispatch(order)
            for r in result.jobs:
                print(f"     job {r.id:>2} {r.handler:<16} {r.outcome}")

            print("\n2. the same order again, with a changed quantity")
            again = OrderPlaced(1001, "ada@example.com", {"book": 2})
            result = await bus.dispatch(again)
            for r in result.jobs:
                print(f"     job {r.id:>2} {r.handler:<16} {r.outcome}")
            outcomes = {r.handler: r.outcome for r in result.jobs}
            assert outcomes == {
                "mail.receipt": "duplicate",
                "stock.sync": "replaced",
                "shipping.label": "duplicate",
            }, outcomes

            print("\n3. four reports, dispatched in this order, on a queue with one slot")
            for title, priority in [
                ("weekly digest", rb.Priority.LOW),
                ("sales dashboard", rb.Priority.NORMAL),
                ("fraud alert", rb.Priority.CRITICAL),
                ("refund summary", rb.Priority.HIGH),
            ]:
                await bus.dispatch(ReportRequested(title), priority=priority)
                print(f"     {title:<16} priority {int(priority)} ({priority.name})")

            print("\n4. a worker runs everything (the shipping label fails once, then retries)")
            worker = bus.worker(
                queues={"mail": 5, "stock": 5, "shipping": 5, "reports": 1},
                node="demo",
                poll_interval=0.1,
                grace=5,
            )
            async with worker:  # runs in the background; a graceful stop on exit
                async with asyncio.timeout(20):
                    await wait_until_settled(bus)
            print(f"     worker {worker.node.id} stopped gracefully")

            assert shop.report_order == [
                "fraud alert",
                "refund summary",
                "sales dashboard",
                "weekly digest",
            ], shop.report_order
            assert shop.label_attempts == 2  # failed once, then succeeded

            print("\n5. the job table (bus.jobs.list())")
            print_table(await bus.jobs.list(limit=100))
            print(f"\n   stats: {await bus.jobs.stats()}")
        print(f"\ndone in {time.perf_counter() - shop.started:.1f}s")


def run() -> None:
    """``relaybus demo``."""
    asyncio.run(main())


if __name__ == "__main__":
    run()
