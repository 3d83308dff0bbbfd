"""What the dashboard tests share: an app over a seeded bus, a client on the test's own event
loop (httpx over ASGI, so PostgreSQL and MySQL pools stay on one loop), and CSRF helpers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

import relaybus as rb
from relaybus.testing import drain
from relaybus.web import app


@dataclass(frozen=True)
class Note(rb.Event, name="web.note"):
    text: str
    n: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mail(rb.Event, name="web.mail"):
    to: str


def make_bus(store: Any) -> rb.Bus[Any]:
    bus = rb.Bus(store=store)

    @bus.job(Note, name="web.note.fail", max_attempts=1)
    async def fail(event: Note, ctx: rb.Context) -> None:
        raise RuntimeError(f"cannot handle {event.text}")

    @bus.job(Mail, name="web.mail.send", queue="mail", unique=rb.Unique(by=("payload",)))
    async def send(event: Mail, ctx: rb.Context) -> None:
        return None

    return bus


async def seed(bus: rb.Bus[Any]) -> dict[str, int]:
    """Two discarded notes (one with a <script> payload), two waiting mails."""
    ids: dict[str, int] = {}
    result = await bus.dispatch(
        Note("<script>alert('x')</script>", 1), meta={"who": "<b>mallory</b>"}
    )
    ids["script"] = result.jobs[0].id
    ids["plain"] = (await bus.dispatch(Note("plain", 2))).jobs[0].id
    assert await drain(bus, queues=["default"]) == 2
    ids["mail_a"] = (await bus.dispatch(Mail("a@example.com"))).jobs[0].id
    ids["mail_b"] = (await bus.dispatch(Mail("b@example.com"))).jobs[0].id
    return ids


@asynccontextmanager
async def client_for(web: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@asynccontextmanager
async def dashboard(store: Any, **options: Any) -> AsyncIterator[tuple[Any, rb.Bus[Any], dict]]:
    """(client, bus, seeded ids) for a dashboard over ``store``."""
    bus = make_bus(store)
    async with bus:
        ids = await seed(bus)
        async with client_for(app(bus, **options)) as client:
            yield client, bus, ids


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def post_form(
    client: httpx.AsyncClient, path: str, data: dict[str, Any], *, via: str = "/jobs"
) -> httpx.Response:
    """POST ``data`` with the CSRF token of the page at ``via`` (which sets the cookie)."""
    page = await client.get(via)
    return await client.post(path, data={**data, "csrf": csrf_of(page.text)})
