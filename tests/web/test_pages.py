"""The dashboard's pages on every store (httpx over ASGI on the test's event loop)."""

from __future__ import annotations

import re

import relaybus as rb
from relaybus.web import app

from ._support import Note, client_for, dashboard

S = rb.JobState


async def test_every_page_renders_from_the_admin_api(store) -> None:
    async with dashboard(store) as (client, _bus, ids):
        overview = await client.get("/")
        assert overview.status_code == 200
        assert "Jobs by queue and state" in overview.text
        assert re.search(r">mail</a>", overview.text)
        assert 'class="chart"' in overview.text  # the last hour, drawn server-side
        assert "<title>discarded: 2</title>" in overview.text
        assert "failure rate<b>100.0%</b>" in overview.text
        jobs = await client.get("/jobs")
        assert jobs.status_code == 200 and "4 matching" in jobs.text
        detail = await client.get(f"/jobs/{ids['plain']}")
        assert detail.status_code == 200
        assert "RuntimeError" in detail.text and "Traceback (most recent call last)" in detail.text
        assert "cannot handle plain" in detail.text
        assert re.search(r'id="node">drain-', detail.text)  # the node that ran it
        queues = await client.get("/queues")
        assert queues.status_code == 200 and ">mail</a>" in queues.text
        nodes = await client.get("/nodes")
        assert nodes.status_code == 200 and "No live node" in nodes.text
        missing = await client.get("/jobs/999999")
        assert missing.status_code == 404 and "no job with id 999999" in missing.text
        assert (await client.get("/nope")).status_code == 404
        assert (await client.get("/static/htmx.min.js")).status_code == 200


async def test_payload_and_meta_values_are_escaped(store) -> None:
    async with dashboard(store) as (client, _bus, ids):
        page = (await client.get(f"/jobs/{ids['script']}")).text
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
        assert "<b>mallory</b>" not in page and "&lt;b&gt;mallory&lt;/b&gt;" in page
        listing = (await client.get("/jobs", params={"text": "<script>"})).text
        assert "<script>alert" not in listing and "1 matching" in listing
        # every script the pages load comes from the dashboard itself
        assert set(re.findall(r"<script[^>]*>", page)) == {
            '<script src="/static/htmx.min.js">',
            '<script src="/static/dashboard.js">',
        }


async def test_jobs_filter_by_state_queue_handler_and_text(store) -> None:
    async with dashboard(store) as (client, _bus, ids):

        async def listed(**params: str) -> list[int]:
            page = await client.get("/jobs", params=params)
            assert page.status_code == 200, page.text
            return [int(i) for i in re.findall(r'name="ids" value="(\d+)"', page.text)]

        assert await listed(state="discarded") == [ids["plain"], ids["script"]]
        assert await listed(queue="mail") == [ids["mail_b"], ids["mail_a"]]
        assert await listed(handler="web.mail.send", text="b@example") == [ids["mail_b"]]
        assert await listed(queue="mail", order="oldest") == [ids["mail_a"], ids["mail_b"]]
        assert await listed(state="completed") == []
        bad = await client.get("/jobs", params={"state": "sleeping", "after_id": "x"})
        assert bad.status_code == 400
        assert "unknown state" in bad.text and "after_id must be a job id" in bad.text
        bad_queue = await client.get("/jobs", params={"queue": "no spaces allowed"})
        assert bad_queue.status_code == 400


async def test_jobs_page_with_cursors_both_ways(store) -> None:
    bus = rb.Bus(store=store)
    bus.job(Note, name="web.page")(_noop)
    async with bus:
        ids = [(await bus.dispatch(Note(str(n), n))).jobs[0].id for n in range(45)]
        async with client_for(app(bus)) as client:

            async def page(query: str) -> tuple[list[int], dict[str, str]]:
                text = (await client.get(f"/jobs?{query}")).text
                shown = [int(i) for i in re.findall(r'name="ids" value="(\d+)"', text)]
                links = dict(
                    (m[1], m[0].replace("&amp;", "&"))
                    for m in re.findall(r'href="/jobs\?([^"]+)" id="(\w+)"', text)
                )
                return shown, links

            first, links = await page("limit=20")
            assert first == ids[::-1][:20] and set(links) == {"older"}
            second, links = await page(links["older"])
            assert second == ids[::-1][20:40] and set(links) == {"older", "newer"}
            third, links = await page(links["older"])
            assert third == ids[::-1][40:] and set(links) == {"newer"}
            back, links = await page(links["newer"])
            assert back == second and set(links) == {"older", "newer"}
            back, links = await page(links["newer"])
            assert back == first and set(links) == {"older"}
            oldest, links = await page("limit=20&order=oldest")
            assert oldest == ids[:20] and set(links) == {"newer"}
            nxt, links = await page(links["newer"])
            assert nxt == ids[20:40]
            prev, _ = await page(links["older"])
            assert prev == ids[:20]


async def test_overview_counts_are_capped(store, monkeypatch) -> None:
    from relaybus.web import pages

    monkeypatch.setattr(pages, "COUNT_CAP", 3)
    bus = rb.Bus(store=store)
    bus.job(Note, name="web.cap")(_noop)
    async with bus:
        for n in range(5):
            await bus.dispatch(Note(str(n)))
        async with client_for(app(bus)) as client:
            overview = (await client.get("/")).text
            assert ">3+</a>" in overview and "a number with + is a lower bound" in overview
            assert "3+ matching" in (await client.get("/jobs")).text


async def test_mounted_under_a_prefix_links_stay_inside(store) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    async with dashboard(store) as (_, bus, ids):
        outer = Starlette(routes=[Mount("/admin/jobs", app=app(bus))])
        async with client_for(outer) as client:
            page = await client.get("/admin/jobs/")
            assert page.status_code == 200
            assert 'href="/admin/jobs/jobs"' in page.text
            assert "/admin/jobs/static/htmx.min.js" in page.text
            assert "Path=/admin/jobs/" in page.headers["set-cookie"]
            detail = await client.get(f"/admin/jobs/jobs/{ids['plain']}")
            assert 'action="/admin/jobs/jobs/' in detail.text


async def _noop(event: Note, ctx: rb.Context) -> None:
    return None
