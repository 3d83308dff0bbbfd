"""A TCP proxy that can freeze a client's connection the way SIGSTOP or a VM pause does: the
bytes the client already sent reach the server, then nothing more moves either way, and the
sockets stay open (the server sees a live, silent client)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class FreezingProxy:
    """Forwards ``127.0.0.1:<port>`` to ``host:port``. After :meth:`freeze_on` ``marker``, the
    first client packet that contains ``marker`` is forwarded and its connection then freezes;
    :meth:`close` releases every connection."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._marker: bytes | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.frozen = asyncio.Event()  # set once a connection froze

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def freeze_on(self, marker: bytes) -> None:
        self._marker = marker

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]
        halt = asyncio.Event()
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer, halt, watch=True)),
            asyncio.create_task(self._pipe(up_reader, writer, halt, watch=False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        halt: asyncio.Event,
        *,
        watch: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while not halt.is_set():
                data = await reader.read(65536)
                if not data or halt.is_set():
                    break
                writer.write(data)
                await writer.drain()
                if watch and self._marker is not None and self._marker in data:
                    self._marker = None
                    halt.set()  # this connection moves nothing more, in either direction
                    self.frozen.set()
            if halt.is_set():  # frozen: hold the sockets open until the proxy closes
                await asyncio.Event().wait()
            writer.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def freezing_proxy(host: str, port: int) -> AsyncIterator[FreezingProxy]:
    proxy = FreezingProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
