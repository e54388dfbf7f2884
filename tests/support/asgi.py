"""Drive an ASGI app (the functions as functions-framework builds them) in-process.

A few lines of the ASGI protocol instead of an HTTP client library: the tests control the
request body chunk by chunk (and count what the app pulled), and every request runs on the
test's own event loop, where the function's engine client lives.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from requests.structures import CaseInsensitiveDict


@dataclass
class AsgiResponse:
    """What the app sent back."""

    status_code: int
    headers: CaseInsensitiveDict[str]
    data: bytes = b""

    @property
    def mimetype(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip()

    @property
    def mimetype_params(self) -> dict[str, str]:
        params = {}
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        return params

    def get_json(self) -> Any:
        return json.loads(self.data)

    def get_data(self, *, as_text: bool = False) -> Any:
        return self.data.decode() if as_text else self.data


@dataclass
class CountingBody:
    """A request body sent in small chunks, counting the bytes the app pulled."""

    data: bytes
    chunk_size: int = 1
    bytes_read: int = field(default=0, init=False)

    async def chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk_size):
            chunk = self.data[start : start + self.chunk_size]
            self.bytes_read += len(chunk)
            yield chunk


async def call(
    app: Any,
    method: str,
    path: str = "/",
    *,
    body: bytes | CountingBody = b"",
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | str = "",
) -> AsgiResponse:
    """Send one request to ``app`` and collect its answer."""
    raw_headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    if isinstance(body, bytes) and not any(k == b"content-length" for k, _ in raw_headers):
        raw_headers.append((b"content-length", str(len(body)).encode()))
    query_string = query if isinstance(query, str) else urlencode(query)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    chunks = body.chunks() if isinstance(body, CountingBody) else _whole(body)
    finished = False

    async def receive() -> dict[str, Any]:
        nonlocal finished
        if finished:
            return {"type": "http.disconnect"}
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            finished = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    status = 0
    response_headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    parts: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                response_headers[name.decode("latin-1")] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    return AsgiResponse(status, response_headers, b"".join(parts))


async def _whole(body: bytes) -> AsyncIterator[bytes]:
    if body:
        yield body
