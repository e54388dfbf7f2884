"""Callback URLs on the HTTP function: ``POST <function url>?callback=<sealed>``.

The sealed URL is the credential (no webhook signature is asked), so this runs before the
HTTP function's signature rule. Checks, each before anything later is read::

    method (405) -> sealed URL (401, expired too) -> media type (415) -> body limit (413)
    -> body (400: JSON input rules, or UTF-8 text) -> select / fail_when -> executor

The executor is the function's chain (ledger included), so the same body again answers
the first outcome ``replayed`` and a different body for a carried-out URL is ``conflict``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from completer.callbacks import CALLBACK_PARAM, open_callback
from completer.errors import (
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from completer.handlers.disposition import judge, log_verdict
from completer.handlers.exchange import JSON_MEDIA_TYPE, HttpAnswer, HttpRequest
from completer.models import CompletionOutcome, CompletionRequest, Origin, parse_json

if TYPE_CHECKING:
    from completer.executor import Executor

__all__ = ["CallbackEndpoint"]

logger = logging.getLogger("completer.http")

TEXT_MEDIA_TYPE = "text/plain"


class CallbackEndpoint:
    """Serves callback URLs for one HTTP function.

    Args:
        executor: The function's completion chain.
        secret: ``COMPLETER_LINK_SECRET``; None when callbacks are off (every one is 401).
        max_body_bytes: ``COMPLETER_MAX_BODY_BYTES``.
    """

    def __init__(self, executor: Executor, *, secret: str | None, max_body_bytes: int) -> None:
        self.executor = executor
        self._secret = secret
        self._limit = max_body_bytes

    @staticmethod
    def applies_to(request: HttpRequest) -> bool:
        """True when the URL carries a ``callback`` parameter."""
        return CALLBACK_PARAM in request.query

    async def handle(self, request: HttpRequest, *, request_id: str) -> HttpAnswer:
        """Answer one callback; never raises."""
        from completer.handlers.http import answer_error, answer_outcome

        fields: dict[str, Any] = {"request_id": request_id, "method": request.method}
        fields["callback"] = True
        started: float | None = None
        result: CompletionOutcome | BaseException
        try:
            completion = await self._completion(request)
            fields.update(activity=completion.describe_activity(), action=completion.action.value)
            started = time.perf_counter()
            result = await self.executor.execute(completion, origin=Origin(trigger="callback"))
        except Exception as exc:  # noqa: BLE001 - the disposition policy answers anything
            result = exc
        if started is not None:
            fields["engine_ms"] = round((time.perf_counter() - started) * 1000, 1)
        verdict = judge(result)
        if verdict.error is None:
            assert isinstance(result, CompletionOutcome)
            answer = answer_outcome(result)
        else:
            answer = answer_error(verdict.error)
        fields["status"] = answer.status
        cause = result if isinstance(result, BaseException) else None
        level = logging.INFO if answer.status < 500 else None
        log_verdict(logger, "callback answered", verdict, fields, cause=cause, level=level)
        return answer

    async def _completion(self, request: HttpRequest) -> CompletionRequest:
        if request.method != "POST":
            raise MethodNotAllowed(f"a callback URL takes POST, not {request.method}.")
        if self._secret is None:
            raise Unauthorized("this function takes no callback URLs (no link secret is set).")
        opened = open_callback(request.query[CALLBACK_PARAM], secret=self._secret)
        media_type = request.media_type
        if media_type not in (JSON_MEDIA_TYPE, TEXT_MEDIA_TYPE):
            raise UnsupportedMediaType(
                f"send Content-Type: {JSON_MEDIA_TYPE} or {TEXT_MEDIA_TYPE} "
                f"(got {media_type or 'none'})."
            )
        declared = request.content_length
        if declared is not None and declared > self._limit:
            raise PayloadTooLarge(f"the body is over the {self._limit}-byte limit.")
        body = await request.read(self._limit)
        if len(body) > self._limit:
            raise PayloadTooLarge(f"the body is over the {self._limit}-byte limit.")
        if media_type == JSON_MEDIA_TYPE:
            value = parse_json(body)
        else:
            try:
                value = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRequest("the body is not UTF-8 text.") from exc
        return opened.completion(value)
