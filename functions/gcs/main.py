"""Cloud Storage function: complete a waiting activity from an uploaded object.

Target ``complete``, CloudEvent signature: the Eventarc event
``google.cloud.storage.object.v1.finalized`` (see docs/triggers/gcs.md). Returning
acknowledges the event; raising makes Eventarc retry it, which only transient errors do.
"""

from __future__ import annotations

import asyncio
from typing import Any

import functions_framework

from completer.client import ProcessClient
from completer.deadletter import dead_letter_topic
from completer.errors import ConfigurationError
from completer.handlers.gcs import GcsHandler, SyncExecutor
from completer.logs import configure_logging
from completer.settings import get_settings
from completer.storage.gcs import GcsReader

configure_logging()
try:
    # Fail at start, not on the first event; the serving worker opens the connections.
    handler = GcsHandler(
        SyncExecutor(ProcessClient()),
        settings=get_settings(),
        reader=GcsReader(),
        dead_letters=dead_letter_topic(get_settings()),
    )
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None


@functions_framework.cloud_event
def complete(event: Any) -> None:
    """Carry out the completion a finalized Cloud Storage object asks for."""
    asyncio.run(handler.handle(event))
