"""The HTTP trigger: one request through the checks, the completion and the answer.

The checks run in the order of docs/contract.md (HTTP function), each before anything
later is read or parsed::

    method (405) -> media type (415) -> body limit (413) -> signature (401)
    -> completion request (400) -> executor -> status and JSON body

Before those, when ``COMPLETER_LINK_SECRET`` is set, a GET or POST carrying a ``link`` query
parameter is a completion link, and a GET carrying a ``receipt`` parameter the receipt a
link's POST redirects to: both are answered with HTML pages by :mod:`completer.handlers.links`.
A request carrying a ``callback`` query parameter is a callback URL, answered by
:mod:`completer.handlers.callbacks`. Links and callback URLs carry their own credential, so
the signature rule does not apply to them.

The core, :meth:`HttpHandler.handle`, takes a transport-neutral
:class:`~completer.handlers.exchange.HttpRequest`; :meth:`HttpHandler.serve_starlette` is the
adapter for functions-framework's async face.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from completer.errors import (
    CompleterError,
    EngineUnavailable,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from completer.events.http import (
    ALLOWED_METHODS,
    WEBHOOK_ID,
    SignatureVerifier,
    request_id_of,
)
from completer.handlers.disposition import judge, log_verdict
from completer.handlers.exchange import JSON_MEDIA_TYPE, HttpAnswer, HttpRequest
from completer.models import CompletionRequest, Origin, Status, parse_request

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from completer.executor import Executor
    from completer.handlers.callbacks import CallbackEndpoint
    from completer.handlers.links import DecisionLookup, LinkPages
    from completer.models import CompletionOutcome
    from completer.pages import RenderedPage
    from completer.settings import Settings

__all__ = ["HttpHandler", "answer_error", "answer_outcome"]

CALLBACK_PARAM = "callback"  # the query parameter of a callback URL (completer.callbacks)

logger = logging.getLogger("completer.http")


def answer_error(error: CompleterError) -> HttpAnswer:
    """The contract's answer to an error; 503 carries ``Retry-After``, 405 ``Allow``."""
    headers: dict[str, str] = {}
    if isinstance(error, EngineUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ALLOWED_METHODS
    return HttpAnswer(error.http_status, error.to_dict(), headers)


def answer_outcome(outcome: CompletionOutcome) -> HttpAnswer:
    """The answer to a successful completion: 200, or 202 for a request kept for its key."""
    return HttpAnswer(202 if outcome.status is Status.BUFFERED else 200, outcome.to_dict())


def _answer_page(page: RenderedPage) -> HttpAnswer:
    return HttpAnswer(page.status, {}, page.headers, page=page.html)


class HttpHandler:
    """The HTTP function's logic over one executor and one set of settings.

    Build it once per process; :meth:`handle` is safe to call concurrently on one loop.
    """

    def __init__(
        self,
        executor: Executor,
        *,
        settings: Settings,
        decisions: DecisionLookup | None = None,
    ) -> None:
        """Bind the executor and settings and build the signature verifier.

        ``decisions`` (the ledger the executor records in) lets a link's page show a
        decision already taken instead of its button.

        Raises:
            ConfigurationError: A signing secret is malformed.
        """
        self.executor = executor
        self.settings = settings
        self.verifier = SignatureVerifier.from_settings(settings)
        secret = settings.link_secret
        self.links: LinkPages | None = None
        if secret is not None:
            # Links (and the cryptography they need) load only where they are switched on.
            from completer.handlers.links import LinkPages

            self.links = LinkPages(executor, secret=secret.get_secret_value(), decisions=decisions)
        self._callbacks: CallbackEndpoint | None = None

    async def handle(self, request: HttpRequest) -> HttpAnswer:
        """Answer one HTTP request; never raises, every outcome becomes an answer."""
        request_id = request_id_of(request.headers)
        # A link's (or receipt's) sealed part is its own authentication; a form is not JSON.
        if self.links is not None and self.links.applies_to(request):
            return _answer_page(await self.links.handle(request, request_id=request_id))
        if CALLBACK_PARAM in request.query:
            return await self._callback_endpoint().handle(request, request_id=request_id)
        fields: dict[str, Any] = {"request_id": request_id, "method": request.method}
        started: float | None = None
        result: CompletionOutcome | BaseException
        try:
            completion, origin = await self._completion_request(request)
            fields.update(activity=completion.describe_activity(), action=completion.action.value)
            started = time.perf_counter()
            result = await self.executor.execute(completion, origin=origin)
        except Exception as exc:  # noqa: BLE001 - the disposition policy answers anything
            result = exc
        if started is not None:
            fields["engine_ms"] = round((time.perf_counter() - started) * 1000, 1)
        verdict = judge(result)
        if verdict.error is None:
            assert not isinstance(result, BaseException)
            answer = answer_outcome(result)
        else:
            answer = answer_error(verdict.error)
        fields["status"] = answer.status
        cause = result if isinstance(result, BaseException) else None
        # A request refused as sent is the caller's to fix, not this service's warning.
        level = logging.INFO if answer.status < 500 else None
        log_verdict(
            logger, "completion request answered", verdict, fields, cause=cause, level=level
        )
        return answer

    def _callback_endpoint(self) -> CallbackEndpoint:
        # Built on first use: cryptography and jmespath load only where callbacks arrive.
        if self._callbacks is None:
            from completer.handlers.callbacks import CallbackEndpoint

            secret = self.settings.link_secret
            self._callbacks = CallbackEndpoint(
                self.executor,
                secret=None if secret is None else secret.get_secret_value(),
                max_body_bytes=self.settings.max_body_bytes,
            )
        return self._callbacks

    async def _completion_request(self, request: HttpRequest) -> tuple[CompletionRequest, Origin]:
        if request.method != "POST":
            raise MethodNotAllowed(f"use POST, not {request.method}.")
        if request.media_type != JSON_MEDIA_TYPE:
            shown = request.media_type or "none"
            raise UnsupportedMediaType(f"send Content-Type: {JSON_MEDIA_TYPE} (got {shown}).")
        limit = self.settings.max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            raise PayloadTooLarge(f"the body is over the {limit}-byte limit.")
        # At most limit + 1 bytes are read whatever the headers said (chunked bodies have none).
        body = await request.read(limit)
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over the {limit}-byte limit.")
        source = None
        if self.verifier is not None:
            self.verifier.verify(body, request.headers)
            source = request.headers.get(WEBHOOK_ID)
        return parse_request(body), Origin(trigger="http", source=source)

    async def serve_starlette(self, request: Request) -> Response:
        """The adapter for functions-framework's async face (Starlette request and response)."""
        from starlette.responses import Response

        query: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            query.setdefault(name, value)
        neutral = HttpRequest(
            request.method,
            headers={name.lower(): value for name, value in request.headers.items()},
            query=query,
            body=request.stream(),
        )
        answer = await self.handle(neutral)
        return Response(
            answer.text(),
            status_code=answer.status,
            headers=answer.headers,
            media_type=answer.media_type,
        )
