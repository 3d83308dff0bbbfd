"""What one worker process (a node) knows about itself: identity and the jobs it runs."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import Literal

from .._validate import check_name

__all__ = ["NodeState", "Run", "node_id"]

CancelReason = Literal["shutdown", "lost"]


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
    task: asyncio.Task[None]
    isolated: bool
    cancel_reason: CancelReason | None = None


@dataclass(slots=True)
class NodeState:
    id: str
    isolate_after: int
    runs: dict[int, Run] = field(default_factory=dict)
    fetch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def isolated(self) -> bool:
        """A poison suspect runs: fetch nothing else until it ends."""
        return any(run.isolated for run in self.runs.values()) if self.runs else False

    def running_pairs(self) -> list[tuple[int, int]]:
        return [(run.job_id, run.attempt) for run in self.runs.values()]

    def cancel(self, job_id: int, reason: CancelReason) -> bool:
        run = self.runs.get(job_id)
        if run is None or run.task.done():
            return False
        run.cancel_reason = reason
        run.task.cancel()
        return True
