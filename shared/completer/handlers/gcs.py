"""The Cloud Storage function's logic: acknowledge by returning, ask for a retry by raising.

One finalized event names one object generation. Its metadata and content make a completion
request (:mod:`completer.events.gcs`); the object is read at that generation, byte-capped
(:mod:`completer.storage.gcs`); an :class:`~completer.executor.Executor` carries it out. What
to do with an error is :mod:`completer.handlers.disposition`'s, as for every trigger:

- done (or a duplicate of this instance's own work): returned, so Eventarc acknowledges;
- transient (engine, storage unavailable, a failed dead letter): raised, so Eventarc retries;
- permanent (no metadata, generation gone, bad content, activity not found): returned, and
  published to ``COMPLETER_DEAD_LETTER_TOPIC`` with the event's data and the ``completer_*``
  attributes when set.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from completer.deadletter import MAX_ATTRIBUTE_VALUE_BYTES
from completer.errors import EngineTimeout, InvalidRequest
from completer.events.gcs import (
    CloudEventLike,
    GcsObject,
    build_request,
    event_data,
    event_id,
    event_type,
    finalized_object,
    read_limit,
)
from completer.handlers.disposition import Disposition, Verdict, judge, log_verdict
from completer.handlers.pubsub import RecentCompletions
from completer.models import CompletionRequest, Origin

if TYPE_CHECKING:
    from completer.deadletter import DeadLetterTopic
    from completer.errors import CompleterError
    from completer.executor import Executor
    from completer.models import CompletionOutcome
    from completer.settings import Settings

__all__ = ["IGNORED", "TRIGGER", "GcsHandler", "ObjectReader"]

logger = logging.getLogger("completer.gcs")

TRIGGER = "gcs"
IGNORED = "ignored"
# Eventarc's event ids are short decimal numbers; anything longer is cut in logs.
MAX_LOGGED_ID_BYTES = 256


class ObjectReader(Protocol):
    """Reads an object generation, at most ``limit + 1`` bytes (``GcsReader`` fits)."""

    def read(self, obj: GcsObject, limit: int, /) -> bytes:
        """The content; raise a CompleterError when it cannot be read."""
        ...


class GcsHandler:
    """Completes activities from Cloud Storage finalized events.

    Args:
        executor: Carries out the completion requests; the function's is ledger-backed,
            so a redelivered event answers its first outcome (``replayed``).
        settings: The inline limit and the engine's payload limit.
        reader: Reads object generations.
        dead_letters: Where permanent failures are published; None: logged only.
    """

    def __init__(
        self,
        executor: Executor,
        *,
        settings: Settings,
        reader: ObjectReader,
        dead_letters: DeadLetterTopic | None = None,
    ) -> None:
        self.executor = executor
        self.settings = settings
        self.reader = reader
        self.dead_letters = dead_letters
        # A redelivery after a timed-out call (outcome unknown, which the ledger does not
        # record) that finds the activity finished was this instance's own completion.
        self.recent = RecentCompletions()

    async def handle(self, event: CloudEventLike) -> str:
        """Carry out the completion one finalized event asks for (one log line).

        Returns:
            The outcome: a success status, ``ignored``, or the code of the permanent error
            that was acknowledged (and dead-lettered).

        Raises:
            TransientError: Reading the object or calling the engine may succeed later
                (also when the dead letter could not be published), or something unexpected
                happened (``internal``): Eventarc retries the event.
        """
        # Both are the sender's text: bounded before they reach a log or an attribute.
        fields: dict[str, Any] = {
            "event_id": _bounded(event_id(event), MAX_LOGGED_ID_BYTES),
            "event_type": _bounded(event_type(event), MAX_LOGGED_ID_BYTES),
        }
        request: CompletionRequest | None = None
        result: CompletionOutcome | BaseException
        try:
            obj = finalized_object(event)
            if obj is None:
                verdict = Verdict(Disposition.ACKNOWLEDGE, IGNORED)
                log_verdict(logger, "event ignored: not a finalized object", verdict, fields)
                return IGNORED
            fields.update(source=obj.source, size=obj.size)
            request = await self._request(obj)
            fields.update(activity=request.describe_activity(), action=request.action.value)
            result = await self.executor.execute(request, origin=Origin(TRIGGER, obj.source))
        except Exception as exc:  # noqa: BLE001 - the disposition policy decides
            result = exc
        verdict = judge(result, done_before=request is not None and request in self.recent)
        if request is not None and (
            verdict.error is None or isinstance(verdict.error, EngineTimeout)
        ):
            # Done, or maybe done: a redelivery that finds the activity finished is ours.
            self.recent.remember(request)
        if verdict.disposition is Disposition.DEAD_LETTER:
            await self._dead_letter(event, verdict, fields)
        cause: BaseException | None = None
        if isinstance(result, BaseException):
            cause = result
        else:
            fields.update(result.to_dict())
        text = (
            "duplicate event acknowledged" if verdict.duplicate else _MESSAGES[verdict.disposition]
        )
        log_verdict(logger, text, verdict, fields, cause=cause)
        if verdict.disposition is Disposition.RETRY:
            assert verdict.error is not None
            if verdict.error is cause:
                raise verdict.error
            raise verdict.error from cause
        return verdict.outcome

    async def _request(self, obj: GcsObject) -> CompletionRequest:
        inline, payload = self.settings.gcs_inline_max_bytes, self.settings.max_payload_bytes
        limit = read_limit(obj, inline_max_bytes=inline, payload_max_bytes=payload)
        content = None if limit is None else await asyncio.to_thread(self.reader.read, obj, limit)
        return build_request(
            obj,
            content,
            inline_max_bytes=inline,
            payload_max_bytes=payload,
            key_pattern=self.settings.gcs_key,
        )

    async def _dead_letter(
        self, event: CloudEventLike, verdict: Verdict, fields: dict[str, Any]
    ) -> None:
        error: CompleterError | None = verdict.error
        if self.dead_letters is None or error is None:
            return
        try:
            data = json.dumps(dict(event_data(event))).encode("utf-8")
        except InvalidRequest:
            data = _raw_data(event)
        try:
            fields["dead_letter_message_id"] = await asyncio.to_thread(
                self.dead_letters.publish,
                data,
                {"source": _bounded(fields["source"])} if "source" in fields else {},
                error=error,
                source_message_id=fields["event_id"],
            )
        except Exception as exc:
            # The event's own outcome is logged; its disposition becomes a retry.
            failed = replace(verdict, disposition=Disposition.RETRY)
            log_verdict(logger, "dead letter failed", failed, fields, cause=exc)
            raise


def _bounded(text: str, limit: int = MAX_ATTRIBUTE_VALUE_BYTES) -> str:
    # Pub/Sub refuses attribute values over 1024 bytes (an object name alone may be that long)
    # and text it cannot encode; either would fail the dead letter on every retry.
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return encoded.decode("utf-8")
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."


def _raw_data(event: CloudEventLike) -> bytes:
    data = event.data
    if isinstance(data, bytes):
        return data
    return str(data if data is not None else "").encode("utf-8", "replace")


_MESSAGES = {
    Disposition.ACKNOWLEDGE: "upload carried out",
    Disposition.RETRY: "upload not completed; the event will be retried",
    Disposition.DEAD_LETTER: "upload not completed; acknowledged, not retried",
}
