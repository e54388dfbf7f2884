"""Cadence adapter, over the gRPC ``WorkerAPI`` of ``cadence-python-client`` (``cadence.api.v1``).

One ``grpc.aio`` channel to ``CADENCE_ADDRESS`` per process (TLS with ``CADENCE_TLS*``),
carrying the yarpc headers the Cadence frontend routes on. :meth:`CadenceBackend.connect`
asks ``DescribeDomain`` once, so a wrong ``CADENCE_DOMAIN`` stops the start. Values are
written as one JSON value each, which Go, Java and Python workers all decode.

What the Cadence server answers, and what it means here (see docs/engines/cadence.md; the
server files are github.com/cadence-workflow/cadence):

========================================================  ========================
gRPC status and message                                   public code
========================================================  ========================
NOT_FOUND (EntityNotExists; WorkflowExecutionAlreadyCompl.)  ``activity_not_found``
INVALID_ARGUMENT "Cannot locate Activity ScheduleID"      ``activity_not_found``
INVALID_ARGUMENT (any other BadRequest)                   ``invalid_request``
UNKNOWN "... Unable to add ActivityTaskCanceled event ..." ``conflict``
UNKNOWN with a JSON error (the token)                     ``invalid_request``
UNKNOWN "... Shutting down" / "... Shard is not owned ..." ``engine_unavailable``
RESOURCE_EXHAUSTED, UNAVAILABLE, ABORTED, DomainNotActive ``engine_unavailable``
DEADLINE_EXCEEDED, CANCELLED                              ``engine_timeout``
anything else                                             ``internal``
========================================================  ========================

The frontend's metered wrapper (``service/frontend/wrappers/metered/metered.go``) rewrites
every ``InternalServiceError`` into an untyped error, so those reach a client as UNKNOWN
with the text ``cadence internal error, msg: ...``; the messages above are matched for that.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from cadence.api.v1 import common_pb2, error_pb2, service_domain_pb2, service_worker_pb2
from cadence.api.v1.service_domain_pb2_grpc import DomainAPIStub
from cadence.api.v1.service_worker_pb2_grpc import WorkerAPIStub
from grpc_status import rpc_status

from completer.backends.base import ActivityIds, Backend, Target
from completer.errors import (
    ActivityNotFound,
    CompleterError,
    ConfigurationError,
    Conflict,
    EngineTimeout,
    EngineUnavailable,
    InternalError,
    InvalidRequest,
    PayloadTooLarge,
)
from completer.models import Action, ActivityError, CompletionRequest

if TYPE_CHECKING:
    from pydantic import JsonValue

    from completer.settings import Settings

__all__ = [
    "GRPC_MAX_MESSAGE_BYTES",
    "CadenceBackend",
    "UnknownDomain",
    "check_token",
    "encode_failure",
]

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

# The gRPC message limit Cadence's config calls its default (common/config/config.go
# ``grpcMaxMsgSize``, "default (4MB)"; yarpc's own is 64 MiB): never send more.
GRPC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# limit.identityLength's default (common/dynamicconfig/dynamicproperties/constants.go).
IDENTITY_MAX_BYTES = 1000

# The task token's JSON fields and their Go types (common/taskTokenSerializerInterfaces.go).
_TOKEN_STRINGS = ("domainId", "workflowId", "workflowType", "runId", "activityId", "activityType")
_TOKEN_INTEGERS = ("scheduleId", "scheduleAttempt")
_INT64 = range(-(2**63), 2**63)

# Messages of the Cadence server matched below (file: where the server writes them).
_CANCEL_NOT_REQUESTED = (
    "Unable to add ActivityTaskCanceled event to history"  # respond_activity_task_canceled.go
)
_NOT_PENDING_BY_ID = "Cannot locate Activity ScheduleID"  # engineimpl/history_engine.go
_SHUTTING_DOWN = "Shutting down"  # frontend/validate/errors.go ErrShuttingDown
_SHARD_MOVED = "Shard is not owned by host"  # history/shard/controller.go
# encoding/json's errors, which the frontend returns for a token it cannot parse.
_JSON_ERRORS = ("invalid character", "unexpected end of JSON input", "json: ")

# Failure reasons the Go client keeps for itself (internal/error.go errReason*).
_GO_RESERVED = "cadenceInternal:"
# A fully qualified Java class name, e.g. com.example.RejectedException.
_JAVA_CLASS = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+")

_UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
_TIMEOUT_CODES = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


def _encode(value: JsonValue) -> bytes:
    # One JSON value, as Cadence's data converters write a single value: Go's json.Decoder,
    # Java's JsonDataConverter (one type: no array) and the Python client all read it.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def encode_failure(error: ActivityError) -> common_pb2.Failure:
    """The Cadence ``Failure`` for an error object (see docs/engines/cadence.md, Failures).

    ``reason`` is the error type, else its message: what a workflow sees as
    ``CustomError.Reason()`` and what its retry policy's ``NonRetriableErrorReasons`` match.
    ``details`` is one JSON object ``{"message": ..., "details": ...}``; when the type is a
    Java class name, also ``class`` and ``detailMessage``, which a Java workflow needs to
    rebuild that exception. ``non_retryable`` sets the FATAL failure category, which
    Cadence records but does not act on.
    """
    body: dict[str, JsonValue] = {"message": error.message, "details": error.details}
    if error.type and _JAVA_CLASS.fullmatch(error.type):
        # Java's SyncDecisionContext loads the reason as a class and decodes the details
        # into it; CustomThrowableTypeAdapter.read requires "class", Throwable holds
        # its message in "detailMessage".
        body |= {"class": error.type, "detailMessage": error.message}
    failure = common_pb2.Failure(reason=error.type or error.message, details=_encode(body))
    if error.non_retryable:
        failure.options.CopyFrom(
            common_pb2.FailureOptions(failure_category=common_pb2.FAILURE_CATEGORY_FATAL)
        )
    return failure


def _payload(value: JsonValue) -> common_pb2.Payload:
    return common_pb2.Payload(data=_encode(value))


def _details(value: JsonValue) -> common_pb2.Payload:
    # No details is an empty payload, as the Cadence Python client sends for none.
    return common_pb2.Payload() if value is None else _payload(value)


def check_token(token: bytes) -> bytes:
    """Refuse, before any call, a token the Cadence server's JSON serializer would refuse.

    Raises:
        InvalidRequest: The token is not a Cadence task token.
    """
    try:
        value = json.loads(token.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidRequest("task_token is not a Cadence task token (not JSON).") from None
    if not isinstance(value, dict):
        raise InvalidRequest("task_token is not a Cadence task token (not a JSON object).")
    # encoding/json matches field names case-insensitively; a null leaves a field unset.
    fields = {key.lower(): item for key, item in value.items() if item is not None}
    for name in _TOKEN_STRINGS:
        if not isinstance(fields.get(name.lower(), ""), str):
            raise InvalidRequest(f"task_token's {name} is not a string.")
    for name in _TOKEN_INTEGERS:
        item = fields.get(name.lower(), 0)
        if isinstance(item, bool) or not isinstance(item, int) or item not in _INT64:
            raise InvalidRequest(f"task_token's {name} is not a 64-bit integer.")
    if not fields.get("domainid") or not fields.get("workflowid"):
        raise InvalidRequest("task_token names no Cadence domain or workflow.")
    _check_run_id(fields.get("runid", ""), "task_token's runId")
    return token


def _check_run_id(run_id: str, what: str) -> None:
    # The history service refuses "RunID is not valid UUID." (execution/cache.go).
    if not run_id:
        return
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise InvalidRequest(f"{what} must be a UUID, as Cadence run IDs are.") from None


class UnknownDomain(ConfigurationError, InternalError):
    """``CADENCE_DOMAIN`` names no domain of the cluster.

    A configuration error at start; should it surface while serving a request (the first
    connect of a lazy client), it is an ``internal`` error, retried until someone fixes it.
    """


def _read(path: str, variable: str, *, key: bool = False) -> bytes:
    """A PEM file's bytes, checked now so a wrong file stops the start, not a handshake."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{variable} names a file that cannot be read: {exc}.") from None
    try:
        if key:
            load_pem_private_key(data, password=None)
        else:
            x509.load_pem_x509_certificates(data)
    except (ValueError, TypeError):
        what = "an unencrypted PEM private key" if key else "PEM certificates"
        raise ConfigurationError(f"{variable} must name a file of {what}.") from None
    return data


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
        if len(self.identity.encode()) > IDENTITY_MAX_BYTES:
            # The frontend refuses every completion with "Identity length exceeds limit."
            raise ConfigurationError(
                f"COMPLETER_IDENTITY is over {IDENTITY_MAX_BYTES} bytes, Cadence's default "
                "limit.identityLength; use a shorter identity."
            )
        self._timeout = settings.rpc_timeout_seconds
        self._credentials, self._options = _tls(settings)
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
        """Open the channel and check that ``CADENCE_DOMAIN`` exists (``DescribeDomain``).

        Raises:
            ConfigurationError: The domain does not exist in this Cadence cluster.
            EngineUnavailable: Cadence cannot be reached; the next call tries again.
        """
        if self._channel is not None:
            return
        if self._credentials is None:
            channel = grpc.aio.insecure_channel(self.address)
        else:
            channel = grpc.aio.secure_channel(self.address, self._credentials, self._options)
        try:
            await DomainAPIStub(channel).DescribeDomain(
                service_domain_pb2.DescribeDomainRequest(name=self.domain),
                timeout=self._timeout,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            await channel.close()
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise UnknownDomain(
                    f"CADENCE_DOMAIN is {self.domain!r}, a domain the Cadence cluster at "
                    f"{self.address} does not have."
                ) from None
            raise self.translate_error(exc) from exc
        except BaseException:
            await channel.close()
            raise
        self._channel = channel
        self._stub = WorkerAPIStub(channel)

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def resolve_target(self, request: CompletionRequest) -> Target:
        if request.error is not None and (request.error.type or "").startswith(_GO_RESERVED):
            # The Go client reads these reasons as its own timeout/panic/cancel errors and
            # panics on details it did not write (internal/internal_utils.go constructError).
            raise InvalidRequest(f"error.type must not start with {_GO_RESERVED!r} with Cadence.")
        target = super().resolve_target(request)
        if isinstance(target, ActivityIds):
            _check_run_id(target.run_id or "", "run_id")
            return target
        if isinstance(target, str):
            raise InvalidRequest("Cadence task tokens must be base64-encoded bytes.")
        return check_token(target)

    async def encoded_size(self, request: CompletionRequest) -> int:
        # What the frontend measures against the domain's blob limit (api/handler.go:
        # the result, the failure's details, the heartbeat or cancel details).
        if request.action is Action.COMPLETE:
            return len(_encode(request.result))
        if request.action is Action.FAIL:
            assert request.error is not None
            return len(encode_failure(request.error).details)
        return len(_details(request.details).data)

    def _execution(self, target: ActivityIds) -> common_pb2.WorkflowExecution:
        return common_pb2.WorkflowExecution(
            workflow_id=target.workflow_id, run_id=target.run_id or ""
        )

    async def _call(self, method: str, request: Any) -> Any:
        size = request.ByteSize()
        if size > GRPC_MAX_MESSAGE_BYTES:
            raise PayloadTooLarge(
                f"the request to Cadence is {size} bytes, over the {GRPC_MAX_MESSAGE_BYTES}-byte "
                "gRPC message limit; the activity is still waiting. Send a reference instead."
            )
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


def _tls(settings: Settings) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, str]]]:
    """Channel credentials from ``CADENCE_TLS*``; none when TLS is not asked for."""
    paths = (
        settings.cadence_tls_server_ca_cert_path,
        settings.cadence_tls_client_cert_path,
        settings.cadence_tls_client_key_path,
    )
    wanted = settings.cadence_tls
    if wanted is False or (
        wanted is None and not any(paths) and not settings.cadence_tls_server_name
    ):
        if wanted is False and any(paths):
            raise ConfigurationError(
                "CADENCE_TLS is false, yet CADENCE_TLS_* files are set; unset one or the other."
            )
        return None, []
    ca, cert, key = paths
    if bool(cert) != bool(key):
        raise ConfigurationError(
            "CADENCE_TLS_CLIENT_CERT_PATH and CADENCE_TLS_CLIENT_KEY_PATH go together; "
            "set both or neither."
        )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CADENCE_TLS_SERVER_CA_CERT_PATH") if ca else None,
        private_key=_read(key, "CADENCE_TLS_CLIENT_KEY_PATH", key=True) if key else None,
        certificate_chain=_read(cert, "CADENCE_TLS_CLIENT_CERT_PATH") if cert else None,
    )
    options = []
    if settings.cadence_tls_server_name:
        options.append(("grpc.ssl_target_name_override", settings.cadence_tls_server_name))
    return credentials, options


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
    message = (exc.details() or "")[:500]
    cadence_error = _cadence_error(exc)
    if code == grpc.StatusCode.NOT_FOUND or (
        code == grpc.StatusCode.INVALID_ARGUMENT and _NOT_PENDING_BY_ID in message
    ):
        return ActivityNotFound(
            "the activity is not waiting: unknown, already completed, timed out, or its "
            f"workflow is closed ({cadence_error or code.name}: {message})."
        )
    if cadence_error == "DomainNotActiveError":
        return EngineUnavailable(
            f"the Cadence domain {domain!r} is not active in the cluster at {address} "
            f"(failover in progress or another cluster is active): {message}"
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(f"Cadence refused the request (BadRequestError): {message}")
    if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
        if _CANCEL_NOT_REQUESTED in message:
            return Conflict(
                "the activity cannot be reported cancelled: its workflow has not requested "
                "cancellation (a heartbeat answers cancel_requested: true once it has)."
            )
        if message.startswith(_JSON_ERRORS):
            return InvalidRequest(f"Cadence could not read the task token: {message}")
        if _SHUTTING_DOWN in message or _SHARD_MOVED in message:
            return EngineUnavailable(f"Cadence at {address} is unavailable: {message}")
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
