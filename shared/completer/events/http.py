"""HTTP requests to completion requests and back (CONTRACT §4).

:class:`HttpCompleter` carries one request through the checks in the order the contract
gives them, each before anything later is read or parsed::

    method (405) -> media type (415) -> body limit (413) -> signature (401)
    -> completion request (400) -> completion client -> status and JSON body

Before those, when ``COMPLETER_LINK_SECRET`` is set, a GET or POST carrying a ``link``
query parameter is a completion link, answered with HTML pages by
:mod:`completer.events.links_page`.

It takes a werkzeug request (what functions-framework hands a function) and returns an
:class:`HttpAnswer`; the function only turns that into its framework's response.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from completer.client import describe_activity
from completer.errors import (
    CompleterError,
    EngineUnavailable,
    InternalError,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from completer.models import CompletionOutcome, CompletionRequest, parse_request
from completer.signatures import SignatureVerifier

if TYPE_CHECKING:
    from collections.abc import Mapping

    from werkzeug.wrappers import Request

    from completer.events.links_page import LinkPage, LinkPages
    from completer.settings import Settings

__all__ = ["Completer", "HttpAnswer", "HttpCompleter", "SignatureVerifier", "request_id_of"]

logger = logging.getLogger("completer.http")

# RFC 9110 §15.5.6: a 405 answer lists the methods the resource supports.
ALLOWED_METHODS = "POST"
# RFC 8259 §11: the JSON media type; a charset parameter is tolerated (CONTRACT §4).
JSON_MEDIA_TYPE = "application/json"
HTML_MEDIA_TYPE = "text/html"
# Cloud Run / Cloud Functions trace header: "TRACE_ID/SPAN_ID;o=OPTIONS".
CLOUD_TRACE_HEADER = "x-cloud-trace-context"
# W3C Trace Context: "version-traceid-parentid-flags".
TRACEPARENT_HEADER = "traceparent"

_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{1,64})(?:/|$)")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_READ_CHUNK = 64 * 1024


class Completer(Protocol):
    """What the HTTP function needs from a completion client (the sync face)."""

    def execute(self, request: CompletionRequest) -> CompletionOutcome:
        """Carry out one completion request."""
        ...


@dataclass(frozen=True)
class HttpAnswer:
    """The HTTP answer to one request: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    page: str | None = None
    """An HTML page to send instead of the JSON body (completion links)."""

    @classmethod
    def of_error(cls, error: CompleterError) -> HttpAnswer:
        """The contract's answer to an error; 503 carries ``Retry-After``, 405 ``Allow``."""
        headers: dict[str, str] = {}
        if isinstance(error, EngineUnavailable):
            headers["Retry-After"] = str(error.retry_after)
        if isinstance(error, MethodNotAllowed):
            headers["Allow"] = ALLOWED_METHODS
        return cls(error.http_status, error.to_dict(), headers)

    @classmethod
    def of_outcome(cls, outcome: CompletionOutcome) -> HttpAnswer:
        """The 200 answer to a successful completion."""
        return cls(200, outcome.to_dict())

    @classmethod
    def of_page(cls, page: LinkPage) -> HttpAnswer:
        """An HTML answer to a completion link (:mod:`completer.events.links_page`)."""
        return cls(page.status, {}, page.headers, page=page.html)

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


def request_id_of(headers: Mapping[str, str]) -> str:
    """The trace id a request carries (Cloud trace header or W3C traceparent), else a new id.

    Args:
        headers: The request headers, names in lower case.
    """
    cloud = _CLOUD_TRACE.match(headers.get(CLOUD_TRACE_HEADER, ""))
    if cloud:
        return cloud.group(1).lower()
    parent = _TRACEPARENT.match(headers.get(TRACEPARENT_HEADER, "").strip().lower())
    if parent:
        return parent.group(1)
    return uuid.uuid4().hex


class HttpCompleter:
    """The HTTP function's logic over one completion client and one set of settings.

    Build it once per process; :meth:`handle` is safe to call from many threads.
    """

    def __init__(self, client: Completer, *, settings: Settings) -> None:
        """Bind the client and settings and build the signature verifier.

        Raises:
            ConfigurationError: A signing secret is malformed.
        """
        self.client = client
        self.settings = settings
        self.verifier = SignatureVerifier.from_settings(settings)
        secret = settings.link_secret
        self.links: LinkPages | None = None
        if secret is not None:
            # Links (and the cryptography they need) load only where they are switched on.
            from completer.events.links_page import LinkPages

            self.links = LinkPages(client, secret=secret.get_secret_value())

    def handle(self, request: Request) -> HttpAnswer:
        """Answer one HTTP request; never raises, every outcome becomes an answer."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        request_id = request_id_of(headers)
        # A link's sealed part is its own authentication, and a browser's form is not JSON.
        if self.links is not None and self.links.applies_to(request):
            return HttpAnswer.of_page(self.links.handle(request, request_id=request_id))
        fields: dict[str, Any] = {"request_id": request_id, "method": request.method}
        started: float | None = None
        try:
            completion = self._completion_request(request, headers)
            fields.update(activity=describe_activity(completion), action=completion.action.value)
            started = time.perf_counter()
            answer = HttpAnswer.of_outcome(self.client.execute(completion))
        except CompleterError as exc:
            answer = HttpAnswer.of_error(exc)
            fields["outcome"] = exc.code
        except Exception as exc:  # noqa: BLE001 - the contract answers anything unexpected with 500
            # Anything unexpected is `internal`; only its type is logged (messages may quote input).
            answer = HttpAnswer.of_error(InternalError("an unexpected error occurred; retry."))
            fields.update(outcome="internal", error_type=type(exc).__name__)
        else:
            fields["outcome"] = answer.body["status"]
        if started is not None:
            fields["engine_ms"] = round((time.perf_counter() - started) * 1000, 1)
        fields["status"] = answer.status
        level = logging.INFO if answer.status < 500 else logging.WARNING
        if answer.status == 500:
            level = logging.ERROR
        logger.log(level, "completion request answered", extra={"completer": fields})
        return answer

    def _completion_request(
        self, request: Request, headers: Mapping[str, str]
    ) -> CompletionRequest:
        if request.method != "POST":
            raise MethodNotAllowed(f"use POST, not {request.method}.")
        if request.mimetype != JSON_MEDIA_TYPE:
            shown = request.mimetype or "none"
            raise UnsupportedMediaType(f"send Content-Type: {JSON_MEDIA_TYPE} (got {shown}).")
        body = self._read_body(request)
        if self.verifier is not None:
            self.verifier.verify(body, headers)
        return parse_request(body)

    def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = PayloadTooLarge(f"the body is over the {limit}-byte limit.")
        declared = request.content_length
        if declared is not None and declared > limit:
            _discard_unread(request)
            raise too_large
        stream = request.stream
        chunks: list[bytes] = []
        size = 0
        # Read at most limit + 1 bytes whatever the headers said (chunked bodies have none).
        while size <= limit:
            chunk = stream.read(min(_READ_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            _discard_unread(request)
            raise too_large
        return b"".join(chunks)


def _discard_unread(request: Request) -> None:
    # functions-framework reads the rest of every body after the view (get_data()); an
    # empty stream keeps a refused body from being buffered. The server drains or closes.
    request.stream = io.BytesIO()
