"""An in-process Cadence frontend for tests: a ``grpc.aio`` ``WorkerAPI`` that records calls.

No Cadence server runs in the test environment, so the Cadence backend is verified at the
gRPC wire: this servicer records every request with its metadata and answers OK, or with
the status and error details a Cadence frontend sends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc.aio
from cadence.api.v1 import service_worker_pb2
from cadence.api.v1.service_worker_pb2_grpc import (
    WorkerAPIServicer,
    add_WorkerAPIServicer_to_server,
)
from google.rpc import status_pb2
from grpc_status import rpc_status


@dataclass
class Call:
    method: str
    request: Any
    metadata: dict[str, str]
    peer: str


class RecordingWorkerAPI(WorkerAPIServicer):  # type: ignore[misc] # generated, untyped base
    """Records each activity call; answers OK, or with ``fault``, after ``delay`` seconds."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: list[Call] = []
        self.fault: status_pb2.Status | None = None
        self.delay = 0.0
        self.cancel_requested = False

    async def _answer(self, method: str, request: Any, context: Any, response: Any) -> Any:
        metadata = dict(context.invocation_metadata())
        self.calls.append(Call(method, request, metadata, context.peer()))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fault is not None:
            await context.abort_with_status(rpc_status.to_status(self.fault))
        return response

    async def RespondActivityTaskCompleted(self, request, context):
        return await self._answer(
            "RespondActivityTaskCompleted",
            request,
            context,
            service_worker_pb2.RespondActivityTaskCompletedResponse(),
        )

    async def RespondActivityTaskCompletedByID(self, request, context):
        return await self._answer(
            "RespondActivityTaskCompletedByID",
            request,
            context,
            service_worker_pb2.RespondActivityTaskCompletedByIDResponse(),
        )

    async def RespondActivityTaskFailed(self, request, context):
        return await self._answer(
            "RespondActivityTaskFailed",
            request,
            context,
            service_worker_pb2.RespondActivityTaskFailedResponse(),
        )

    async def RespondActivityTaskFailedByID(self, request, context):
        return await self._answer(
            "RespondActivityTaskFailedByID",
            request,
            context,
            service_worker_pb2.RespondActivityTaskFailedByIDResponse(),
        )

    async def RecordActivityTaskHeartbeat(self, request, context):
        return await self._answer(
            "RecordActivityTaskHeartbeat",
            request,
            context,
            service_worker_pb2.RecordActivityTaskHeartbeatResponse(
                cancel_requested=self.cancel_requested
            ),
        )

    async def RecordActivityTaskHeartbeatByID(self, request, context):
        return await self._answer(
            "RecordActivityTaskHeartbeatByID",
            request,
            context,
            service_worker_pb2.RecordActivityTaskHeartbeatByIDResponse(
                cancel_requested=self.cancel_requested
            ),
        )

    async def RespondActivityTaskCanceled(self, request, context):
        return await self._answer(
            "RespondActivityTaskCanceled",
            request,
            context,
            service_worker_pb2.RespondActivityTaskCanceledResponse(),
        )

    async def RespondActivityTaskCanceledByID(self, request, context):
        return await self._answer(
            "RespondActivityTaskCanceledByID",
            request,
            context,
            service_worker_pb2.RespondActivityTaskCanceledByIDResponse(),
        )


@dataclass
class FakeFrontend:
    address: str
    api: RecordingWorkerAPI

    @property
    def only_call(self) -> Call:
        assert len(self.api.calls) == 1, [call.method for call in self.api.calls]
        return self.api.calls[0]


@contextlib.asynccontextmanager
async def fake_frontend() -> AsyncIterator[FakeFrontend]:
    """Serve a RecordingWorkerAPI on a free 127.0.0.1 port for the block."""
    api = RecordingWorkerAPI()
    server = grpc.aio.server()
    add_WorkerAPIServicer_to_server(api, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield FakeFrontend(f"127.0.0.1:{port}", api)
    finally:
        await server.stop(grace=None)
