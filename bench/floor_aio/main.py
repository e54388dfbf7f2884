"""The cold-start floor of an async function: hello-world on functions-framework's ``aio``
face that imports temporalio, connects and completes once. Only for the bench."""

from __future__ import annotations

import base64
import os

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import JSONResponse
from temporalio.client import Client


@functions_framework.aio.http
async def complete(request: Request) -> JSONResponse:
    """Complete the activity whose base64 task token the JSON body carries."""
    body = await request.json()
    client = await Client.connect(os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"))
    token = base64.b64decode(body["task_token"])
    await client.get_async_activity_handle(task_token=token).complete(body.get("result"))
    return JSONResponse({"status": "completed"})
