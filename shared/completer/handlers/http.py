"""The HTTP trigger: one request through the checks, the completion and the answer.

The checks run in the order of docs/contract.md (HTTP function), each before anything
later is read or parsed::

    method (405) -> media type (415) -> body limit (413) and read deadline (400)
    -> signature, or COMPLETER_ALLOW_UNSIGNED (401) -> replay of a webhook-id (first answer)
    -> completion request (400) -> the signing secret's scope (403) -> executor
    -> status and JSON body (never cached, never sniffed)

Before those, :meth:`HttpHandler._route` sends requests that carry their own credential
elsewhere: when ``COMPLETER_LINK_SECRET`` is set, a GET or POST carrying a ``link`` query
parameter is a completion link, and a GET carrying a ``receipt`` parameter the receipt a
link's POST redirects to: both are answered with HTML pages by :mod:`completer.handlers.links`.
A request carrying a ``callback`` query parameter is a callback URL, answered by
:mod:`completer.handlers.callbacks`. See docs/security.md for what guards the function.

The core, :meth:`HttpHandler.handle`, takes a transport-neutral
:class:`~completer.handlers.exchange.HttpRequest`; :meth:`HttpHandler.serve_starlette` is the
adapter for functions-framework's async face.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from completer.errors import (
    CompleterError,
    EngineUnavailable,
    MethodNotAllowed,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from completer.events.http import (
    ALLOWED_METHODS,
    SignatureVerifier,
    request_id_of,
)
from completer.handlers.disposition import judge, log_verdict
from completer.handlers.exchange import JSON_MEDIA_TYPE, HttpAnswer, HttpRequest
from completer.models import Origin, Status, parse_request
from completer.signatures import (
    MemoryReplayStore,
    RememberedAnswer,
    answer_once,
    check_scope,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from completer.executor import Executor
    from completer.handlers.callbacks import CallbackEndpoint
    from completer.handlers.links import DecisionLookup, LinkPages
    from completer.models import CompletionOutcome
    from completer.pages import RenderedPage
    from completer.settings import Settings
    from completer.signatures import ReplayStore, SignedRequest

__all__ = ["JSON_HEADERS", "HttpHandler", "answer_error", "answer_outcome"]

CALLBACK_PARAM = "callback"  # the query parameter of a callback URL (completer.callbacks)

logger = logging.getLogger("completer.http")

# Every JSON answer: never kept by a cache or proxy (it may describe a workflow), and never
# sniffed into something a browser would run.
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# What of a caller's text reaches an answer or a log line (methods, media types).
SHOWN_CHARS = 64

Route = Callable[[HttpRequest, str], Awaitable[HttpAnswer]]


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
    """The HTTP function's logic over one executor, one set of settings and one replay memory.

    Build it once per process; :meth:`handle` is safe to call concurrently on one loop.
    """

    def __init__(
        self,
        executor: Executor,
        *,
        settings: Settings,
        replays: ReplayStore | None = None,
        decisions: DecisionLookup | None = None,
    ) -> None:
        """Bind the executor, settings and replay memory; build the signature verifier.

        Args:
            executor: Carries completion requests out (the engine client, or the ledger).
            settings: The process's settings.
            replays: Remembers the answers to signed requests by ``webhook-id``, so a replay
                gets the first answer instead of being carried out again; by default in
                this process's memory, for the signature tolerance.
            decisions: The ledger the executor records in, so a link's page can show a
                decision already taken instead of its button.

        Raises:
            ConfigurationError: A signing secret is malformed.
        """
        self.executor = executor
        self.settings = settings
        self.replays = replays or MemoryReplayStore(
            tolerance_seconds=settings.signature_tolerance_seconds
        )
        self.verifier = SignatureVerifier.from_settings(settings)
        # A body must arrive within the time an engine call may take (default 10 s).
        self.read_timeout = settings.rpc_timeout_seconds
        secret = settings.link_secret
        self.links: LinkPages | None = None
        if secret is not None:
            # Links (and the cryptography they need) load only where they are switched on.
            from completer.handlers.links import LinkPages

            self.links = LinkPages(executor, secret=secret.get_secret_value(), decisions=decisions)
        self._callbacks: CallbackEndpoint | None = None

    async def handle(self, request: HttpRequest) -> HttpAnswer:
        """Answer one HTTP request; never raises, every outcome becomes an answer."""
        if request.read_timeout is None:
            request.read_timeout = self.read_timeout
        request_id = request_id_of(request.headers)
        route = self._route(request) or self._json
        answer = await route(request, request_id)
        if answer.page is None:
            answer.headers.update(JSON_HEADERS)
        return answer

    def _route(self, request: HttpRequest) -> Route | None:
        """The handler of a request that carries its own credential; None for a JSON request."""
        # A link's sealed part is its own authentication, and a browser's form is not JSON.
        if self.links is not None and self.links.applies_to(request):
            return self._link
        if CALLBACK_PARAM in request.query:
            return self._callback
        return None

    async def _link(self, request: HttpRequest, request_id: str) -> HttpAnswer:
        assert self.links is not None
        return _answer_page(await self.links.handle(request, request_id=request_id))

    async def _callback(self, request: HttpRequest, request_id: str) -> HttpAnswer:
        return await self._callback_endpoint().handle(request, request_id=request_id)

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

    async def _json(self, request: HttpRequest, request_id: str) -> HttpAnswer:
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": request.method[:SHOWN_CHARS],
        }
        try:
            body = await self._read_body(request)
            signed = self._authenticate(body, request.headers)
        except Exception as exc:  # noqa: BLE001 - the disposition policy answers anything
            return self._answered(exc, fields)
        if signed is None:
            return await self._carry_out(body, None, fields)
        fields.update(webhook_id=signed.webhook_id, secret=signed.key.label)
        first: HttpAnswer | None = None

        async def carry_out() -> RememberedAnswer:
            nonlocal first
            first = await self._carry_out(body, signed, fields)
            return RememberedAnswer(first.status, first.body)

        try:
            remembered, replayed = await answer_once(self.replays, signed, carry_out)
        except Exception as exc:  # noqa: BLE001 - a reused id (409) or the memory failing
            return self._answered(exc, fields)
        if replayed:
            fields["status"] = remembered.status
            logger.info("signed request replayed", extra={"completer": fields})
            return HttpAnswer(remembered.status, remembered.replayed())
        assert first is not None
        return first

    async def _read_body(self, request: HttpRequest) -> bytes:
        if request.method != "POST":
            raise MethodNotAllowed(f"use POST, not {request.method[:SHOWN_CHARS]}.")
        if request.media_type != JSON_MEDIA_TYPE:
            shown = request.media_type[:SHOWN_CHARS] or "none"
            raise UnsupportedMediaType(f"send Content-Type: {JSON_MEDIA_TYPE} (got {shown}).")
        limit = self.settings.max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            raise PayloadTooLarge(f"the body is over the {limit}-byte limit.")
        # At most limit + 1 bytes are read whatever the headers said (chunked bodies have none).
        body = await request.read(limit)
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over the {limit}-byte limit.")
        return body

    def _authenticate(self, body: bytes, headers: Mapping[str, str]) -> SignedRequest | None:
        """The verified signature; None for an unsigned request the settings allow.

        Raises:
            Unauthorized: Not signed as the settings ask, or signed but not validly.
        """
        if self.verifier is not None:
            return self.verifier.verify(body, headers)
        if self.settings.allow_unsigned:
            return None
        raise Unauthorized(
            "this function takes signed requests only: send the Standard Webhooks headers "
            "webhook-id, webhook-timestamp and webhook-signature (see docs/security.md)."
        )

    async def _carry_out(
        self, body: bytes, signed: SignedRequest | None, fields: dict[str, Any]
    ) -> HttpAnswer:
        """Parse, scope-check and execute; the answer, whatever happened."""
        started: float | None = None
        result: CompletionOutcome | BaseException
        try:
            completion = parse_request(body)
            fields.update(activity=completion.describe_activity(), action=completion.action.value)
            if signed is not None:
                check_scope(signed.scope, completion)
            origin = Origin(trigger="http", source=signed.webhook_id if signed else None)
            started = time.perf_counter()
            result = await self.executor.execute(completion, origin=origin)
        except Exception as exc:  # noqa: BLE001 - the disposition policy answers anything
            result = exc
        if started is not None:
            fields["engine_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return self._answered(result, fields)

    @staticmethod
    def _answered(result: CompletionOutcome | BaseException, fields: dict[str, Any]) -> HttpAnswer:
        """The answer to ``result`` under the one disposition policy, logged once."""
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
