"""The ledger of claims whose answer may have been lost.

A fetch that fails with its connection (or whose caller is cancelled) may still have committed
its claim: those jobs are ``running`` on a live node that never got them, and neither the node
nor the rescuer would ever finish them. The ledger knows every job the store handed to each node
and that was not finished since. Once a node is *suspect* (a fetch of it failed), the store
releases, before that node's next fetch or heartbeat, every job running on the node that the
ledger does not know: those are the orphans.

Release and fetch never overlap for one node: a release starts only when no fetch of the node
is in flight, and fetches of the node wait while a release runs. Otherwise a fetch could claim
jobs between the release's snapshot of the ledger and its statement, and they would be given
back while the node runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

from ..._driver import Completion

__all__ = ["ClaimLedger"]


class ClaimLedger:
    def __init__(self) -> None:
        self._handed: dict[int, tuple[str, int]] = {}  # job id -> (node, attempt)
        self._inflight: dict[str, int] = {}
        self._suspect: set[str] = set()
        self._releasing: dict[str, asyncio.Event] = {}

    def handed_to(self, node: str) -> list[int]:
        return [job_id for job_id, (owner, _) in self._handed.items() if owner == node]

    async def settle(self, node: str, release: Callable[[list[int]], Awaitable[int]]) -> None:
        """Before a fetch or heartbeat of ``node``: wait out a release in progress, and run one
        if the node is suspect and none of its fetches is in flight."""
        while (running := self._releasing.get(node)) is not None:
            await running.wait()
        if node not in self._suspect or self._inflight.get(node):
            return
        done = self._releasing[node] = asyncio.Event()
        try:
            await release(self.handed_to(node))
            self._suspect.discard(node)
        finally:
            del self._releasing[node]
            done.set()

    async def fetching(self, node: str) -> None:
        """A fetch of ``node`` starts (after any release of the node has ended)."""
        while (running := self._releasing.get(node)) is not None:
            await running.wait()
        self._inflight[node] = self._inflight.get(node, 0) + 1

    def fetched(self, node: str, failed: bool) -> None:
        self._inflight[node] -= 1
        if failed:
            self._suspect.add(node)

    def hand(self, node: str, claims: Iterable[tuple[int, int]]) -> None:
        for job_id, attempt in claims:
            self._handed[job_id] = (node, attempt)

    def finished(self, completions: Sequence[Completion]) -> None:
        handed = self._handed
        for c in completions:
            if handed.get(c.id, (None, None))[1] == c.attempt:
                del handed[c.id]

    def lost(self, node: str, runs: dict[int, int], lost: Iterable[int]) -> None:
        for job_id in lost:
            if self._handed.get(job_id) == (node, runs.get(job_id)):
                del self._handed[job_id]

    def forget(self, node: str) -> None:
        self._suspect.discard(node)
        for job_id in self.handed_to(node):
            del self._handed[job_id]
