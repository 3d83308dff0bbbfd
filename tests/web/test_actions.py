"""Dashboard actions: single and bulk, their outcomes, CSRF, read-only mode, on every store."""

from __future__ import annotations

import relaybus as rb
from relaybus.web import app

from ._support import Mail, client_for, csrf_of, dashboard, post_form

S = rb.JobState


async def test_retry_cancel_delete_one_job_show_their_outcome(store) -> None:
    async with dashboard(store) as (client, bus, ids):
        retried = await post_form(client, f"/jobs/{ids['plain']}/retry", {})
        assert retried.status_code == 200
        assert "retried: now available" in retried.text
        assert (await bus.jobs.get(ids["plain"])).state is S.AVAILABLE
        again = await post_form(client, f"/jobs/{ids['plain']}/retry", {})
        assert "unchanged: the job is available" in again.text
        cancelled = await post_form(client, f"/jobs/{ids['plain']}/cancel", {})
        assert "cancelled: now cancelled" in cancelled.text
        deleted = await post_form(client, f"/jobs/{ids['plain']}/delete", {})
        assert "deleted (was cancelled)" in deleted.text
        assert await bus.jobs.get(ids["plain"]) is None
        gone = await post_form(client, f"/jobs/{ids['plain']}/retry", {})
        assert f"JobNotFound: no job with id {ids['plain']}" in gone.text
        unknown = await post_form(client, f"/jobs/{ids['script']}/explode", {})
        assert unknown.status_code == 404


async def test_retry_blocked_by_a_unique_holder_names_the_conflict(store) -> None:
    async with dashboard(store) as (client, bus, ids):
        await bus.jobs.cancel(ids["mail_a"])  # gives up the key
        holder = (await bus.dispatch(Mail("a@example.com"))).jobs[0]
        assert holder.outcome == "inserted"
        page = await post_form(client, f"/jobs/{ids['mail_a']}/retry", {})
        assert page.status_code == 200
        assert f"UniqueConflict: not retried — job {holder.id} holds its unique key" in page.text
        assert (await bus.jobs.get(ids["mail_a"])).state is S.CANCELLED


async def test_bulk_actions_on_selected_jobs_are_bounded(store) -> None:
    async with dashboard(store) as (client, bus, ids):
        picked = [ids["plain"], ids["script"], ids["mail_a"]]
        page = await post_form(client, "/jobs/bulk", {"action": "retry", "ids": picked})
        assert page.status_code == 200
        assert page.text.count("retried: now available") == 2
        assert "unchanged: the job is available" in page.text  # mail_a was waiting already
        states = {i: (await bus.jobs.get(i)).state for i in picked}
        assert set(states.values()) == {S.AVAILABLE}
        cancel = await post_form(client, "/jobs/bulk", {"action": "cancel", "ids": picked})
        assert cancel.text.count("cancelled: now cancelled") == 3
        too_many = await post_form(
            client, "/jobs/bulk", {"action": "delete", "ids": [str(i) for i in range(1, 1002)]}
        )
        assert too_many.status_code == 400 and "at most 1,000 jobs per action" in too_many.text
        none = await post_form(client, "/jobs/bulk", {"action": "delete"})
        assert none.status_code == 400 and "no jobs selected" in none.text
        bad = await post_form(client, "/jobs/bulk", {"action": "delete", "ids": ["1; drop"]})
        assert bad.status_code == 400
        assert await bus.jobs.count(state="cancelled") == 3  # the refused ones changed nothing


async def test_bulk_action_by_filter(store) -> None:
    async with dashboard(store) as (client, bus, _ids):
        page = await post_form(
            client, "/jobs/bulk", {"action": "retry", "matching": "1", "state": "discarded"}
        )
        assert "2 retried (at most 1,000 per action)" in page.text
        assert await bus.jobs.count(state="available") == 4
        unfiltered = await post_form(client, "/jobs/bulk", {"action": "delete", "matching": "1"})
        assert (
            unfiltered.status_code == 400 and "needs a state, queue or handler" in unfiltered.text
        )
        assert await bus.jobs.count() == 4


async def test_pause_and_resume_a_queue(store) -> None:
    async with dashboard(store) as (client, bus, _ids):
        page = await post_form(client, "/queues/pause", {"queue": "mail"}, via="/queues")
        assert "paused" in page.text
        assert [q.name for q in await bus.queues.list() if q.paused] == ["mail"]
        overview = (await client.get("/")).text
        assert 'class="paused">paused' in overview and ">Resume</button>" in overview
        await post_form(client, "/queues/resume", {"queue": "mail"}, via="/queues")
        assert not any(q.paused for q in await bus.queues.list())
        bad = await post_form(client, "/queues/pause", {"queue": ""}, via="/queues")
        assert "ConfigurationError" in bad.text and 'class="bad"' in bad.text


async def test_a_post_without_a_valid_csrf_token_changes_nothing(store) -> None:
    async with dashboard(store) as (client, bus, ids):
        target = f"/jobs/{ids['plain']}/retry"
        async with client_for(app(bus)) as stranger:
            refused = await stranger.post(target, data={})
            assert refused.status_code == 403 and "no CSRF cookie" in refused.text
        await client.get("/jobs")  # now the browser has the cookie
        missing = await client.post(target, data={})
        assert missing.status_code == 403 and "no CSRF token in the form" in missing.text
        wrong = await client.post(target, data={"csrf": "x" * 43})
        assert wrong.status_code == 403 and "does not match" in wrong.text
        token = csrf_of((await client.get("/jobs")).text)
        cross = await client.post(
            target, data={"csrf": token}, headers={"sec-fetch-site": "cross-site"}
        )
        assert cross.status_code == 403 and "cross-site" in cross.text
        foreign = await client.post(
            target, data={"csrf": token}, headers={"origin": "http://evil.example"}
        )
        assert foreign.status_code == 403 and "another origin" in foreign.text
        assert (await bus.jobs.get(ids["plain"])).state is S.DISCARDED
        ok = await client.post(
            target, data={"csrf": token}, headers={"sec-fetch-site": "same-origin"}
        )
        assert ok.status_code == 200 and (await bus.jobs.get(ids["plain"])).state is S.AVAILABLE


async def test_read_only_mode_shows_no_actions_and_refuses_them(store) -> None:
    async with dashboard(store, read_only=True) as (client, bus, ids):
        for path in ("/", "/jobs", f"/jobs/{ids['plain']}", "/queues"):
            page = await client.get(path)
            assert page.status_code == 200
            assert 'method="post"' not in page.text, path
            assert "read-only" in page.text
        token = client.cookies.get("relaybus_csrf")
        refused = await client.post(f"/jobs/{ids['plain']}/retry", data={"csrf": token})
        assert refused.status_code == 403 and "read-only" in refused.text
        refused = await client.post("/queues/pause", data={"csrf": token, "queue": "mail"})
        assert refused.status_code == 403
        assert (await bus.jobs.get(ids["plain"])).state is S.DISCARDED
        assert not any(q.paused for q in await bus.queues.list())


async def test_the_back_link_stays_on_this_site_and_odd_bodies_are_refused(store) -> None:
    async with dashboard(store) as (client, _bus, ids):
        for target, expected in [
            ("/jobs?state=discarded", "/jobs?state=discarded"),
            ("//evil.example/x", "/jobs"),
            ("/\\evil.example", "/jobs"),
            ("https://evil.example/", "/jobs"),
        ]:
            page = await post_form(
                client, "/jobs/bulk", {"action": "retry", "ids": [ids["plain"]], "next": target}
            )
            assert page.status_code == 200
            assert f'href="{expected}" id="back"' in page.text.replace("&amp;", "&"), target
        token = client.cookies.get("relaybus_csrf")
        multipart = await client.post(
            "/jobs/bulk", files={"f": ("x", b"y")}, data={"csrf": token, "action": "retry"}
        )
        assert multipart.status_code == 400 and "not a URL-encoded form" in multipart.text
        huge = await client.post(
            "/jobs/bulk",
            content=b"csrf=" + token.encode() + b"&ids=1" * 300_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert huge.status_code == 400
