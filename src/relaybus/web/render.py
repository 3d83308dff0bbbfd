"""What the templates show, computed in Python: pretty JSON, capped counts, times, the
throughput chart (an inline SVG built from escaped numbers only), a job's timeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from .._types import Job, JobState, Throughput

__all__ = [
    "STATES",
    "Event",
    "chart_svg",
    "count_text",
    "pretty",
    "timeline",
    "when",
]

#: The states in the order the pages list them.
STATES: tuple[str, ...] = tuple(state.value for state in JobState)

_COLORS = {"completed": "#2e7d32", "discarded": "#c62828", "cancelled": "#9e9e9e"}


def pretty(value: Any) -> str:
    """A payload or meta value as indented JSON text (the template escapes it)."""
    try:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def count_text(count: int, capped: bool) -> str:
    """``1,234``, or ``10,000+`` for a count that reached its cap."""
    return f"{count:,}+" if capped else f"{count:,}"


def when(at: datetime | None) -> str:
    """A timestamp as the pages show it (UTC, to the millisecond)."""
    if at is None:
        return ""
    zone = " UTC" if at.utcoffset() == timedelta(0) else ""
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + zone


def chart_svg(throughput: Throughput) -> Markup:
    """Finished jobs per bucket as stacked bars (completed, cancelled, discarded): an SVG made
    from numbers and fixed strings only, so it is safe to insert unescaped."""
    width, height, pad = 600, 120, 18
    buckets = throughput.buckets
    n = max(1, len(buckets))
    top = max([sum(b.values()) for b in buckets] + [1])
    bar = (width - 2 * pad) / n
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 2 * pad}" role="img" '
        f'aria-label="jobs finished per {int(throughput.window / n / 60)} minutes" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{pad}" y1="{height + pad}" x2="{width - pad}" y2="{height + pad}" '
        'stroke="#888"/>',
        f'<text x="{pad}" y="{pad - 5}" font-size="11">{top:,}</text>',
    ]
    for i, bucket in enumerate(buckets):
        y = float(height + pad)
        for state in ("completed", "cancelled", "discarded"):
            count = int(bucket.get(state, 0))
            if not count:
                continue
            h = height * count / top
            y -= h
            parts.append(
                f'<rect x="{pad + i * bar + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" '
                f'height="{h:.1f}" fill="{_COLORS[state]}"><title>{state}: {count:,}'
                "</title></rect>"
            )
    minutes = int(throughput.window // 60)
    parts.append(
        f'<text x="{pad}" y="{height + 2 * pad - 3}" font-size="11">{minutes} min ago</text>'
        f'<text x="{width - pad}" y="{height + 2 * pad - 3}" font-size="11" '
        'text-anchor="end">now</text></svg>'
    )
    return Markup("".join(parts))  # numbers and fixed text only


@dataclass(frozen=True)
class Event:
    """One line of a job's timeline."""

    at: datetime | None
    what: str
    detail: str = ""
    traceback: str | None = None
    failed: bool = False


def timeline(job: Job) -> list[Event]:
    """A job's life in time order: inserted, scheduled, every recorded error (with its
    traceback), the last attempt and its node, the end."""
    events = [Event(job.inserted_at, "inserted", f"into queue {job.queue}")]
    if job.scheduled_at != job.inserted_at:
        events.append(Event(job.scheduled_at, "scheduled", "due at"))
    for error in job.errors:
        events.append(
            Event(
                error.at,
                f"attempt {error.attempt}: {error.kind}",
                error.message,
                error.traceback,
                failed=True,
            )
        )
    if job.attempted_at is not None:
        node = f" on node {job.attempted_by}" if job.attempted_by else ""
        events.append(Event(job.attempted_at, f"attempt {job.attempt} started", node.strip()))
    if job.finalized_at is not None:
        events.append(Event(job.finalized_at, job.state.value))
    return sorted(events, key=lambda e: (e.at is None, e.at or job.inserted_at))
