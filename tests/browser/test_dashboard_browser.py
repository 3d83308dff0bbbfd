"""The dashboard end to end in a real headless Chromium (Debian's ``chromium`` package, driven
by Playwright with ``executable_path``: Playwright never downloads a browser here), against a
real uvicorn server and a worker running in the same event loop, on SQLite.

With ``RELAYBUS_SCREENSHOTS=DIR`` the test also saves a screenshot of every page (the ones in
docs/images/ come from ``RELAYBUS_SCREENSHOTS=docs/images``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import relaybus as rb
from relaybus.web import app

CHROMIUM = os.environ.get("RELAYBUS_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _chromium() -> str:
    """The browser binary: skipped locally when missing, a FAILURE under CI=true."""
    found = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if found is None:
        message = f"no Chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class Invoice(rb.Event, name="browser.invoice"):
    number: str
    amount: int


@dataclass(frozen=True)
class Mail(rb.Event, name="browser.mail"):
    to: str
    subject: str


def make_bus(path: Path) -> rb.Bus[Any]:
    bus = rb.Bus(store=rb.SQLiteStore(path))

    @bus.job(Invoice, name="billing.charge", queue="billing", max_attempts=1)
    async def charge(event: Invoice, ctx: rb.Context) -> None:
        if ctx.job.attempt == 1:
            raise RuntimeError(f"card declined for invoice {event.number}")

    @bus.job(Mail, name="mail.send", queue="mail")
    async def send(event: Mail, ctx: rb.Context) -> None:
        return None

    return bus


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(web: Any) -> AsyncIterator[str]:
    """uvicorn serving ``web`` on a free local port, in this event loop."""
    port = _free_port()
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _until(page: Any, selector: str, text: str, limit: float = 30.0) -> None:
    """Reload ``page`` until ``selector`` contains ``text`` (the limit is a safety net)."""
    async with asyncio.timeout(limit):
        while text not in (await page.inner_text(selector)):
            await asyncio.sleep(0.2)
            await page.reload()


async def _job_reaches(bus: rb.Bus[Any], job_id: int, state: rb.JobState) -> None:
    async with asyncio.timeout(30):  # a safety net: the worker runs the job at once
        while True:
            job = await bus.jobs.get(job_id)
            if job is not None and job.state is state:
                return
            await asyncio.sleep(0.05)


@pytest.mark.timeout(240)
async def test_the_dashboard_in_a_real_browser(tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.async_api import async_playwright

    shots = os.environ.get("RELAYBUS_SCREENSHOTS")
    shots_dir = Path(shots) if shots else None
    if shots_dir is not None:
        shots_dir.mkdir(parents=True, exist_ok=True)

    async def shot(page: Any, name: str) -> None:
        if shots_dir is not None:
            await page.screenshot(path=str(shots_dir / f"dashboard-{name}.png"), full_page=True)

    bus = make_bus(tmp_path / "jobs.db")
    async with bus:
        await bus.queues.pause("reports")
        async with bus.worker(queues={"billing": 2, "mail": 2}, poll_interval=0.2) as worker:
            for n in range(6):
                await bus.dispatch(Mail(f"user{n}@example.com", "Your receipt"))
            failed = (await bus.dispatch(Invoice("INV-1042", 1999))).jobs[0].id
            await bus.dispatch(Mail("<script>alert('x')</script>", "<b>bold?</b>"))
            await _job_reaches(bus, failed, rb.JobState.DISCARDED)
            web = app(bus, refresh=0.5, title="relaybus · shop")
            async with serving(web) as base, async_playwright() as pw:
                context = await pw.chromium.launch_persistent_context(
                    str(tmp_path / "profile"),  # a fresh profile of its own
                    executable_path=chromium,
                    headless=True,
                    args=FLAGS,
                    viewport={"width": 1200, "height": 800},
                )
                try:
                    page = context.pages[0] if context.pages else await context.new_page()
                    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))

                    # the overview: counts by queue and state, the chart, a paused queue
                    await page.goto(f"{base}/")
                    assert "Jobs by queue and state" in await page.inner_text("main")
                    assert await page.locator("svg.chart rect").count() >= 1
                    await _until(page, "table.counts", "billing")
                    await shot(page, "overview")

                    # live updates: a job arrives in the paused queue without a reload
                    await bus.queues.resume("reports")
                    await bus.queues.pause("reports")
                    await bus.dispatch(Mail("ops@example.com", "weekly"), queue="reports")
                    await page.wait_for_selector("table.counts >> text=reports", timeout=20_000)
                    # paused live updates: nothing changes any more
                    await page.click("#live-toggle")
                    assert await page.inner_text("#live-state") == "paused"
                    await bus.dispatch(Mail("late@example.com", "late"), queue="late")
                    await asyncio.sleep(2)  # four refresh periods
                    assert "late" not in await page.inner_text("table.counts")
                    await page.click("#live-toggle")
                    await page.wait_for_selector("table.counts >> text=late", timeout=20_000)

                    # the job list, filtered in the form
                    await page.click("nav >> text=Jobs")
                    await page.select_option("select[name=state]", "discarded")
                    await page.fill("input[name=queue]", "billing")
                    await page.click("form#filters button[type=submit]")
                    await page.wait_for_url("**/jobs?*state=discarded*")
                    rows = page.locator("table.jobs tbody tr")
                    assert await rows.count() == 1
                    assert "billing.charge" in await rows.first.inner_text()
                    assert "1 matching" in await page.inner_text("#match-count")
                    await page.goto(f"{base}/jobs?limit=20")
                    await shot(page, "jobs")
                    await page.goto(f"{base}/jobs?state=discarded")

                    # the discarded job's traceback
                    await page.click(f"table.jobs >> text='{failed}'")
                    await page.wait_for_url(f"**/jobs/{failed}")
                    trace = page.locator("pre.traceback")
                    assert not await trace.is_visible()
                    await page.click("summary >> text=traceback")
                    assert await trace.is_visible()
                    shown = await trace.inner_text()
                    assert "Traceback (most recent call last)" in shown
                    assert "RuntimeError: card declined for invoice INV-1042" in shown
                    assert '"number": "INV-1042"' in await page.inner_text("#payload")
                    await shot(page, "job")

                    # retry it: the running worker completes it
                    await page.click("#retry")
                    assert "retried: now available" in await page.inner_text("#outcomes")
                    await page.click(f"#outcomes >> text='job {failed}'")
                    await _until(page, "h1", "completed")
                    assert (await bus.jobs.get(failed)).state is rb.JobState.COMPLETED
                    assert worker.node.id in await page.inner_text("#node")

                    # a POST without the form's CSRF token is refused, and changes nothing
                    status = await page.evaluate(
                        f"fetch('/jobs/{failed}/delete', {{method: 'POST'}}).then(r => r.status)"
                    )
                    assert status == 403
                    assert await bus.jobs.get(failed) is not None

                    # a <script> payload renders as text
                    script_job = (await bus.jobs.list(text="<script>", limit=1))[0]
                    await page.goto(f"{base}/jobs/{script_job.id}")
                    assert "<script>alert('x')</script>" in await page.inner_text("#payload")

                    await page.goto(f"{base}/queues")
                    assert "paused" in await page.inner_text("main")
                    await shot(page, "queues")
                    await page.goto(f"{base}/nodes")
                    await _until(page, "main", "leader")
                    assert worker.node.id in await page.inner_text("main")
                    await shot(page, "nodes")
                    assert errors == [], errors  # no script error on any page
                finally:
                    await context.close()
