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

from completer.client import CompletionClient
from completer.errors import ConfigurationError
from completer.handlers.http import HttpHandler
from completer.handlers.lambda_http import LambdaHttp
from completer.logs import configure_logging
from completer.secrets import load_secret_environment
from completer.settings import get_settings, require_http_guard
from completer.signatures import MemoryReplayStore

configure_logging()
try:
    # Terraform passes secrets as <NAME>_SECRET_ARN: resolve them before the settings are read.
    load_secret_environment()
    settings = get_settings()
    require_http_guard(settings)
    replays = MemoryReplayStore(tolerance_seconds=settings.signature_tolerance_seconds)
    client = CompletionClient.create(settings)
    _http = LambdaHttp(HttpHandler(client, settings=settings, replays=replays))
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None
_loop = asyncio.new_event_loop()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Function URL / HTTP API (payload 2.0) event in; ``statusCode``, headers and body out."""
    return _loop.run_until_complete(_http.handle(event))
