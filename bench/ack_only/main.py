"""The Pub/Sub transport's floor: an async function that only acknowledges each push request.

It reads the body, writes one log line shaped like the Pub/Sub function's (``outcome`` and
``time``, so the bench counts both the same way) and answers 200. Only for the bench.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response


@functions_framework.aio.http
async def complete(request: Request) -> Response:
    """Acknowledge one message."""
    await request.body()
    line = {"severity": "INFO", "time": datetime.now(UTC).isoformat(), "outcome": "completed"}
    print(json.dumps(line), file=sys.stderr, flush=True)
    return Response("OK")
