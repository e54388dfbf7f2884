"""Pub/Sub function: complete a waiting activity from a Pub/Sub message (CONTRACT §5).

Target ``complete``, CloudEvent signature (Eventarc ``messagePublished`` events, or raw push
requests that functions-framework converts). Returning acknowledges the message; raising
makes Pub/Sub redeliver it, which only transient errors do.
"""

from __future__ import annotations

import logging
from typing import Any

import functions_framework

from completer.client import ProcessClient, describe_activity
from completer.deadletter import dead_letter_topic
from completer.errors import (
    ActivityNotFound,
    ConfigurationError,
    InternalError,
    PermanentError,
    TransientError,
)
from completer.events.pubsub import PubSubMessage, RecentCompletions, read_message
from completer.logs import configure_logging
from completer.models import CompletionRequest
from completer.settings import get_settings

configure_logging()
logger = logging.getLogger("completer.pubsub")

try:
    # Fail at start, not on the first message; the serving worker opens the connection.
    engine = ProcessClient()
    dead_letters = dead_letter_topic(get_settings())
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None

recent = RecentCompletions()


@functions_framework.cloud_event
def complete(event: Any) -> None:
    """Carry out the completion a Pub/Sub message asks for."""
    message = read_message(event)
    request: CompletionRequest | None = None
    fields: dict[str, Any] = {"message_id": message.message_id, "form": message.form}
    try:
        request = message.completion_request()
        fields.update(activity=describe_activity(request), action=request.action.value)
        outcome = engine.execute(request)
    except TransientError as exc:
        logger.warning("message will be redelivered", extra=_log(fields, message, exc.code))
        raise
    except PermanentError as exc:
        if isinstance(exc, ActivityNotFound) and request in recent:
            fields["duplicate"] = True
            logger.info("duplicate delivery acknowledged", extra=_log(fields, message, exc.code))
            return
        fields["reason"] = exc.message
        if dead_letters is not None:
            try:
                fields["dead_letter_message_id"] = dead_letters.publish(
                    message.data,
                    message.attributes,
                    error=exc,
                    source_message_id=message.message_id,
                )
            except InternalError:
                # Redelivery beats losing the message: raise so Pub/Sub tries again.
                logger.exception("dead letter failed", extra=_log(fields, message, exc.code))
                raise
        logger.warning("message rejected", extra=_log(fields, message, exc.code))
        return
    recent.remember(request)
    logger.info("message handled", extra=_log(fields, message, outcome.status.value))


def _log(fields: dict[str, Any], message: PubSubMessage, outcome: str) -> dict[str, Any]:
    fields.setdefault("activity", message.describe_activity())
    return {"completer": {**fields, "outcome": outcome}}
