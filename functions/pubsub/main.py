"""Pub/Sub function: complete a waiting activity from a Pub/Sub message.

Target ``complete``, an async function served on each worker's one event loop. It takes
Eventarc ``messagePublished`` CloudEvents and raw push requests alike (functions-framework's
async ``cloud_event`` face refuses raw push requests, so this is an HTTP function that reads
both). A 2xx answer acknowledges the message; any other makes Pub/Sub redeliver it. A
redelivered message ID, or a repeated completion, is recognised on every instance through
the completion ledger (docs/ledger.md). The logic is
:class:`completer.handlers.pubsub.PubSubHandler`.
"""

from __future__ import annotations

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from completer.deadletter import dead_letter_topic
from completer.errors import ConfigurationError
from completer.handlers.pubsub import PubSubHandler
from completer.handlers.worker import build_executor
from completer.logs import configure_logging
from completer.settings import get_settings

configure_logging()
try:
    executor, ledger = build_executor(get_settings())
    handler = PubSubHandler(
        executor, dead_letters=dead_letter_topic(get_settings()), ledger=lambda: ledger.ledger
    )
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None


@functions_framework.aio.http
async def complete(request: Request) -> Response:
    """Carry out the completion a Pub/Sub message asks for."""
    return await handler.serve_starlette(request)
