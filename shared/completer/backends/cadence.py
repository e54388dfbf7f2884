"""Cadence adapter, over the gRPC ``WorkerAPI`` of ``cadence-python-client`` (``cadence.api.v1``).

One ``grpc.aio`` channel to ``CADENCE_ADDRESS`` per process, carrying the yarpc headers the
Cadence frontend routes on. Payloads are encoded with the client's default data converter:
JSON text, several values separated by a space, which Go, Java and Python workers decode.

Cadence's errors travel as a gRPC status with a ``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer whose first detail names the Cadence error
(``uber.cadence.api.v1.EntityNotExistsError``, ...); :meth:`CadenceBackend.translate_error`
maps them, following the server's own mapping (``common/types/mapper/proto/errors.go``):

=============================================  ====================  ======================
gRPC status (+ detail)                         Cadence error         public code
=============================================  ====================  ======================
NOT_FOUND (+ EntityNotExists / AlreadyCompl.)  EntityNotExists...    ``activity_not_found``
INVALID_ARGUMENT (no detail)                   BadRequestError       ``invalid_request``
RESOURCE_EXHAUSTED (+ ServiceBusy / Limit...)  ServiceBusy, Limit..  ``engine_unavailable``
FAILED_PRECONDITION + DomainNotActive          DomainNotActiveError  ``engine_unavailable``
UNAVAILABLE, ABORTED                           unreachable, shard    ``engine_unavailable``
DEADLINE_EXCEEDED, CANCELLED                   deadline              ``engine_timeout``
anything else                                  InternalServiceError  ``internal``
=============================================  ====================  ======================

Cadence, unlike Temporal, accepts ``RespondActivityTaskCanceled`` before the workflow asked
for cancellation (the server does not check), so ``cancel`` never answers ``conflict`` here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from cadence.api.v1 import common_pb2, error_pb2, service_worker_pb2
from cadence.api.v1.service_worker_pb2_grpc import WorkerAPIStub
from cadence.data_converter import DefaultDataConverter
from grpc_status import rpc_status

from completer.backends.base import ActivityIds, Backend, Target
from completer.errors import (
    ActivityNotFound,
    CompleterError,
    ConfigurationError,
    EngineTimeout,
    EngineUnavailable,
    InternalError,
    InvalidRequest,
)
from completer.models import Action, ActivityError, CompletionRequest

if TYPE_CHECKING:
    from pydantic import JsonValue

    from completer.settings import Settings

__all__ = ["CadenceBackend", "encode_failure"]

# yarpc transport headers the Cadence frontend requires on every gRPC call
# (cadence-python-client cadence/_internal/rpc/yarpc.py; the Go client sends the same).
SERVICE_HEADER = "rpc-service"
CALLER_HEADER = "rpc-caller"
ENCODING_HEADER = "rpc-encoding"
CALLER_TYPE_HEADER = "cadence-caller-type"
FRONTEND_SERVICE = "cadence-frontend"
CALLER_NAME = "activity-completer"
ENCODING_PROTO = "proto"
CALLER_TYPE_SDK = "sdk"

_UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    # ShardOwnershipLost and friends: the Cadence clients retry these.
    grpc.StatusCode.ABORTED,
}
_TIMEOUT_CODES = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}

_data_converter = DefaultDataConverter()


def _encode(values: list[Any]) -> bytes:
    data: bytes = _data_converter.to_data(values).data
    return data


def encode_failure(error: ActivityError) -> common_pb2.Failure:
    """The Cadence ``Failure`` for an error object (CONTRACT §2).

    ``reason`` is the error type, else its message (what a workflow's retry policy and
    ``CustomError.Reason()`` see). ``details`` are the error's details and then its
    message, as two JSON values the way Cadence data converters write several values:
    a Go workflow reads them with ``customErr.Details(&details, &message)``.
    ``non_retryable`` sets the FATAL failure category, which stops retries on servers
    that know it.
    """
    failure = common_pb2.Failure(
        reason=error.type or error.message,
        details=_encode([error.details, error.message]),
    )
    if error.non_retryable:
        failure.options.CopyFrom(
            common_pb2.FailureOptions(failure_category=common_pb2.FAILURE_CATEGORY_FATAL)
        )
    return failure


def _payload(value: JsonValue) -> common_pb2.Payload:
    return common_pb2.Payload(data=_encode([value]))


def _details(value: JsonValue) -> common_pb2.Payload:
    # No details is an empty payload, as the Cadence Python client sends for none.
    return common_pb2.Payload() if value is None else _payload(value)


class CadenceBackend(Backend):
    """Completes Cadence activities by task token or by workflow and activity IDs."""

    name = "cadence"
    token_format = "binary"  # noqa: S105 - not a secret
    supports_ids = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.cadence_domain is None:
            raise ConfigurationError(
                "CADENCE_DOMAIN is required when COMPLETER_BACKEND is 'cadence'."
            )
        self.address = settings.cadence_address
        self.domain = settings.cadence_domain
        self.identity = settings.identity
        self._timeout = settings.rpc_timeout_seconds
        self._metadata = (
            (SERVICE_HEADER, FRONTEND_SERVICE),
            (CALLER_HEADER, CALLER_NAME),
            (ENCODING_HEADER, ENCODING_PROTO),
            (CALLER_TYPE_HEADER, CALLER_TYPE_SDK),
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    @property
    def stub(self) -> Any:
        """The ``WorkerAPIStub`` over this process's one channel."""
        if self._stub is None:
            raise InternalError("the Cadence channel is not open.")
        return self._stub

    async def connect(self) -> None:
        if self._channel is not None:
            return
        self._channel = grpc.aio.insecure_channel(self.address)
        self._stub = WorkerAPIStub(self._channel)
        # Start connecting now so a warm instance's first request finds the channel ready;
        # a down engine is reported by the first call, not here.
        self._channel.get_state(try_to_connect=True)

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def encoded_size(self, request: CompletionRequest) -> int:
        if request.action is Action.COMPLETE:
            return len(_encode([request.result]))
        if request.action is Action.FAIL:
            assert request.error is not None
            failure = encode_failure(request.error)
            return len(failure.details) + len(failure.reason.encode())
        return len(_details(request.details).data)

    def _execution(self, target: ActivityIds) -> common_pb2.WorkflowExecution:
        return common_pb2.WorkflowExecution(
            workflow_id=target.workflow_id, run_id=target.run_id or ""
        )

    async def _call(self, method: str, request: Any) -> Any:
        rpc = getattr(self.stub, method)
        return await rpc(request, timeout=self._timeout, metadata=self._metadata)

    async def complete(self, target: Target, result: JsonValue) -> None:
        payload = _payload(result)
        if isinstance(target, ActivityIds):
            await self._call(
                "RespondActivityTaskCompletedByID",
                service_worker_pb2.RespondActivityTaskCompletedByIDRequest(
                    domain=self.domain,
                    workflow_execution=self._execution(target),
                    activity_id=target.activity_id,
                    result=payload,
                    identity=self.identity,
                ),
            )
            return
        await self._call(
            "RespondActivityTaskCompleted",
            service_worker_pb2.RespondActivityTaskCompletedRequest(
                task_token=_token(target), result=payload, identity=self.identity
            ),
        )

    async def fail(self, target: Target, error: ActivityError) -> None:
        failure = encode_failure(error)
        if isinstance(target, ActivityIds):
            await self._call(
                "RespondActivityTaskFailedByID",
                service_worker_pb2.RespondActivityTaskFailedByIDRequest(
                    domain=self.domain,
                    workflow_execution=self._execution(target),
                    activity_id=target.activity_id,
                    failure=failure,
                    identity=self.identity,
                ),
            )
            return
        await self._call(
            "RespondActivityTaskFailed",
            service_worker_pb2.RespondActivityTaskFailedRequest(
                task_token=_token(target), failure=failure, identity=self.identity
            ),
        )

    async def heartbeat(self, target: Target, details: JsonValue) -> bool:
        payload = _details(details)
        if isinstance(target, ActivityIds):
            response = await self._call(
                "RecordActivityTaskHeartbeatByID",
                service_worker_pb2.RecordActivityTaskHeartbeatByIDRequest(
                    domain=self.domain,
                    workflow_execution=self._execution(target),
                    activity_id=target.activity_id,
                    details=payload,
                    identity=self.identity,
                ),
            )
        else:
            response = await self._call(
                "RecordActivityTaskHeartbeat",
                service_worker_pb2.RecordActivityTaskHeartbeatRequest(
                    task_token=_token(target), details=payload, identity=self.identity
                ),
            )
        return bool(response.cancel_requested)

    async def cancel(self, target: Target, details: JsonValue) -> None:
        payload = _details(details)
        if isinstance(target, ActivityIds):
            await self._call(
                "RespondActivityTaskCanceledByID",
                service_worker_pb2.RespondActivityTaskCanceledByIDRequest(
                    domain=self.domain,
                    workflow_execution=self._execution(target),
                    activity_id=target.activity_id,
                    details=payload,
                    identity=self.identity,
                ),
            )
            return
        await self._call(
            "RespondActivityTaskCanceled",
            service_worker_pb2.RespondActivityTaskCanceledRequest(
                task_token=_token(target), details=payload, identity=self.identity
            ),
        )

    def translate_error(self, exc: BaseException) -> CompleterError:
        if isinstance(exc, CompleterError):
            return exc
        if isinstance(exc, grpc.aio.AioRpcError):
            return _translate_rpc_error(exc, address=self.address, domain=self.domain)
        return InternalError(f"unexpected error from Cadence ({type(exc).__name__}).")


def _token(target: bytes | str) -> bytes:
    if isinstance(target, str):
        raise InvalidRequest("Cadence task tokens must be base64-encoded bytes.")
    return target


def _cadence_error(exc: grpc.aio.AioRpcError) -> str | None:
    """The name of the Cadence error packed in the status details, if any."""
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type] # AioRpcError is a Call
    except ValueError:
        # The trailer disagrees with the status line: classify by the code alone.
        return None
    if status is None or not status.details:
        return None
    detail = status.details[0]
    for message in _KNOWN_ERRORS:
        if detail.Is(message.DESCRIPTOR):
            return str(message.DESCRIPTOR.name)
    return str(detail.TypeName())


_KNOWN_ERRORS = (
    error_pb2.EntityNotExistsError,
    error_pb2.WorkflowExecutionAlreadyCompletedError,
    error_pb2.DomainNotActiveError,
    error_pb2.ServiceBusyError,
    error_pb2.LimitExceededError,
    error_pb2.ClientVersionNotSupportedError,
    error_pb2.FeatureNotEnabledError,
    error_pb2.StickyWorkerUnavailableError,
)


def _translate_rpc_error(exc: grpc.aio.AioRpcError, *, address: str, domain: str) -> CompleterError:
    code = exc.code()
    message = exc.details() or ""
    cadence_error = _cadence_error(exc)
    if code == grpc.StatusCode.NOT_FOUND:
        return ActivityNotFound(
            "the activity is not waiting: unknown, already completed, timed out, or its "
            f"workflow is closed ({cadence_error or 'NOT_FOUND'}: {message})."
        )
    if cadence_error == "DomainNotActiveError":
        return EngineUnavailable(
            f"the Cadence domain {domain!r} is not active in the cluster at {address} "
            f"(failover in progress or another cluster is active): {message}"
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(f"Cadence refused the request (BadRequestError): {message}")
    if code in _UNAVAILABLE_CODES:
        what = cadence_error or code.name
        return EngineUnavailable(f"Cadence at {address} is unavailable ({what}): {message}")
    if code in _TIMEOUT_CODES:
        return EngineTimeout("Cadence did not answer within the deadline; the outcome is unknown.")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return InternalError(
            f"Cadence refused the completer's credentials ({code.name}): {message}"
        )
    return InternalError(f"Cadence answered {cadence_error or code.name}: {message}")
