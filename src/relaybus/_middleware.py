"""Middleware: the types of both chains and how a chain runs. A leaf module: the bus and the
runtime both import it, and it imports neither."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._context import Context, Dispatch

__all__ = ["DispatchMiddleware", "HandlerMiddleware", "run_dispatch_chain", "run_with_middleware"]

#: ``async def mw(ctx, call_next)``: wraps each handler run, inline or job.
HandlerMiddleware = Callable[[Context[Any], Callable[[], Awaitable[Any]]], Awaitable[Any]]
#: ``async def mw(d: rb.Dispatch, call_next)``: wraps ``dispatch`` itself.
DispatchMiddleware = Callable[[Dispatch, Callable[[], Awaitable[Any]]], Awaitable[Any]]


async def run_with_middleware(
    middleware: Sequence[HandlerMiddleware],
    handler: Callable[[Any, Context[Any]], Awaitable[Any]],
    event: Any,
    ctx: Context[Any],
) -> Any:
    """Run ``handler`` inside ``middleware``, outermost first."""

    async def innermost() -> Any:
        return await handler(event, ctx)

    call: Callable[[], Awaitable[Any]] = innermost
    for mw in reversed(middleware):
        call = _bind_handler(mw, ctx, call)
    return await call()


async def run_dispatch_chain(
    middleware: Sequence[DispatchMiddleware],
    envelope: Dispatch,
    core: Callable[[], Awaitable[Any]],
) -> Any:
    """Run ``core`` inside the dispatch ``middleware``, outermost first."""
    call = core
    for mw in reversed(middleware):
        call = _bind_dispatch(mw, envelope, call)
    return await call()


def _bind_handler(
    mw: HandlerMiddleware, ctx: Context[Any], call_next: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await mw(ctx, call_next)

    return call


def _bind_dispatch(
    mw: DispatchMiddleware, envelope: Dispatch, call_next: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await mw(envelope, call_next)

    return call
