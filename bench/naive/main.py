"""The function a user writes first: connect to Temporal on every request, then complete.

Only for the bench (issue 8): no validation, no error mapping, a new engine connection per
request. Served by functions-framework exactly like functions/http/main.py.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import flask
import functions_framework
from temporalio.client import Client


@functions_framework.http
def complete(request: flask.Request) -> Any:
    """Complete the activity whose base64 task token the JSON body carries."""
    body = request.get_json()
    token = base64.b64decode(body["task_token"])

    async def connect_and_complete() -> None:
        client = await Client.connect(os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"))
        await client.get_async_activity_handle(task_token=token).complete(body.get("result"))

    asyncio.run(connect_and_complete())
    return {"status": "completed"}
