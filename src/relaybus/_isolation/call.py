"""The call of an ``isolation="process"`` handler: routed to the running worker's pool.

The pool of the worker running the job is found through a context variable the worker sets
for its own tasks (several workers in one process each have their own pool). Outside a
worker with a pool — ``rb.testing.drain``, say — the handler runs in a daemon thread like
any plain ``def`` handler, with no hard timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import msgspec

from .._errors import Cancel, Discard, Snooze
from .pool import ProcessPool
from .protocol import ChildError, Request

__all__ = ["CURRENT_POOL", "process_handler"]

#: The pool of the worker whose task this is (set by ``Worker.run`` for its services).
CURRENT_POOL: ContextVar[ProcessPool | None] = ContextVar("relaybus_process_pool", default=None)


def process_handler(
    name: str,
    encode: Callable[[Any], bytes],
    in_thread: Callable[[Any, Any], Awaitable[Any]],
) -> Callable[[Any, Any], Awaitable[Any]]:
    """The async call of process handler ``name``: its event as JSON to a child, the child's
    reply mapped back (a handler outcome raised again, an error as :class:`ChildError`)."""

    async def call(event: Any, ctx: Any) -> Any:
        pool = CURRENT_POOL.get()
        job = ctx.job
        if pool is None or job is None:
            return await in_thread(event, ctx)
        request = Request(
            name, msgspec.Raw(encode(event)), ctx.meta, job.id, job.attempt,
            job.max_attempts, job.queue, job.priority, job.inserted_at, job.scheduled_at,
        )  # fmt: skip
        reply = await pool.run(request)
        outcome = reply.outcome
        if outcome == "completed":
            return None
        if outcome == "snooze":
            raise Snooze(reply.seconds)
        if outcome == "cancel":
            raise Cancel(reply.reason)
        if outcome == "discard":
            raise Discard(reply.reason)
        raise ChildError(reply.kind, reply.message, reply.traceback)

    return call
