"""The Pub/Sub trigger: acknowledge by returning, ask for redelivery by raising.

Parsing is :mod:`completer.events.pubsub`'s; what to do with an error is
:mod:`completer.handlers.disposition`'s. A permanent error is acknowledged and republished to
``COMPLETER_DEAD_LETTER_TOPIC`` when set; if that publish fails the handler raises, because a
redelivery beats a lost message.

Over HTTP (:meth:`PubSubHandler.handle_http`) an acknowledgement is ``200`` and a redelivery
any other non-2xx status: it takes Eventarc's CloudEvents (binary or structured) and raw push
requests alike, as functions-framework's WSGI face does (its async ``cloud_event`` face does
not convert raw push requests).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from completer.errors import CompleterError, EngineTimeout, MethodNotAllowed, PayloadTooLarge
from completer.events.pubsub import CloudEventLike, PubSubMessage, event_from_http, read_message
from completer.handlers.disposition import Disposition, Verdict, judge, log_verdict
from completer.handlers.exchange import HttpAnswer, HttpRequest
from completer.ledger.deliveries import Answer
from completer.models import CompletionRequest, Origin

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from completer.deadletter import DeadLetterTopic
    from completer.executor import Executor
    from completer.ledger import Ledger
    from completer.models import CompletionOutcome

__all__ = ["DELIVERY_KIND", "PubSubHandler", "RecentCompletions"]

logger = logging.getLogger("completer.pubsub")

DELIVERY_KIND = "pubsub"
"""The ledger's delivery kind of Pub/Sub message IDs (kept as ``<topic>/<message id>``)."""

# A push body is the message (at most 10 MB, base64 in JSON) plus its envelope.
MAX_PUSH_BODY_BYTES = 16 * 1024 * 1024


class RecentCompletions:
    """Completions this instance timed out on lately, to spot a duplicate of an unknown outcome.

    The ledger answers a repeat of a carried-out completion (``replayed``, on any instance).
    An attempt that timed out left no record, yet may have completed the activity: its
    redelivery then hears ``activity_not_found``, which is a duplicate when this instance
    made that attempt (acknowledge quietly), otherwise worth a dead letter.
    """

    def __init__(self, *, capacity: int = 10_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    @staticmethod
    def key(request: CompletionRequest) -> str:
        """A digest of the whole request (activity, action and payload)."""
        canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def remember(self, request: CompletionRequest) -> None:
        """Note a completion that succeeded, or whose outcome is unknown."""
        key = self.key(request)
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self._capacity:
                self._keys.popitem(last=False)

    def __contains__(self, request: object) -> bool:
        if not isinstance(request, CompletionRequest):
            return False
        with self._lock:
            return self.key(request) in self._keys


class PubSubHandler:
    """Carries out the completion of each Pub/Sub message (one log line per delivery)."""

    def __init__(
        self,
        executor: Executor,
        *,
        dead_letters: DeadLetterTopic | None,
        ledger: Ledger | Callable[[], Ledger] | None = None,
    ) -> None:
        """Bind the executor, the dead-letter topic and the ledger.

        Args:
            executor: Carries out the completions (the functions' is ledger-backed).
            dead_letters: Where permanent failures are republished; None: logged only.
            ledger: Where message IDs are kept, so that a redelivery to any instance is
                acknowledged without being handled again; None: not kept.
        """
        self.executor = executor
        self.dead_letters = dead_letters
        self.recent = RecentCompletions()
        self._ledger = ledger

    async def handle(self, event: CloudEventLike) -> None:
        """Carry out the completion one message asks for, once per message ID.

        Raises:
            CompleterError: A transient error (the ledger's too), or a dead letter that
                could not be published: Pub/Sub redelivers the message.
        """
        message = read_message(event)
        ledger = self._ledger() if callable(self._ledger) else self._ledger
        if ledger is None or not message.message_id:
            return await self._handle(message)
        delivery_id = f"{message.channel}/{message.message_id}"

        handled = False

        async def produce() -> Answer:
            nonlocal handled
            handled = True
            await self._handle(message)
            return Answer(200, {"status": "acknowledged"})

        fields: dict[str, Any] = {"message_id": message.message_id, "form": message.form}
        try:
            _, replayed = await ledger.deliveries.once(delivery_id, produce, kind=DELIVERY_KIND)
        except CompleterError as exc:
            if not handled:
                # The ledger failed before the message was looked at: its one log line.
                log_verdict(logger, _MESSAGES[Disposition.RETRY], judge(exc), fields)
            raise
        if replayed:
            seen = Verdict(Disposition.ACKNOWLEDGE, "acknowledged", duplicate=True)
            log_verdict(logger, "duplicate delivery acknowledged", seen, fields)
        return None

    async def _handle(self, message: PubSubMessage) -> None:
        request: CompletionRequest | None = None
        fields: dict[str, Any] = {"message_id": message.message_id, "form": message.form}
        result: CompletionOutcome | BaseException
        try:
            request = message.completion_request()
            fields.update(activity=request.describe_activity(), action=request.action.value)
            origin = Origin(trigger="pubsub", source=message.message_id or None)
            result = await self.executor.execute(request, origin=origin)
        except Exception as exc:  # noqa: BLE001 - the disposition policy decides
            result = exc
        fields.setdefault("activity", message.describe_activity())
        verdict = judge(result, done_before=request is not None and request in self.recent)
        if request is not None and isinstance(verdict.error, EngineTimeout):
            self.recent.remember(request)
        if verdict.disposition is Disposition.DEAD_LETTER and self.dead_letters is not None:
            assert verdict.error is not None
            try:
                fields["dead_letter_message_id"] = await asyncio.to_thread(
                    self.dead_letters.publish,
                    message.data,
                    message.attributes,
                    error=verdict.error,
                    source_message_id=message.message_id,
                )
            except Exception as exc:
                # The message's own outcome is logged; its disposition becomes a retry.
                failed = replace(verdict, disposition=Disposition.RETRY)
                log_verdict(logger, "dead letter failed", failed, fields, cause=exc)
                raise
        cause = result if isinstance(result, BaseException) else None
        text = (
            "duplicate delivery acknowledged"
            if verdict.duplicate
            else _MESSAGES[verdict.disposition]
        )
        log_verdict(logger, text, verdict, fields, cause=cause)
        if verdict.disposition is Disposition.RETRY:
            assert verdict.error is not None
            if verdict.error is cause:
                raise verdict.error
            raise verdict.error from cause

    async def handle_http(self, request: HttpRequest) -> HttpAnswer:
        """Answer one push or Eventarc request: 200 acknowledges, any other status redelivers."""
        try:
            if request.method != "POST":
                raise MethodNotAllowed(f"use POST, not {request.method}.")
            body = await request.read(MAX_PUSH_BODY_BYTES)
            if len(body) > MAX_PUSH_BODY_BYTES:
                raise PayloadTooLarge(f"the request is over {MAX_PUSH_BODY_BYTES} bytes.")
            event = event_from_http(request.headers, body)
        except CompleterError as exc:
            # Not a message at all: nothing to dead-letter; the non-2xx status makes it visible
            # (and Pub/Sub's own dead-letter policy ends it).
            refused = Verdict(Disposition.RETRY, exc.code, exc)
            log_verdict(logger, "request refused", refused, {"method": request.method})
            return HttpAnswer(exc.http_status, exc.to_dict())
        try:
            await self.handle(event)
        except CompleterError as exc:
            return HttpAnswer(exc.http_status, exc.to_dict())
        return HttpAnswer(200, {"status": "acknowledged"})

    async def serve_starlette(self, request: Request) -> Response:
        """The adapter for functions-framework's async face (Starlette request and response)."""
        from starlette.responses import Response

        neutral = HttpRequest(
            request.method,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=request.stream(),
        )
        answer = await self.handle_http(neutral)
        return Response(
            answer.text(),
            status_code=answer.status,
            headers=answer.headers,
            media_type=answer.media_type,
        )


_MESSAGES = {
    Disposition.ACKNOWLEDGE: "message handled",
    Disposition.RETRY: "message will be redelivered",
    Disposition.DEAD_LETTER: "message rejected",
}
