"""The dashboard's actions (POST only, behind the CSRF check, refused in read-only mode):
retry, cancel and delete one job or many (at most ``BULK_LIMIT``), pause and resume queues.
Each shows its outcome, job by job; each is logged on the ``relaybus.web`` logger."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._admin import BULK_LIMIT
from .._errors import JobNotFound, JobRunning, RelaybusError, UniqueConflict
from .._types import Job
from .security import csrf_problem

if TYPE_CHECKING:
    from .app import Dashboard

__all__ = ["ACTIONS", "Outcome", "routes"]

log = logging.getLogger("relaybus.web")

ACTIONS = ("retry", "cancel", "delete")
_MAX_BODY = 1 << 20
_MAX_FIELDS = 2 * BULK_LIMIT  # more ids than a bulk action takes are refused by count
_PAST = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}


@dataclass(frozen=True)
class Outcome:
    """What one action did to one job (or queue)."""

    target: str
    ok: bool
    text: str
    job_id: int | None = None


Handler = Callable[[Request, FormData], Awaitable[Response]]


def routes(dash: Dashboard) -> list[Route]:
    def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if dash.read_only:
                return _refused(dash, request, "the dashboard is read-only")
            form = await _form(request)
            if form is None:
                return _refused(
                    dash,
                    request,
                    "not a URL-encoded form (or over 1 MB, or too many fields)",
                    status=400,
                )
            problem = csrf_problem(request, form.get("csrf"))
            if problem is not None:
                log.warning(
                    "dashboard: refused %s %s: %s", request.method, request.url.path, problem
                )
                return _refused(dash, request, f"CSRF check failed: {problem}")
            await dash.ready()
            return await handler(request, form)

        return endpoint

    async def one(request: Request, form: FormData) -> Response:
        job_id = int(request.path_params["job_id"])
        action = str(request.path_params["action"])
        if action not in ACTIONS:
            return _refused(dash, request, f"unknown action {action!r}", status=404)
        outcome = await _apply(dash, action, job_id)
        back = request.url_for("job", job_id=job_id).path
        return _show(dash, request, action, [outcome], back)

    async def bulk(request: Request, form: FormData) -> Response:
        action = str(form.get("action", ""))
        if action not in ACTIONS:
            return _refused(dash, request, f"unknown action {action!r}", status=400)
        back = _back(request, form)
        if form.get("matching") == "1":
            return await _matching(dash, request, action, form, back)
        ids: list[int] = []
        for raw in form.getlist("ids"):
            if not isinstance(raw, str) or not raw.isdigit():
                return _refused(dash, request, f"not a job id: {str(raw)[:40]!r}", status=400)
            ids.append(int(raw))
        if not ids:
            return _refused(dash, request, "no jobs selected", status=400)
        if len(ids) > BULK_LIMIT:
            return _refused(
                dash,
                request,
                f"at most {BULK_LIMIT:,} jobs per action ({len(ids):,} selected)",
                status=400,
            )
        outcomes = [await _apply(dash, action, job_id) for job_id in dict.fromkeys(ids)]
        return _show(dash, request, action, outcomes, back)

    async def queue(request: Request, form: FormData) -> Response:
        action = str(request.path_params["action"])
        name = str(form.get("queue", ""))
        back = _back(request, form)
        try:
            if action == "pause":
                await dash.bus.queues.pause(name)
            elif action == "resume":
                await dash.bus.queues.resume(name)
            else:
                return _refused(dash, request, f"unknown action {action!r}", status=404)
        except (ValueError, TypeError, RelaybusError) as exc:
            outcome = Outcome(f"queue {name}", False, f"{type(exc).__name__}: {exc}")
        else:
            log.info("dashboard: %s queue %s", action, name)
            outcome = Outcome(f"queue {name}", True, f"{action}d")
        return _show(dash, request, action, [outcome], back)

    return [
        Route("/jobs/{job_id:int}/{action}", guarded(one), methods=["POST"], name="job_action"),
        Route("/jobs/bulk", guarded(bulk), methods=["POST"], name="bulk"),
        Route("/queues/{action}", guarded(queue), methods=["POST"], name="queue_action"),
    ]


async def _form(request: Request) -> FormData | None:
    """The URL-encoded form of a POST (what the pages send; no multipart), at most 1 MB."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            return None
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None
    fields: list[tuple[str, str | UploadFile]] = list(pairs)
    return FormData(fields)


async def _apply(dash: Dashboard, action: str, job_id: int) -> Outcome:
    jobs = dash.bus.jobs
    calls: dict[str, Callable[[int], Awaitable[Job]]] = {
        "retry": jobs.retry,
        "cancel": jobs.cancel,
        "delete": jobs.delete,
    }
    target = f"job {job_id}"
    try:
        before = await jobs.get(job_id)
        after = await calls[action](job_id)
    except UniqueConflict as exc:
        text = (
            f"UniqueConflict: not retried — job {exc.holder_id} holds its unique key "
            "(finish or delete that job first)"
        )
        return Outcome(target, False, text, job_id)
    except (JobNotFound, JobRunning) as exc:
        return Outcome(target, False, f"{type(exc).__name__}: {exc}", job_id)
    except RelaybusError as exc:
        return Outcome(target, False, f"{type(exc).__name__}: {exc}", job_id)
    log.info("dashboard: %s job %d (%s)", action, job_id, after.state.value)
    if action == "delete":
        return Outcome(target, True, f"deleted (was {after.state.value})", None)
    if before is not None and before.state is after.state:
        return Outcome(target, False, f"unchanged: the job is {after.state.value}", job_id)
    return Outcome(target, True, f"{_PAST[action]}: now {after.state.value}", job_id)


async def _matching(
    dash: Dashboard, request: Request, action: str, form: FormData, back: str
) -> Response:
    """Every job matching the state/queue/handler filters, at most BULK_LIMIT."""
    filters: dict[str, Any] = {}
    for name in ("state", "queue", "handler"):
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            filters[name] = value
    if "state" not in filters and "queue" not in filters and "handler" not in filters:
        return _refused(
            dash, request, "a bulk action by filter needs a state, queue or handler", status=400
        )
    many = {
        "retry": dash.bus.jobs.retry_many,
        "cancel": dash.bus.jobs.cancel_many,
        "delete": dash.bus.jobs.delete_many,
    }[action]
    try:
        done = await many(**filters, limit=BULK_LIMIT)
    except (ValueError, TypeError, RelaybusError) as exc:
        return _refused(dash, request, f"{type(exc).__name__}: {exc}", status=400)
    shown = ", ".join(f"{k}={v}" for k, v in filters.items())
    log.info("dashboard: %s every job matching %s: %d", action, shown, done)
    text = f"{done:,} {_PAST[action]} (at most {BULK_LIMIT:,} per action)"
    return _show(dash, request, action, [Outcome(f"jobs matching {shown}", True, text)], back)


def _back(request: Request, form: FormData) -> str:
    """Where the outcome page links back to: a path of this site only."""
    target = form.get("next")
    if (
        isinstance(target, str)
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and all(ch.isprintable() for ch in target)
    ):
        return target
    return request.url_for("jobs").path


def _show(
    dash: Dashboard, request: Request, action: str, outcomes: list[Outcome], back: str
) -> Response:
    return dash.render(request, "outcome.html", action=action, outcomes=outcomes, back=back)


def _refused(dash: Dashboard, request: Request, reason: str, *, status: int = 403) -> Response:
    return dash.render(request, "refused.html", status=status, reason=reason)
