"""The Cloud Storage function's logic: acknowledge by returning, ask for a retry by raising.

One finalized event names one object generation. Its metadata and content make a completion
request (:mod:`completer.events.gcs`); the object is read at that generation, byte-capped
(:mod:`completer.storage.gcs`); an :class:`~completer.executor.Executor` carries it out.

Success and permanent errors return, so Eventarc does not retry; permanent ones are logged
and, with ``COMPLETER_DEAD_LETTER_TOPIC``, published there with the event's data and the
``completer_*`` attributes. Transient errors raise, so Eventarc retries the event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from completer.deadletter import MAX_ATTRIBUTE_VALUE_BYTES
from completer.errors import (
    CompleterError,
    InternalError,
    InvalidRequest,
    PermanentError,
    TransientError,
)
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
from completer.models import CompletionRequest, Origin

if TYPE_CHECKING:
    from completer.deadletter import DeadLetterTopic
    from completer.executor import Executor
    from completer.settings import Settings

__all__ = ["TRIGGER", "GcsHandler", "ObjectReader"]

logger = logging.getLogger("completer.gcs")

TRIGGER = "gcs"
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

    async def handle(self, event: CloudEventLike) -> str:
        """Carry out the completion one finalized event asks for.

        Returns:
            The outcome: a success status, ``ignored``, or the code of the permanent error
            that was acknowledged (and dead-lettered).

        Raises:
            TransientError: Reading the object or calling the engine may succeed later
                (also when the dead letter could not be published).
        """
        # Both are the sender's text: bounded before they reach a log or an attribute.
        fields: dict[str, Any] = {
            "event_id": _bounded(event_id(event), MAX_LOGGED_ID_BYTES),
            "event_type": _bounded(event_type(event), MAX_LOGGED_ID_BYTES),
        }
        request: CompletionRequest | None = None
        try:
            obj = finalized_object(event)
            if obj is None:
                logger.info("event ignored: not a finalized object", extra=_log(fields, "ignored"))
                return "ignored"
            fields.update(source=obj.source, size=obj.size)
            request = await self._request(obj)
            fields.update(activity=request.describe_activity(), action=request.action.value)
            outcome = await self.executor.execute(request, origin=Origin(TRIGGER, obj.source))
        except TransientError as exc:
            logger.warning(
                "upload not completed; the event will be retried",
                extra=_log(fields, exc.code, reason=exc.message),
            )
            raise
        except PermanentError as exc:
            await self._dead_letter(event, exc, fields)
            return exc.code
        except CompleterError as exc:  # neither kind: treat as a bug, retry rather than lose
            raise InternalError(f"unexpected error: {exc.message}") from exc
        if outcome.replayed:
            # A redelivered event (or the same upload again): the ledger's first answer.
            fields["replayed"] = True
        logger.info("upload carried out", extra=_log(fields, outcome.status.value))
        return outcome.status.value

    async def _request(self, obj: GcsObject) -> CompletionRequest:
        inline, payload = self.settings.gcs_inline_max_bytes, self.settings.max_payload_bytes
        limit = read_limit(obj, inline_max_bytes=inline, payload_max_bytes=payload)
        content = None if limit is None else await asyncio.to_thread(self.reader.read, obj, limit)
        return build_request(obj, content, inline_max_bytes=inline, payload_max_bytes=payload)

    async def _dead_letter(
        self, event: CloudEventLike, exc: PermanentError, fields: dict[str, Any]
    ) -> None:
        fields["reason"] = exc.message
        if self.dead_letters is not None:
            try:
                data = json.dumps(dict(event_data(event))).encode("utf-8")
            except InvalidRequest:
                data = _raw_data(event)
            try:
                fields["dead_letter_message_id"] = await asyncio.to_thread(
                    self.dead_letters.publish,
                    data,
                    {"source": _bounded(fields["source"])} if "source" in fields else {},
                    error=exc,
                    source_message_id=fields["event_id"],
                )
            except InternalError:
                logger.exception("dead letter failed", extra=_log(fields, exc.code))
                raise
        logger.warning(
            "upload not completed; acknowledged, not retried", extra=_log(fields, exc.code)
        )


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


def _log(fields: dict[str, Any], outcome: str, **more: Any) -> dict[str, Any]:
    return {"completer": {**fields, **more, "outcome": outcome}}
