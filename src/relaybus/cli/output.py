"""How the command prints: tables for people, JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._types import Job, JobState

__all__ = ["dumps", "job_data", "jobs_table", "show", "stats_table", "table"]


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cut(text: str, limit: int) -> str:
    text = text.splitlines()[0] if text else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def job_data(job: Job) -> dict[str, Any]:
    """A job as plain JSON data (what ``--json`` prints)."""
    return {
        "id": job.id,
        "handler": job.handler,
        "event": job.event,
        "queue": job.queue,
        "priority": job.priority,
        "state": job.state.value,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "payload": job.payload,
        "meta": job.meta,
        "errors": [
            {
                "at": e.at.isoformat(),
                "attempt": e.attempt,
                "kind": e.kind,
                "message": e.message,
                "traceback": e.traceback,
            }
            for e in job.errors
        ],
        "inserted_at": job.inserted_at.isoformat(),
        "scheduled_at": job.scheduled_at.isoformat(),
        "attempted_at": job.attempted_at.isoformat() if job.attempted_at else None,
        "attempted_by": job.attempted_by,
        "finalized_at": job.finalized_at.isoformat() if job.finalized_at else None,
    }


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=repr)


def jobs_table(jobs: Sequence[Job]) -> str:
    rows = [
        [
            str(j.id), j.handler, j.queue, j.state.value, f"{j.attempt}/{j.max_attempts}",
            str(j.priority), _when(j.scheduled_at),
            _cut(f"{j.errors[-1].kind}: {j.errors[-1].message}", 60) if j.errors else "",
        ]
        for j in jobs
    ]
    headers = ["id", "handler", "queue", "state", "attempt", "prio", "scheduled", "last error"]
    return table(headers, rows)


def show(job: Job) -> str:
    lines = [
        f"job {job.id}: {job.handler} ({job.event}) on queue {job.queue!r}",
        f"  state         {job.state.value}",
        f"  attempt       {job.attempt} of {job.max_attempts}",
        f"  priority      {job.priority}",
        f"  inserted      {_when(job.inserted_at)}",
        f"  scheduled     {_when(job.scheduled_at)}",
        f"  attempted     {_when(job.attempted_at)}"
        + (f" by {job.attempted_by}" if job.attempted_by else ""),
        f"  finalized     {_when(job.finalized_at)}",
        "  payload",
        _indent(dumps(job.payload), 4),
        "  meta",
        _indent(dumps(job.meta), 4),
        f"  errors        {len(job.errors) or 'none'}",
    ]
    for n, error in enumerate(job.errors, 1):
        lines.append(f"    {n}. {_when(error.at)}  attempt {error.attempt}  {error.kind}")
        lines.append(_indent(error.message, 7))
        if error.traceback:
            lines.append(_indent(error.traceback.rstrip(), 7))
    return "\n".join(lines)


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())


def stats_table(stats: dict[str, dict[str, int]], paused: frozenset[str] = frozenset()) -> str:
    """Counts by queue and state; a paused queue is marked ``(paused)``."""
    states = [s.value for s in JobState]
    rows = []
    totals = dict.fromkeys(states, 0)
    for queue in sorted(set(stats) | paused):
        counts = stats.get(queue, {})
        name = f"{queue} (paused)" if queue in paused else queue
        rows.append([name, *(str(counts.get(s, 0)) for s in states)])
        for s in states:
            totals[s] += counts.get(s, 0)
    if len(rows) != 1:
        rows.append(["(all)", *(str(totals[s]) for s in states)])
    return table(["queue", *states], rows)
