"""AWS Lambda: the HTTP function behind a Function URL or an HTTP API. Handler: ``main.handler``.

The same HTTP contract as the GCP function (signed JSON requests, completion links, limits,
outcomes), over the same core, :class:`completer.handlers.http.HttpHandler`;
:class:`completer.handlers.lambda_http.LambdaHttp` only translates payload format 2.0
events. Settings, the engine client and one event loop are made when Lambda loads this
module: a wrong configuration, or nothing guarding the function (docs/security.md), fails
the cold start with one sentence, and warm invocations reuse the loop and its connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from completer.errors import ConfigurationError
from completer.handlers.http import HttpHandler
from completer.handlers.lambda_http import LambdaHttp
from completer.handlers.startup import connect_during_init
from completer.handlers.worker import build_executor
from completer.ledger.replays import LedgerReplayStore
from completer.logs import configure_logging
from completer.secrets import load_secret_environment
from completer.settings import get_settings, require_http_guard

configure_logging()
try:
    # Terraform passes secrets as <NAME>_SECRET_ARN: resolve them before the settings are read.
    load_secret_environment()
    settings = get_settings()
    require_http_guard(settings)
    # The completion ledger (COMPLETER_LEDGER=dynamodb://<table>; docs/ledger.md): replays,
    # signed webhooks' ids and the approval pages' decisions across instances.
    executor, ledger = build_executor(settings)
    replays = LedgerReplayStore(
        lambda: ledger.ledger, tolerance_seconds=settings.signature_tolerance_seconds
    )
    _http = LambdaHttp(HttpHandler(executor, settings=settings, replays=replays, decisions=ledger))
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None
_loop = asyncio.new_event_loop()
connect_during_init(executor.engine, _loop)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Function URL / HTTP API (payload 2.0) event in; ``statusCode``, headers and body out."""
    return _loop.run_until_complete(_http.handle(event))
