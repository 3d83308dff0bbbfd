"""The dashboard's pages (GET only, nothing changes): overview, jobs, job detail, queues,
nodes. Every value comes from the admin API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._admin import COUNT_CAP
from .._types import Job, QueueInfo
from .render import STATES, chart_svg, timeline

if TYPE_CHECKING:
    from .app import Dashboard

__all__ = ["PAGE_SIZES", "Filters", "not_found", "routes"]

PAGE_SIZES = (20, 50, 100, 200)


def routes(dash: Dashboard) -> list[Route]:
    async def overview(request: Request) -> Response:
        bus = await dash.ready()
        queues = await bus.queues.list(cap=COUNT_CAP)
        throughput = await bus.jobs.throughput(window=3600, buckets=12)
        nodes = await bus.nodes()
        rate = throughput.failure_rate
        return dash.render(
            request,
            "overview.html",
            queues=queues,
            capped=_capped_states(queues),
            totals=_totals(queues),
            chart=chart_svg(throughput),
            throughput=throughput,
            failure_rate=None if rate is None else f"{rate:.1%}",
            nodes=nodes,
            cap=COUNT_CAP,
        )

    async def jobs(request: Request) -> Response:
        bus = await dash.ready()
        problem, filters = Filters.parse(request.query_params)
        rows: list[Job] = []
        count = 0
        links: dict[str, str] = {}
        if problem is None:
            try:
                rows, links = await _page(dash, filters)
                count = await bus.jobs.count(
                    state=filters.state,
                    queue=filters.queue,
                    handler=filters.handler,
                    text=filters.text,
                    cap=COUNT_CAP,
                )
            except (ValueError, TypeError) as exc:
                problem = str(exc)
        return dash.render(
            request,
            "jobs.html",
            status=400 if problem else 200,
            jobs=rows,
            filters=filters,
            problem=problem,
            count=count,
            capped=count >= COUNT_CAP,
            links={k: f"{request.url_for('jobs').path}?{v}" for k, v in links.items()},
            page_sizes=PAGE_SIZES,
            bulk_limit=1000,
        )

    async def job(request: Request) -> Response:
        bus = await dash.ready()
        job_id = int(request.path_params["job_id"])
        found = await bus.jobs.get(job_id)
        if found is None:
            return dash.render(request, "missing.html", status=404, what=f"no job with id {job_id}")
        return dash.render(request, "job.html", job=found, timeline=timeline(found))

    async def queues(request: Request) -> Response:
        bus = await dash.ready()
        listed = await bus.queues.list(cap=COUNT_CAP)
        return dash.render(
            request, "queues.html", queues=listed, capped=_capped_states(listed), cap=COUNT_CAP
        )

    async def nodes(request: Request) -> Response:
        bus = await dash.ready()
        return dash.render(request, "nodes.html", nodes=await bus.nodes())

    return [
        Route("/", overview, name="overview"),
        Route("/jobs", jobs, name="jobs"),
        Route("/jobs/{job_id:int}", job, name="job"),
        Route("/queues", queues, name="queues"),
        Route("/nodes", nodes, name="nodes"),
    ]


def not_found(dash: Dashboard) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        detail = exc.detail if isinstance(exc, HTTPException) else "not found"
        return dash.render(request, "missing.html", status=404, what=detail)

    return handler


@dataclass(frozen=True)
class Filters:
    """The job list's query: filters, order, page size and cursor."""

    state: str | None = None
    queue: str | None = None
    handler: str | None = None
    text: str | None = None
    order: str = "newest"
    limit: int = 50
    after_id: int | None = None
    before_id: int | None = None

    @classmethod
    def parse(cls, query: Any) -> tuple[str | None, Filters]:
        """The filters of a query string, and what is wrong with it (None when nothing)."""

        def text(name: str) -> str | None:
            value = query.get(name, "")
            return value if value.strip() else None

        problems: list[str] = []
        state = text("state")
        if state is not None and state not in STATES:
            problems.append(f"unknown state {state!r}")
            state = None
        order = query.get("order", "newest")
        if order not in ("newest", "oldest"):
            problems.append(f"order is 'newest' or 'oldest', not {order!r}")
            order = "newest"
        cursor: dict[str, int | None] = {}
        for name in ("after_id", "before_id"):
            raw = text(name)
            cursor[name] = None
            if raw is not None:
                if raw.isdigit() and int(raw) > 0:
                    cursor[name] = int(raw)
                else:
                    problems.append(f"{name} must be a job id, not {raw!r}")
        raw_limit = query.get("limit", "50")
        limit = int(raw_limit) if raw_limit.isdigit() and int(raw_limit) in PAGE_SIZES else 50
        parsed = cls(
            state=state,
            queue=text("queue"),
            handler=text("handler"),
            text=text("text"),
            order=order,
            limit=limit,
            after_id=cursor["after_id"],
            before_id=cursor["before_id"],
        )
        return ("; ".join(problems) or None), parsed

    def query(self, **changes: Any) -> str:
        """This query string with ``changes`` (None drops a key)."""
        values = replace(self, **changes)
        pairs = [
            (name, str(getattr(values, name)))
            for name in (
                "state",
                "queue",
                "handler",
                "text",
                "order",
                "limit",
                "after_id",
                "before_id",
            )
            if getattr(values, name) is not None
        ]
        return urlencode(pairs)


async def _page(dash: Dashboard, f: Filters) -> tuple[list[Job], dict[str, str]]:
    """One page of jobs and the query strings of the pages around it. A page is read one job
    longer than shown, to know whether there are more in the direction of travel; going back
    (``after_id`` on a newest-first list, ``before_id`` oldest-first) reads in the other order
    and turns the page round."""
    newest = f.order == "newest"
    backward = (newest and f.after_id is not None) or (not newest and f.before_id is not None)
    order = ("oldest" if newest else "newest") if backward else f.order
    rows = await dash.bus.jobs.list(
        state=f.state,
        queue=f.queue,
        handler=f.handler,
        text=f.text,
        limit=f.limit + 1,
        after_id=f.after_id,
        before_id=f.before_id,
        order=order,  # type: ignore[arg-type]
    )
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    if backward:
        rows.reverse()
    links: dict[str, str] = {}
    if not rows:
        return rows, links
    first, last = rows[0].id, rows[-1].id
    ahead = more if not backward else True
    behind = (f.after_id is not None or f.before_id is not None) if not backward else more
    if newest:
        if ahead:
            links["older"] = f.query(before_id=last, after_id=None)
        if behind:
            links["newer"] = f.query(after_id=first, before_id=None)
    else:
        if ahead:
            links["newer"] = f.query(after_id=last, before_id=None)
        if behind:
            links["older"] = f.query(before_id=first, after_id=None)
    return rows, links


def _capped_states(queues: list[QueueInfo]) -> set[str]:
    """States whose counts reached the cap (their numbers are lower bounds)."""
    totals = _totals(queues)
    return {state for state, total in totals.items() if total >= COUNT_CAP}


def _totals(queues: list[QueueInfo]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for queue in queues:
        for state, count in queue.counts.items():
            totals[state] = totals.get(state, 0) + count
    return totals
