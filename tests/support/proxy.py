"""A small TCP proxy on 127.0.0.1 that tests control: count, stall, drop, reset, refuse.

It runs its own event loop in a thread so that sync and async code under test can use it.
The faults it plays are the ones an engine behind a network shows:

- ``stalled``: bytes are held, like an engine slower than any deadline;
- ``delay``: every chunk waits that long, like added engine latency;
- ``mode = "close"`` / ``"reset"``: each new connection is accepted and closed (FIN) or
  reset (RST) at once, like a balancer with no healthy backend;
- ``mode = "refuse"``: nothing listens on the port any more (connection refused);
- :meth:`drop_connections`: established connections are closed under their clients, as when
  a frontend restarts or a balancer drains (combine with a mode for "and every new one").
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from typing import Literal, Self

from tests.support.services import free_port

Mode = Literal["forward", "close", "reset", "refuse"]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream port.

    Attributes:
        connections: How many client connections were accepted so far.
        stalled: While true, bytes are held (neither side hears from the other), like an
            engine slower than any deadline.
        delay: Seconds every chunk of bytes waits before it is passed on.
        response_delay: Seconds every chunk from the upstream waits (requests pass at once).
        sent_upstream: ``time.monotonic()`` of every chunk passed on to the upstream.
        mode: ``forward`` (the default), ``close``, ``reset`` or ``refuse``; see
            :meth:`set_mode`.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.connections = 0
        self.stalled = False
        self.delay = 0.0
        self.response_delay = 0.0
        self.sent_upstream: list[float] = []
        self.mode: Mode = "forward"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> Self:
        self._thread.start()
        self._run(self._listen())
        return self

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=5)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def set_mode(self, mode: Mode) -> None:
        """Switch how new connections are treated (established ones are not touched)."""
        self.mode = mode
        self._run(self._unlisten() if mode == "refuse" else self._listen())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "close":
            writer.close()
            return
        if self.mode == "reset":
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, upstream=True),
            self._pipe(up_reader, writer, upstream=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                while self.stalled:
                    await asyncio.sleep(0.05)
                delay = self.delay + (0.0 if upstream else self.response_delay)
                if delay:
                    await asyncio.sleep(delay)
                if upstream:
                    self.sent_upstream.append(time.monotonic())
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def drop_connections(self, *, reset: bool = True) -> None:
        """Close every open connection under its client (with a TCP reset by default)."""

        def close_all() -> None:
            for writer in list(self._writers):
                if reset:
                    _reset(writer)
                else:
                    writer.close()
            self._writers.clear()

        self._loop.call_soon_threadsafe(close_all)

    def stop(self) -> None:
        if not self._thread.is_alive():
            self._loop.close()
            return

        async def shutdown() -> None:
            await self._unlisten()
            for writer in list(self._writers):
                writer.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        with contextlib.suppress(Exception):
            self._run(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reset(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
