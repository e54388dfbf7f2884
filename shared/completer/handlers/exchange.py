"""The transport-neutral HTTP exchange: a small request in, an answer out.

The HTTP handler and the completion-link pages speak only these two types, so any HTTP
platform reuses them with a few lines of adapter: functions-framework's Starlette request
(:meth:`completer.handlers.http.HttpHandler.serve_starlette`), or a Lambda function URL event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from completer.errors import InvalidRequest

__all__ = ["HTML_MEDIA_TYPE", "JSON_MEDIA_TYPE", "HttpAnswer", "HttpRequest"]

# RFC 8259 §11: the JSON media type.
JSON_MEDIA_TYPE = "application/json"
HTML_MEDIA_TYPE = "text/html"


class HttpRequest:
    """One HTTP request as the handlers read it.

    Args:
        method: The method, upper case.
        headers: Header names in lower case (one value each).
        query: Query parameters (the first value of each).
        body: The raw body, whole or as a stream of chunks; it is read at most once, and
            never further than the limit a reader asks for (plus one byte).
        read_timeout: Seconds a streamed body has to arrive in whole; ``None`` waits as long
            as it takes. The HTTP handler sets its own deadline on requests that have none.
    """

    def __init__(
        self,
        method: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        body: bytes | AsyncIterable[bytes] = b"",
        read_timeout: float | None = None,
    ) -> None:
        self.method = method.upper()
        self.headers: Mapping[str, str] = dict(headers or {})
        self.query: Mapping[str, str] = dict(query or {})
        self._body = body
        self._read = False
        self.read_timeout = read_timeout

    @property
    def media_type(self) -> str:
        """The Content-Type without its parameters, lower case ("" when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        """The declared Content-Length, or None when absent or not a number."""
        value = self.headers.get("content-length", "").strip()
        return int(value) if value.isdigit() and len(value) <= 18 else None

    async def read(self, limit: int) -> bytes:
        """The body, or its first ``limit + 1`` bytes when it is longer (so 'too long' shows).

        Reading stops as soon as more than ``limit`` bytes arrived: a larger body is never
        buffered. A second call returns nothing.

        Raises:
            InvalidRequest: A streamed body did not arrive within ``read_timeout`` seconds
                (a sender trickling bytes must not hold a worker).
        """
        if self._read:
            return b""
        self._read = True
        if isinstance(self._body, bytes):
            return self._body[: limit + 1]
        try:
            async with asyncio.timeout(self.read_timeout):
                return await _read_stream(self._body, limit)
        except TimeoutError:
            raise InvalidRequest(
                f"the body did not arrive within {self.read_timeout:g} s; send it at once."
            ) from None


async def _read_stream(stream: AsyncIterable[bytes], limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        chunks.append(chunk[: limit + 1 - size])
        size += len(chunks[-1])
        if size > limit:
            break
    return b"".join(chunks)


@dataclass(frozen=True)
class HttpAnswer:
    """The answer to one request: status, JSON body (or an HTML page) and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    page: str | None = None
    """An HTML page to send instead of the JSON body (completion links)."""

    def json(self) -> str:
        """The body as JSON text."""
        return json.dumps(self.body, ensure_ascii=False)

    @property
    def media_type(self) -> str:
        """The body's media type: HTML for link pages, else JSON."""
        return HTML_MEDIA_TYPE if self.page is not None else JSON_MEDIA_TYPE

    def text(self) -> str:
        """The body to send: the page, or the JSON text."""
        return self.page if self.page is not None else self.json()
