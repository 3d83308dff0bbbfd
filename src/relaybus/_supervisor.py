"""``relaybus worker --processes N``: one parent supervising N worker processes (nodes).

Each child is a fresh interpreter (``python -m relaybus worker APP --processes 1 ...``), never a
fork of a running event loop, in a session of its own so that a Ctrl-C in the terminal reaches
only the parent, which then stops the children itself:

- the first SIGTERM/SIGINT sends SIGTERM to every child (each stops gracefully within its
  grace period) and restarts nothing more; the parent exits 0 once all of them exited 0;
- a second signal is passed on as a second SIGTERM: the children cancel their running jobs at
  once (the jobs go back to ``available``, uncharged);
- a child that still runs ``grace + KILL_AFTER`` seconds after the first signal is killed;
- a child that dies while no stop was asked for is logged and restarted, after a backoff that
  doubles (from ``FIRST_RESTART`` up to ``MAX_RESTART`` seconds) while children keep dying
  quickly; a child that ran ``HEALTHY_AFTER`` seconds resets it.

Each child watches the parent (``--supervisor PID``) and stops gracefully if it goes away.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from dataclasses import dataclass, field
from types import FrameType

__all__ = ["Supervisor"]

FIRST_RESTART = 0.5
MAX_RESTART = 30.0
HEALTHY_AFTER = 60.0
KILL_AFTER = 10.0
TICK = 0.1


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Child:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # consecutive quick deaths
    restart_at: float | None = None
    exit_code: int | None = field(default=None)


class Supervisor:
    def __init__(self, argvs: list[list[str]], grace: float, logger: logging.Logger) -> None:
        self.children = [Child(i + 1, argv) for i, argv in enumerate(argvs)]
        self.grace = grace
        self.logger = logger
        self.signals = 0
        self._stop_deadline: float | None = None

    # -- signals
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            self.logger.info("%s received: stopping %d worker processes gracefully", name,
                             len(self.children))
            self._stop_deadline = time.monotonic() + self.grace + KILL_AFTER
        else:
            self.logger.warning("second signal: the worker processes cancel their jobs now")
        self._signal_children(signal.SIGTERM)

    def _signal_children(self, sig: int) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)

    # -- children
    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, start_new_session=True)
        child.started = time.monotonic()
        child.restart_at = None
        self.logger.info("worker process %d started (pid %d)", child.index, child.proc.pid)

    def _reap(self, child: Child, now: float) -> None:
        assert child.proc is not None
        code = child.proc.poll()
        if code is None:
            return
        pid = child.proc.pid
        child.proc = None
        if self.signals:
            child.exit_code = code
            level = logging.INFO if code == 0 else logging.WARNING
            self.logger.log(level, "worker process %d (pid %d) %s", child.index, pid,
                            describe_exit(code))
            return
        if now - child.started >= HEALTHY_AFTER:
            child.failures = 0
        child.failures += 1
        delay = min(MAX_RESTART, FIRST_RESTART * 2 ** (child.failures - 1))
        child.restart_at = now + delay
        self.logger.error(
            "worker process %d (pid %d) %s; restarting it in %.1fs",
            child.index, pid, describe_exit(code), delay,
        )

    def run(self) -> int:
        """Run the children until a signal stopped them all; the exit code (0: all stopped
        gracefully)."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for child in self.children:
                self._start(child)
            while True:
                now = time.monotonic()
                for child in self.children:
                    if child.proc is not None:
                        self._reap(child, now)
                    elif not self.signals and child.restart_at is not None \
                            and now >= child.restart_at:
                        self._start(child)
                if self.signals and all(c.proc is None for c in self.children):
                    break
                if self._stop_deadline is not None and now >= self._stop_deadline:
                    self.logger.error(
                        "worker processes still running %.0fs after the stop: killing them",
                        self.grace + KILL_AFTER,
                    )
                    self._signal_children(signal.SIGKILL)
                    self._stop_deadline = None
                time.sleep(TICK)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        failed = [c for c in self.children if c.exit_code not in (0, None)]
        self.logger.info("all worker processes stopped")
        return 1 if failed else 0
