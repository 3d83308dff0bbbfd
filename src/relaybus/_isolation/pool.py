"""The worker's pool of child processes for ``isolation="process"`` handlers.

Each child is a fresh interpreter (``python -m relaybus._isolation.child``: spawned, never a
fork of the running event loop) that imports the app the way ``relaybus worker APP:BUS`` does
and runs one attempt at a time. A run takes an idle child, sends the request (JSON), and waits
for the reply. If the run is cancelled — its timeout, a shutdown past grace, an admin cancel —
the child is killed (SIGKILL: a busy loop cannot ignore it) and a new one is started in the
background; a child that dies on its own is replaced the same way and the attempt fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterable

from .._errors import ConfigurationError
from .protocol import HEADER, Hello, Reply, Request, Setup, decode, encode, frame

__all__ = ["ChildExited", "ProcessPool"]

START_TIMEOUT = 60.0  # seconds for a child to import the app and say hello
RESPAWN_BACKOFF = (0.1, 5.0)  # first and longest wait between failed restarts


class ChildExited(Exception):
    """The child running an attempt exited before answering (a crash, ``os._exit``)."""


class _Child:
    __slots__ = ("proc",)

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send(self, body: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(frame(body))
        await stdin.drain()

    async def receive(self) -> bytes:
        stdout = self.proc.stdout
        assert stdout is not None
        (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
        return await stdout.readexactly(size)

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def close(self, wait: float) -> None:
        """End of stdin (the child returns), then SIGKILL if it is still there after ``wait``."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            async with asyncio.timeout(wait):
                await self.proc.wait()
        except TimeoutError:
            self.kill()
            await self.proc.wait()


class ProcessPool:
    """``size`` children importing ``app``; ``handlers`` must be process handlers there."""

    def __init__(
        self, app: str, size: int, handlers: Iterable[str], logger: logging.Logger
    ) -> None:
        self.app = app
        self.size = size
        self.handlers = frozenset(handlers)
        self.logger = logger
        self.replaced = 0  # children killed or lost and replaced (a test signal)
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children: set[_Child] = set()
        self._respawns: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def idle(self) -> int:
        return self._idle.qsize()

    @property
    def pids(self) -> list[int]:
        return [child.proc.pid for child in self._children]

    async def start(self) -> None:
        """Start every child; ``ConfigurationError`` (after stopping those that started) when
        one cannot import the app or lacks a handler."""
        results = await asyncio.gather(
            *(self._spawn() for _ in range(self.size)), return_exceptions=True
        )
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        for result in results:
            if isinstance(result, _Child):
                self._idle.put_nowait(result)
        if failure is not None:
            await self.stop()
            raise failure
        self.logger.info(
            "started %d child processes for process handlers (app %s)", self.size, self.app
        )

    async def _spawn(self) -> _Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relaybus._isolation.child",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        child = _Child(proc)
        self._children.add(child)
        try:
            await child.send(encode(Setup(self.app, list(sys.path), os.getpid())))
            async with asyncio.timeout(START_TIMEOUT):
                hello: Hello = decode(await child.receive(), Hello)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            await self._forget(child)
            what = "timed out" if isinstance(exc, TimeoutError) else f"exited ({proc.returncode})"
            raise ConfigurationError(
                f"a child process for process handlers {what} before importing {self.app!r} "
                "(see its output above)"
            ) from None
        except BaseException:
            await self._forget(child)
            raise
        if hello.error is not None:
            await self._forget(child)
            raise ConfigurationError(
                f"a child process could not import the app {self.app!r}: {hello.error}"
            )
        missing = sorted(self.handlers - set(hello.handlers))
        if missing:
            await self._forget(child)
            raise ConfigurationError(
                f"the app {self.app!r}, imported in a child process, has no process handler "
                f"{', '.join(map(repr, missing))}: app= must name the MODULE:BUS that registers "
                "them at import"
            )
        return child

    async def _forget(self, child: _Child) -> None:
        self._children.discard(child)
        child.kill()
        await child.proc.wait()

    async def run(self, request: Request) -> Reply:
        """One attempt in an idle child. Cancelled: the child is killed and replaced."""
        child = await self._idle.get()
        try:
            await child.send(encode(request))
            body = await child.receive()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await child.proc.wait()
            self._replace(child, f"exited with code {code} while running it")
            raise ChildExited(
                f"the handler's child process exited with code {code} before answering"
            ) from exc
        except BaseException:  # cancelled (timeout, shutdown, lost) or worse: never reuse it
            self._replace(child, "killed: its run was stopped")
            raise
        self._idle.put_nowait(child)
        return decode(body, Reply)  # type: ignore[no-any-return]

    def _replace(self, child: _Child, why: str) -> None:
        child.kill()
        self._children.discard(child)
        self.replaced += 1
        if self._closing:
            return
        self.logger.warning(
            "child process %d of handler pool %s: %s; starting a new one",
            child.proc.pid,
            self.app,
            why,
        )
        task = asyncio.get_running_loop().create_task(self._respawn(child))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self, old: _Child) -> None:
        await old.proc.wait()  # reap it
        delay, cap = RESPAWN_BACKOFF
        while not self._closing:
            try:
                child = await self._spawn()
            except Exception:
                self.logger.exception("restarting a child process failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(cap, delay * 2)
                continue
            if self._closing:
                await child.close(1.0)
                return
            self._idle.put_nowait(child)
            return

    async def stop(self) -> None:
        """Stop every child (end of input, then SIGKILL after a second) and the restarts."""
        self._closing = True
        for task in list(self._respawns):
            task.cancel()
        await asyncio.gather(*self._respawns, return_exceptions=True)
        children = list(self._children)
        self._children.clear()
        await asyncio.gather(*(child.close(1.0) for child in children), return_exceptions=True)
