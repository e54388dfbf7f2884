"""The HTTP function (target ``complete``): complete a waiting activity from a webhook or API call.

An async function on functions-framework's ASGI face (Starlette under gunicorn's uvicorn
worker): every request of a worker runs on its one event loop, over its one engine
connection and its one completion ledger (docs/ledger.md). The logic is
:class:`completer.handlers.http.HttpHandler`; settings are checked at import, so a wrong
configuration, or nothing guarding the function (docs/security.md), stops the instance at
start with one sentence.
"""

from __future__ import annotations

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from completer.errors import ConfigurationError
from completer.handlers.http import HttpHandler
from completer.handlers.worker import build_executor
from completer.ledger.replays import LedgerReplayStore
from completer.logs import configure_logging
from completer.settings import get_settings, require_http_guard

configure_logging()
try:
    settings = get_settings()
    require_http_guard(settings)
    # One ledger per worker process: the executor records in it, signed webhooks' ids are
    # remembered in it, and a link's page asks it what was decided.
    executor, ledger = build_executor(settings)
    handler = HttpHandler(
        executor,
        settings=settings,
        replays=LedgerReplayStore(
            lambda: ledger.ledger, tolerance_seconds=settings.signature_tolerance_seconds
        ),
        decisions=ledger,
    )
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None


@functions_framework.aio.http
async def complete(request: Request) -> Response:
    """Complete, fail, heartbeat or cancel the activity the JSON body (or a link) names."""
    return await handler.serve_starlette(request)
