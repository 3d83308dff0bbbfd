"""``relaybus worker`` (one node, or N supervised node processes) and ``relaybus demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .._bus import Bus
from .._demo import run as _demo_run
from .._supervisor import Supervisor
from .common import ENV_APP, CLIError
from .target import Target, load_app, opened

__all__ = ["demo_command", "worker_command"]


def _queues(text: str) -> dict[str, int]:
    queues: dict[str, int] = {}
    for item in text.split(","):
        name, sep, count = item.strip().partition("=")
        if not name:
            continue
        try:
            queues[name] = int(count) if sep else 10
        except ValueError:
            raise CLIError(f"--queues takes NAME=CONCURRENCY,... (got {item.strip()!r})") from None
    if not queues:
        raise CLIError("--queues names no queue")
    return queues


def _worker_options(args: argparse.Namespace) -> dict[str, Any]:
    ttl = args.node_ttl
    heartbeat = args.heartbeat_interval or min(5.0, ttl / 3)
    return {
        "queues": _queues(args.queues),
        "node": args.node,
        "grace": args.grace,
        "poll_interval": args.poll_interval,
        "node_ttl": ttl,
        "heartbeat_interval": heartbeat,
        "rescue_interval": args.rescue_interval or min(15.0, ttl),
        "handle_signals": True,
    }


def _app_spec(args: argparse.Namespace) -> str:
    spec: str | None = args.app_pos or args.app or os.environ.get(ENV_APP) or None
    if not spec:
        raise CLIError(f"worker needs the app: relaybus worker MODULE:BUS (or set {ENV_APP})")
    return spec


async def _summarize(worker: Any, every: float, logger: logging.Logger) -> None:
    node = worker.node
    done, failed, since = node.completed, node.failed, time.monotonic()
    while True:
        await asyncio.sleep(every)
        now = time.monotonic()
        d, f = node.completed - done, node.failed - failed
        rate = d / (now - since) if now > since else 0.0
        logger.info(
            "worker %s: %d jobs done, %d failed in the last %.0fs (%.1f/s); %d running",
            node.id, d, f, now - since, rate, len(node.runs),
        )
        done, failed, since = node.completed, node.failed, now


async def _watch_parent(pid: int, worker: Any, logger: logging.Logger) -> None:
    while os.getppid() == pid:  # noqa: ASYNC110 (nothing to wait on: poll the parent pid)
        await asyncio.sleep(1.0)
    logger.warning("the supervising process %d is gone: stopping", pid)
    await worker.stop()


def _serve_metrics(
    bus: Bus[Any], addr: str, port: int, logger: logging.Logger
) -> Callable[[], None]:
    """``--metrics-port``: instrument ``bus`` with relaybus.prometheus and serve /metrics; the
    returned function stops the server."""
    try:
        from ..prometheus import Metrics, serve  # the prometheus extra
    except ImportError as exc:
        raise CLIError(
            f"--metrics-port needs the prometheus extra: pip install 'relaybus[prometheus]' ({exc})"
        ) from None
    try:
        Metrics().instrument(bus)
    except ValueError:  # the app registered the relaybus metrics itself: serve them
        logger.info("relaybus metrics are already registered by the app; serving them")
    try:
        server = serve(port, addr)
    except OSError as exc:
        raise CLIError(f"--metrics-port {port}: cannot listen on {addr}:{port}: {exc}") from None
    logger.info("serving metrics at http://%s:%d/metrics", addr, port)
    stop: Callable[[], None] = server.shutdown
    return stop


async def _run_worker(args: argparse.Namespace, bus: Bus[Any], options: dict[str, Any]) -> int:
    logger = logging.getLogger("relaybus.worker")
    target = Target(bus, _app_spec(args), None, "relaybus_", None)
    stop_metrics = None
    if args.metrics_port is not None:
        stop_metrics = _serve_metrics(bus, args.metrics_addr, args.metrics_port, logger)
    try:
        return await _run_opened(args, bus, options, target, logger)
    finally:
        if stop_metrics is not None:
            stop_metrics()


async def _run_opened(
    args: argparse.Namespace,
    bus: Bus[Any],
    options: dict[str, Any],
    target: Target,
    logger: logging.Logger,
) -> int:
    async with opened(target):
        worker = bus.worker(**options)
        helpers = []
        if args.summary_interval > 0:
            helpers.append(asyncio.create_task(_summarize(worker, args.summary_interval, logger)))
        if args.supervisor:
            helpers.append(asyncio.create_task(_watch_parent(args.supervisor, worker, logger)))
        try:
            await worker.run()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
    return 0


def _child_argv(args: argparse.Namespace, spec: str, index: int) -> list[str]:
    label = args.node or "worker"
    argv = [
        sys.executable, "-m", "relaybus", "worker", spec, "--processes", "1",
        "--queues", args.queues, "--node", f"{label}-{index}", "--grace", str(args.grace),
        "--poll-interval", str(args.poll_interval), "--node-ttl", str(args.node_ttl),
        "--log-format", args.log_format, "--log-level", args.log_level,
        "--summary-interval", str(args.summary_interval), "--supervisor", str(os.getpid()),
    ]
    if args.heartbeat_interval:
        argv += ["--heartbeat-interval", str(args.heartbeat_interval)]
    if args.rescue_interval:
        argv += ["--rescue-interval", str(args.rescue_interval)]
    if args.metrics_port is not None:  # child i serves port + i - 1
        argv += ["--metrics-port", str(args.metrics_port + index - 1)]
        argv += ["--metrics-addr", args.metrics_addr]
    return argv


def worker_command(args: argparse.Namespace) -> int:
    spec = _app_spec(args)
    bus = load_app(spec)
    options = {**_worker_options(args), "app": spec}  # process handlers' children import it
    bus.worker(**options)  # check every option here, before any process starts
    if args.processes < 1:
        raise CLIError("--processes must be >= 1")
    if args.metrics_port is not None and not 0 < args.metrics_port <= 65536 - args.processes:
        raise CLIError(
            f"--metrics-port must be in 1..{65536 - args.processes} "
            f"(with --processes {args.processes}, child i serves port + i - 1)"
        )
    if args.processes == 1:
        return asyncio.run(_run_worker(args, bus, options))
    argvs = [_child_argv(args, spec, i + 1) for i in range(args.processes)]
    return Supervisor(argvs, args.grace, logging.getLogger("relaybus.supervisor")).run()


def demo_command(args: argparse.Namespace) -> int:
    _demo_run()
    return 0
