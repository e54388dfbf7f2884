"""Pub/Sub function: complete a waiting activity from a Pub/Sub message.

Target ``complete``, an async CloudEvent function (Eventarc ``messagePublished`` events, or raw
push requests that functions-framework converts), served on each worker's one event loop.
Returning acknowledges the message; raising makes Pub/Sub redeliver it. The logic is
:class:`completer.handlers.pubsub.PubSubHandler`.
"""

from __future__ import annotations

import functions_framework.aio
from cloudevents.http.event import CloudEvent

from completer.deadletter import dead_letter_topic
from completer.errors import ConfigurationError
from completer.handlers.pubsub import PubSubHandler
from completer.handlers.worker import WorkerClient
from completer.logs import configure_logging
from completer.settings import get_settings

configure_logging()
try:
    handler = PubSubHandler(
        WorkerClient(get_settings()), dead_letters=dead_letter_topic(get_settings())
    )
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None


@functions_framework.aio.cloud_event
async def complete(event: CloudEvent) -> None:
    """Carry out the completion a Pub/Sub message asks for."""
    await handler.handle(event)
