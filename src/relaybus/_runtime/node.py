"""What one worker process (a node) knows about itself: identity and the jobs it runs."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .._driver import Claimed
from .._validate import check_name
from .service import Env, Periodic

__all__ = ["NodeState", "Run", "Waiting", "Watchdog", "node_id"]

CancelReason = Literal["shutdown", "lost", "timeout"]  # lost: admin cancel, or rescued elsewhere


def node_id(label: str | None) -> str:
    """label (default: host name) + pid + random suffix: a restarted process is a new node."""
    base = label if label is not None else socket.gethostname().split(".")[0] or "node"
    base = "".join(ch if ch.isalnum() or ch in "_.:-" else "-" for ch in base)[:80] or "node"
    if label is not None:
        check_name("node", label)
    return f"{base}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class Run:
    """One job running on this node."""

    job_id: int
    attempt: int
    task: asyncio.Task[None]  # the slot running it
    deadline: float | None  # loop time after which the watchdog stops it
    cancel_reason: CancelReason | None = None
    handler: str = ""  # for log lines about the run
    queue: str = ""

    def log_fields(self) -> dict[str, object]:
        """The ``extra`` fields of a log record about this run."""
        return {
            "job_id": self.job_id, "handler": self.handler, "queue": self.queue,
            "attempt": self.attempt,
        }


@dataclass(slots=True)
class Waiting:
    """A job claimed for this node that has not started yet (it waits in a producer's buffer
    for a slot). Heartbeats report it like a running one."""

    job: Claimed
    deadline: float | None  # loop time after which the watchdog hands it back unstarted


@dataclass(slots=True)
class NodeState:
    id: str
    isolate_after: int
    runs: dict[int, Run] = field(default_factory=dict)
    waiting: dict[int, Waiting] = field(default_factory=dict)  # claimed, not started yet
    fetch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    isolated_job: int | None = None  # a poison suspect runs alone: fetch nothing meanwhile
    completed: int = 0  # runs that completed on this node (the worker's summary line)
    failed: int = 0  # runs that failed (retried or discarded, timeouts included)

    @property
    def isolated(self) -> bool:
        return self.isolated_job is not None

    @property
    def busy(self) -> bool:
        """Whether any job is running here or waiting to start."""
        return bool(self.runs) or bool(self.waiting)

    def running_pairs(self) -> list[tuple[int, int]]:
        """(id, attempt) of every job this node holds: running, or claimed and waiting."""
        pairs = [(run.job_id, run.attempt) for run in self.runs.values()]
        pairs.extend((w.job.id, w.job.attempt) for w in self.waiting.values())
        return pairs

    def cancel(self, job_id: int, reason: CancelReason) -> bool:
        """Stop a running job for ``reason``; a job still waiting to start is dropped (only
        ``lost`` reaches one: the store moved on, so nothing is written for it)."""
        waiting = self.waiting.pop(job_id, None)
        if waiting is not None:
            if self.isolated_job == job_id:  # the suspect never started: nothing runs alone
                self.isolated_job = None
            return True
        run = self.runs.get(job_id)
        if run is None or run.task.done():
            return False
        run.cancel_reason = reason
        run.task.cancel()
        return True


class Watchdog(Periodic):
    """Stops runs past their deadline, and hands back (``give_back``) jobs that waited in a
    buffer past theirs without starting. One coarse periodic check replaces a timer per job:
    it looks every ``resolution`` seconds (a tenth of the shortest timeout, 5 ms to 1 s)."""

    name = "watchdog"

    def __init__(
        self,
        node: NodeState,
        resolution: float,
        env: Env,
        give_back: Callable[[Claimed], None],
    ) -> None:
        self.resolution = min(1.0, max(0.005, resolution))
        super().__init__(self.resolution, env)
        self._node = node
        self._give_back = give_back

    async def run_once(self) -> int:
        now = asyncio.get_running_loop().time()
        node = self._node
        expired = [
            run.job_id
            for run in node.runs.values()
            if run.deadline is not None and run.deadline <= now and run.cancel_reason is None
        ]
        for job_id in expired:
            node.cancel(job_id, "timeout")
        stale = [
            w.job for w in node.waiting.values() if w.deadline is not None and w.deadline <= now
        ]
        for job in stale:
            del node.waiting[job.id]
            self._give_back(job)
        return len(expired) + len(stale)
