"""Cloud Storage function: complete a waiting activity from an uploaded object.

Target ``complete``, an async CloudEvent function served on each worker's one event loop:
the Eventarc event ``google.cloud.storage.object.v1.finalized`` (see docs/triggers/gcs.md).
Returning acknowledges the event; a transient error answers its 5xx status, so Eventarc
retries it (as an HTTPException: the handler has written the event's one log line, and the
framework would add a stack trace for any other exception). The logic is
:class:`completer.handlers.gcs.GcsHandler`.
"""

from __future__ import annotations

from typing import Any

import functions_framework.aio
from starlette.exceptions import HTTPException

from completer.deadletter import dead_letter_topic
from completer.errors import CompleterError, ConfigurationError
from completer.handlers.gcs import GcsHandler
from completer.handlers.worker import build_executor
from completer.logs import configure_logging
from completer.settings import get_settings
from completer.storage.gcs import GcsReader

configure_logging()
try:
    executor, _ledger = build_executor(get_settings())
    handler = GcsHandler(
        executor,
        settings=get_settings(),
        reader=GcsReader(),
        dead_letters=dead_letter_topic(get_settings()),
    )
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None


@functions_framework.aio.cloud_event
async def complete(event: Any) -> None:
    """Carry out the completion a finalized Cloud Storage object asks for."""
    try:
        await handler.handle(event)
    except CompleterError as exc:
        raise HTTPException(exc.http_status, exc.code) from None
