"""Whether a worker needs a process pool, and how large: decided from its handlers and queues."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .._errors import ConfigurationError
from .pool import ProcessPool

if TYPE_CHECKING:
    from .._handlers import Registry
    from .._runtime.worker import WorkerConfig

__all__ = ["check_pool_options", "pool_for", "pool_size"]


def check_pool_options(app: object, process_pool: object) -> None:
    if app is not None:
        module, sep, attr = app.partition(":") if isinstance(app, str) else ("", "", "")
        if not sep or not module or not attr:
            raise ConfigurationError(
                f"app= takes 'MODULE:BUS', e.g. 'myapp.tasks:bus', not {app!r}"
            )
    if process_pool is not None and (
        isinstance(process_pool, bool) or not isinstance(process_pool, int) or process_pool < 1
    ):
        raise ConfigurationError(f"process_pool must be an integer >= 1, not {process_pool!r}")


def pool_size(concurrency: int, requested: int | None) -> int:
    """``requested``, else the concurrency of the queues with process handlers, at most the
    number of CPUs (the work is CPU-bound: more children than cores only share them)."""
    if requested is not None:
        return requested
    return max(1, min(concurrency, os.cpu_count() or 1))


def pool_for(
    registry: Registry, config: WorkerConfig, logger: logging.Logger
) -> ProcessPool | None:
    """The pool a worker starts: None when it serves no queue of a process handler."""
    handlers = [
        spec for spec in registry.job_by_name.values()
        if spec.isolation == "process" and spec.queue in config.queues
    ]  # fmt: skip
    if not handlers:
        return None
    names = sorted(spec.name for spec in handlers)
    if config.app is None:
        raise ConfigurationError(
            f"handler {names[0]!r} runs in a child process (isolation='process'): tell the "
            "worker how to import this bus there, bus.worker(app='module:bus', ...) or "
            "`relaybus worker module:bus`"
        )
    concurrency = sum(config.queues[queue] for queue in {spec.queue for spec in handlers})
    return ProcessPool(config.app, pool_size(concurrency, config.process_pool), names, logger)
