"""Nodes and maintenance, once for every SQL dialect: heartbeat, leadership, stage, rescue,
prune. Decisions come from :mod:`relaybus._jobrules`; the queries apply them."""

from __future__ import annotations

from typing import Any

from ..._driver import (
    ElectParams,
    HeartbeatParams,
    PruneParams,
    Rescued,
    RescueParams,
    StageParams,
)
from ..._jobrules import finish_keep_mask, rescue_end, unique_conflict_error
from ..._types import TERMINAL_STATES, JobState
from .base import SQLBase
from .executor import Tx
from .lifecycle import KeepOpen, raise_lifecycle, raised_ids, raising

__all__ = ["MaintenanceOps"]

_RUNNING = JobState.RUNNING.value


class MaintenanceOps(SQLBase):
    async def heartbeat(self, params: HeartbeatParams) -> list[int]:
        now = self._now_arg()

        async def work(tx: Tx) -> list[int]:
            args = {"node": params.node, "now": now, "ttl": float(params.ttl)}
            await tx.execute("heartbeat", args)
            if not params.running:
                return []
            runs = self.dialect.run_pairs(params.running)
            rows = await tx.fetch("lost_runs", {**runs, "node": params.node, "running": _RUNNING})
            return [row[0] for row in rows]

        return await self._write(work)

    async def elect(self, params: ElectParams) -> bool:
        args = {"node": params.node, "now": self._now_arg(), "ttl": float(params.ttl)}

        async def work(tx: Tx) -> bool:
            return await self.dialect.elect(tx, args)

        if not self.dialect.elect_in_transaction:
            return await self._run(work)
        return await self._write(work)

    async def resign(self, node: str) -> None:
        if not self._open:  # best effort: a closed store leads nothing
            return
        await self._write(_execute("resign", {"node": node}))

    async def release_node(self, node: str) -> None:
        async def work(tx: Tx) -> None:
            await tx.execute("delete_node", {"node": node})
            await tx.execute("resign", {"node": node})

        await self._write(work, atomic=True)

    async def stage(self, params: StageParams) -> list[str]:
        """Due jobs become available. A job that does not hold its unique key while waiting
        (retryable outside its unique states) is *contested*: it becomes available only if no
        other job holds the key, else it is discarded naming the holder."""
        now = self._now_arg()
        args = {"now": now, "limit": params.limit, "channel": self._channel()}

        async def work(tx: Tx) -> list[str]:
            if self.lifecycle is not None:
                tx = KeepOpen(tx)
            queues = set(await self.dialect.stage_due(tx, args))
            for row in await tx.fetch("due_contested", args):
                if await self._stage_contested(tx, row):
                    queues.add(row[1])
            return sorted(queues)

        # Lifecycle events of discarded conflicts commit with the discard: one transaction.
        return await self._rerun(work, atomic=self.lifecycle is not None)

    async def _stage_contested(self, tx: Tx, row: Any) -> bool:
        job_id, _queue, attempt, unique_states, state, db_now = row
        holder = await tx.fetchrow("key_holder", {"id": job_id})
        channel = self._channel()
        if holder is None:  # a unique violation here: a holder committed meanwhile (rerun)
            args = {"id": job_id, "expect": state, "now": db_now, "channel": channel}
            return await tx.execute("make_available", args) > 0
        now = self.dialect.decode_time(db_now)
        error = unique_conflict_error(now, attempt, holder[0])
        discarded = JobState.DISCARDED
        await tx.execute(
            "set_state",
            {
                "id": job_id,
                "expect": state,
                "state": discarded.value,
                "now": db_now,
                "finalize": True,
                "unique_states": finish_keep_mask(unique_states, discarded, other_holder=True),
                "error": self._error_text(error),
            },
        )
        await raise_lifecycle(self, tx, (job_id,))
        return False

    async def rescue(self, params: RescueParams) -> list[Rescued]:
        args = {"now": self._now_arg(), "grace": float(params.grace), "limit": params.limit}

        async def work(tx: Tx) -> list[Rescued]:
            rows = await tx.fetch("rescue_candidates", args)
            if not rows:
                return []
            ends = [
                rescue_end(
                    job_id=job_id,
                    attempt=attempt,
                    max_attempts=max_attempts,
                    rescues=rescues,
                    max_rescues=params.max_rescues,
                    node=node,
                    node_lost=bool(node_lost),
                    now=self.dialect.decode_time(db_now),
                )
                for job_id, attempt, max_attempts, rescues, node, node_lost, db_now, *_ in rows
            ]
            events = raising(self, ends)
            if events:  # the events commit with the rescue: no statement may carry the COMMIT
                tx = KeepOpen(tx)
            ended = await self.dialect.end_runs(tx, ends, rows[0][6])
            if events:
                await raise_lifecycle(self, tx, raised_ids(ends, ended))
            applied = set(ended)
            return [
                Rescued(row[0], row[7], row[8], row[1], end.state)
                for row, end in zip(rows, ends, strict=True)
                if row[0] in applied
            ]

        return await self._write(work, atomic=True)

    async def prune(self, params: PruneParams) -> int:
        now = self._now_arg()

        async def work(tx: Tx) -> int:
            pruned = 0
            for state, keep in params.retention.items():
                if state not in TERMINAL_STATES or pruned >= params.limit:
                    continue
                args = {
                    "state": JobState(state).value,
                    "now": now,
                    "keep": float(keep),
                    "limit": params.limit - pruned,
                }
                pruned += await self.dialect.prune_state(tx, args)
            return pruned

        return await self._write(work)


def _execute(name: str, args: dict[str, Any]) -> Any:
    async def work(tx: Tx) -> None:
        await tx.execute(name, args)

    return work
