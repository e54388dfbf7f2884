"""A TCP proxy that adds a fixed latency to every byte, without serialising requests.

tests/support/proxy.py's proxy, with each chunk held for ``delay`` seconds after it was read
and then written in order: a stream of concurrent requests on one connection (gRPC) each gets
the delay once, as from an engine in another region, instead of waiting for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.support.proxy import TcpProxy


class DelayingProxy(TcpProxy):
    """Forwards to ``upstream_port`` with ``delay`` seconds of one-way latency each direction."""

    def __init__(self, upstream_port: int, *, delay: float) -> None:
        super().__init__(upstream_port)
        self.delay = delay

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        # Both directions are delayed alike; ``upstream`` is the base class's direction flag.
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, data = await held.get()
                if not data:
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()

        releasing = asyncio.create_task(release())
        try:
            while data := await reader.read(65536):
                held.put_nowait((time.monotonic() + self.delay, data))
            held.put_nowait((0.0, b""))
            await releasing
        finally:
            releasing.cancel()
            with contextlib.suppress(Exception):
                writer.close()
