"""Temporal adapter, over ``temporalio``'s :class:`~temporalio.client.AsyncActivityHandle`.

Connection settings come from ``temporalio.envconfig`` (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*``, ``TEMPORAL_PROFILE``,
``TEMPORAL_CONFIG_FILE``), exactly as the Temporal CLI and SDKs read them. Payloads are
encoded with the SDK's default data converter, or the one ``COMPLETER_DATA_CONVERTER``
names, which must match the workers' (payload codecs, encryption).
"""

from __future__ import annotations

import gc
import importlib
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import temporalio.api.common.v1
import temporalio.api.workflowservice.v1
import temporalio.client
import temporalio.converter
import temporalio.envconfig
import temporalio.exceptions
import temporalio.runtime
import temporalio.service
from temporalio.service import RPCError, RPCStatusCode

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
)
from completer.models import Action, ActivityError, CompletionRequest

if TYPE_CHECKING:
    from pydantic import JsonValue

    from completer.settings import Settings

__all__ = ["TemporalBackend", "load_data_converter"]

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"

# Temporal's answer to RespondActivityTaskCanceled before the workflow asked for it
# (server 1.32: service/history/api/respondactivitytaskcanceled).
_CANCEL_NOT_REQUESTED = "without activity being request canceled first"

# The SDK ends a call whose rpc_timeout expired with CANCELLED and this message (tonic's
# timeout layer); any other CANCELLED is the transport giving up on a closed connection.
_RPC_TIMEOUT_EXPIRED = "Timeout expired"

CONNECT_TIMEOUT_SECONDS = 1.0
"""Longest one TCP (and TLS) connect may take, on the first connect and every reconnect."""
RETRY_BUDGET_MILLIS = 1000
"""The SDK retries UNAVAILABLE and transport errors only within this time, so an unreachable
engine is answered within 2 s whatever the RPC deadline. RESOURCE_EXHAUSTED is retried once
after the SDK's throttle backoff (about 1 s), then answered ``engine_unavailable``."""
THROTTLED_RETRY_AFTER_SECONDS = 2
"""``Retry-After`` when Temporal sheds load (RESOURCE_EXHAUSTED)."""


def load_data_converter(dotted: str | None) -> temporalio.converter.DataConverter:
    """Import the data converter ``module:attribute`` names, or the SDK default.

    Raises:
        ConfigurationError: It cannot be imported or is not a DataConverter.
    """
    if dotted is None:
        return temporalio.converter.DataConverter.default
    module_name, _, attribute = dotted.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"COMPLETER_DATA_CONVERTER is invalid (got {dotted!r}): cannot import it ({exc})."
        ) from exc
    if not isinstance(value, temporalio.converter.DataConverter):
        raise ConfigurationError(
            f"COMPLETER_DATA_CONVERTER is invalid (got {dotted!r}): it is a "
            f"{type(value).__name__}, not a temporalio.converter.DataConverter."
        )
    return value


def load_connect_config() -> dict[str, Any]:
    """The ``Client.connect`` keyword arguments from Temporal's environment configuration.

    Raises:
        ConfigurationError: The profile or config file is wrong.
    """
    try:
        config = temporalio.envconfig.ClientConfig.load_client_connect_config(
            profile=os.environ.get("TEMPORAL_PROFILE") or None,
        )
    except Exception as exc:
        raise ConfigurationError(
            f"TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE / TEMPORAL_* are invalid: {exc}."
        ) from exc
    connect: dict[str, Any] = dict(config)
    connect.setdefault("target_host", DEFAULT_ADDRESS)
    connect.setdefault("namespace", DEFAULT_NAMESPACE)
    return connect


class TemporalBackend(Backend):
    """Completes Temporal activities by task token or by workflow and activity IDs."""

    name = "temporal"
    token_format = "binary"  # noqa: S105 - not a secret
    supports_ids = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.data_converter = load_data_converter(settings.data_converter)
        self.connect_config = load_connect_config()
        self._client: temporalio.client.Client | None = None
        self._runtime: temporalio.runtime.Runtime | None = None
        self._rpc_timeout = timedelta(seconds=settings.rpc_timeout_seconds)

    @property
    def client(self) -> temporalio.client.Client:
        """The connected SDK client."""
        if self._client is None:
            raise InternalError("the Temporal client is not connected.")
        return self._client

    async def connect(self) -> None:
        # An own runtime (thread pool), made in the process that serves (never inherited
        # across fork) and dropped on close while the interpreter is alive: Rust threads
        # still running at interpreter exit abort it ("PyGILState_Release ... finalizing").
        if self._runtime is None:
            self._runtime = temporalio.runtime.Runtime(
                telemetry=temporalio.runtime.TelemetryConfig(), worker_heartbeat_interval=None
            )
        self._client = await temporalio.client.Client.connect(
            runtime=self._runtime,
            **self.connect_config,
            data_converter=self.data_converter,
            identity=self.settings.identity,
            connect_timeout=timedelta(
                seconds=min(CONNECT_TIMEOUT_SECONDS, self.settings.rpc_timeout_seconds)
            ),
            # A short retry budget: an unreachable engine is answered fast (the breaker
            # then answers at once), and a throttled call is not held for the deadline.
            retry_config=temporalio.service.RetryConfig(
                max_elapsed_time_millis=RETRY_BUDGET_MILLIS, max_retries=5
            ),
        )

    async def probe(self) -> None:
        await self.client.workflow_service.get_system_info(
            temporalio.api.workflowservice.v1.GetSystemInfoRequest(),
            retry=False,
            timeout=timedelta(seconds=CONNECT_TIMEOUT_SECONDS),
        )

    async def close(self) -> None:
        # temporalio closes its channel and threads when client and runtime are dropped.
        self._client = None
        self._runtime = None
        gc.collect()

    async def encoded_size(self, request: CompletionRequest) -> int:
        values: list[Any]
        if request.action is Action.COMPLETE:
            values = [request.result]
        elif request.action is Action.FAIL:
            assert request.error is not None
            values = [request.error.details] if request.error.details is not None else []
            extra = len(request.error.message.encode()) + len((request.error.type or "").encode())
            return extra + _payloads_size(await self.data_converter.encode(values))
        else:
            values = [request.details] if request.details is not None else []
        return _payloads_size(await self.data_converter.encode(values))

    def _handle(self, target: Target) -> temporalio.client.AsyncActivityHandle:
        if isinstance(target, ActivityIds):
            return self.client.get_async_activity_handle(
                workflow_id=target.workflow_id,
                run_id=target.run_id,
                activity_id=target.activity_id,
            )
        if isinstance(target, str):
            raise InvalidRequest("Temporal task tokens must be base64-encoded bytes.")
        return self.client.get_async_activity_handle(task_token=target)

    async def complete(self, target: Target, result: JsonValue) -> None:
        await self._handle(target).complete(result, rpc_timeout=self._rpc_timeout)

    async def fail(self, target: Target, error: ActivityError) -> None:
        details = () if error.details is None else (error.details,)
        await self._handle(target).fail(
            temporalio.exceptions.ApplicationError(
                error.message, *details, type=error.type, non_retryable=error.non_retryable
            ),
            rpc_timeout=self._rpc_timeout,
        )

    async def heartbeat(self, target: Target, details: JsonValue) -> bool:
        args = () if details is None else (details,)
        try:
            await self._handle(target).heartbeat(*args, rpc_timeout=self._rpc_timeout)
        except temporalio.client.AsyncActivityCancelledError as exc:
            # Also raised for a paused or reset activity: only a real request counts.
            return exc.details.cancel_requested if exc.details is not None else True
        return False

    async def cancel(self, target: Target, details: JsonValue) -> None:
        args = () if details is None else (details,)
        await self._handle(target).report_cancellation(*args, rpc_timeout=self._rpc_timeout)

    def translate_error(self, exc: BaseException) -> CompleterError:
        if isinstance(exc, CompleterError):
            return exc
        if isinstance(exc, RPCError):
            return _translate_rpc_error(exc)
        if isinstance(exc, RuntimeError) and "connect" in str(exc).lower():
            # temporalio raises RuntimeError("Failed client connect: ...") when unreachable.
            return EngineUnavailable(
                f"Temporal at {self.connect_config['target_host']} is unreachable.",
                unreachable=True,
            )
        return InternalError(f"unexpected error from Temporal ({type(exc).__name__}).")


def _translate_rpc_error(exc: RPCError) -> CompleterError:
    status, message = exc.status, exc.message
    if status == RPCStatusCode.NOT_FOUND:
        return ActivityNotFound(
            "the activity is not waiting: unknown, already completed, timed out, or its "
            "workflow is closed."
        )
    if status == RPCStatusCode.INVALID_ARGUMENT and _CANCEL_NOT_REQUESTED in message:
        return Conflict("the workflow has not requested cancellation of this activity.")
    if status == RPCStatusCode.FAILED_PRECONDITION:
        return Conflict(f"the activity is not in a state for this action: {message}")
    if status == RPCStatusCode.INVALID_ARGUMENT:
        return InvalidRequest(f"Temporal refused the request: {message}")
    if status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return EngineUnavailable(
            f"Temporal is shedding load: {message}", retry_after=THROTTLED_RETRY_AFTER_SECONDS
        )
    if status == RPCStatusCode.UNAVAILABLE:
        return EngineUnavailable(f"Temporal is unavailable: {message}", unreachable=True)
    if status == RPCStatusCode.DEADLINE_EXCEEDED or (
        status == RPCStatusCode.CANCELLED and _RPC_TIMEOUT_EXPIRED in message
    ):
        return EngineTimeout("Temporal did not answer within the deadline; the outcome is unknown.")
    if status == RPCStatusCode.CANCELLED or (
        status == RPCStatusCode.UNKNOWN and "transport" in message.lower()
    ):
        # A connection closed or reset under the call (frontend restart, balancer drain).
        return EngineUnavailable("the connection to Temporal was lost.", unreachable=True)
    if status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
        return InternalError(
            f"Temporal refused the completer's credentials ({status.name}); check "
            "TEMPORAL_API_KEY / TLS settings."
        )
    return InternalError(f"Temporal answered {status.name}.")


def _payloads_size(payloads: list[Any]) -> int:
    # The server measures the Payloads message (with its framing) against its blob limit.
    return int(temporalio.api.common.v1.Payloads(payloads=payloads).ByteSize())
