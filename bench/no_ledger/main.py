"""The HTTP function without the completion ledger: the bench's baseline for the ledger's cost.

The same handler, logging and worker client as functions/http/main.py, nothing between them.
"""

from __future__ import annotations

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from completer.handlers.http import HttpHandler
from completer.handlers.worker import WorkerClient
from completer.logs import configure_logging
from completer.settings import get_settings

configure_logging()  # the same log line per request as the real function
handler = HttpHandler(WorkerClient(get_settings()), settings=get_settings())


@functions_framework.aio.http
async def complete(request: Request) -> Response:
    return await handler.serve_starlette(request)
