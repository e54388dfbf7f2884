"""Pub/Sub function: complete a waiting activity from a Pub/Sub message (CONTRACT §5).

Target ``complete``, CloudEvent signature (Eventarc ``messagePublished`` events, or raw push
requests that functions-framework converts). Returning acknowledges the message; raising
makes Pub/Sub redeliver it, which only transient errors do.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from completer.client import ProcessClient
from completer.deadletter import dead_letter_topic
from completer.errors import ConfigurationError
from completer.events.pubsub import PubSubCompleter
from completer.logs import configure_logging
from completer.settings import get_settings

configure_logging()
try:
    # Fail at start, not on the first message; the serving worker opens the connection.
    pubsub_completer = PubSubCompleter(
        ProcessClient(), dead_letters=dead_letter_topic(get_settings())
    )
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None


@functions_framework.cloud_event
def complete(event: Any) -> None:
    """Carry out the completion a Pub/Sub message asks for."""
    pubsub_completer.handle(event)
