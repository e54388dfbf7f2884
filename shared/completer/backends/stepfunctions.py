"""AWS Step Functions adapter, over ``boto3``'s ``stepfunctions`` client (task-token callbacks).

A state machine task with ``.waitForTaskToken`` hands out ``$$.Task.Token``; this adapter
answers it with ``SendTaskSuccess``, ``SendTaskFailure`` or ``SendTaskHeartbeat``. Tokens are
passed on as issued (1 to 2,048 characters). Step Functions has no cancel callback and no way
to name a task by IDs: both are ``invalid_request``.

One client per process, made in :meth:`StepFunctionsBackend.connect` with the standard retry
mode and the RPC deadline as connect and read timeouts; AWS settings come from boto3's usual
sources (``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_SFN``, credentials chain).
boto3 blocks, so every call runs in a worker thread. Errors map as follows:

- ``TaskDoesNotExist``, ``TaskTimedOut``: ``activity_not_found``.
- ``InvalidToken``, ``InvalidOutput``, ``ValidationException``: ``invalid_request``.
- throttling (``ThrottlingException``, ``KmsThrottlingException``, ...), any 5xx, connection
  refused or reset: ``engine_unavailable``.
- read timeout: ``engine_timeout``.
- ``KmsAccessDeniedException``, ``KmsInvalidStateException``, refused credentials, anything
  else: ``internal``.

KMS errors other than throttling are ``internal`` (transient): the state machine's customer
managed key is disabled, pending deletion, or not usable by the completer's role. That is an
operator's fix, not a bad request, and the callback succeeds once it is fixed, so the event is
kept for redelivery rather than dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING

import boto3
import botocore.config
import botocore.exceptions

from completer.backends.base import Backend, Target
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
    from mypy_boto3_stepfunctions import SFNClient
    from pydantic import JsonValue

    from completer.settings import Settings

__all__ = ["StepFunctionsBackend", "failure_fields", "truncate_utf16"]

MAX_ERROR_CHARS = 256
"""Longest ``error`` SendTaskFailure accepts (AWS API reference)."""
MAX_CAUSE_CHARS = 32_768
"""Longest ``cause`` SendTaskFailure accepts (AWS API reference)."""

_NOT_FOUND = {"TaskDoesNotExist", "TaskTimedOut"}
_BAD_REQUEST = {"InvalidToken", "InvalidOutput", "ValidationException"}
# Throttling codes botocore's standard retry mode also treats as throttling.
_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "KmsThrottlingException",
}

_CANCEL_MESSAGE = (
    "Step Functions has no cancel callback for a task token: a waiting task ends only "
    "with success, failure, its timeout, or by stopping its execution (StopExecution). "
    "Send 'fail' to end the task with an error instead."
)
_IDS_MESSAGE = (
    "Step Functions names a waiting task only by its task token ($$.Task.Token), not by "
    "workflow_id + activity_id; send the task_token the state machine handed out."
)


def _json(value: JsonValue) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def truncate_utf16(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-16 code units without splitting a character.

    AWS counts string lengths in UTF-16 code units (a character outside the Basic
    Multilingual Plane, such as an emoji, counts two), so cutting by code points alone
    could still be too long; a cut never falls inside a character.
    """
    if len(text) <= limit // 2:
        return text
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return text[:index]
    return text


def failure_fields(error: ActivityError) -> dict[str, str]:
    """The ``error`` and ``cause`` of SendTaskFailure for an error object.

    ``error`` is the error type, else its message (Catch and Retry match on it); ``cause``
    is a JSON object ``{"message": ..., "details": ...}`` that a state machine can read
    with ``States.StringToJson($.Cause)``. Both are truncated to Step Functions' limits.
    """
    cause = _json({"message": error.message, "details": error.details})
    return {
        "error": truncate_utf16(error.type or error.message, MAX_ERROR_CHARS),
        "cause": truncate_utf16(cause, MAX_CAUSE_CHARS),
    }


class StepFunctionsBackend(Backend):
    """Answers Step Functions ``.waitForTaskToken`` tasks by their task token."""

    name = "stepfunctions"
    token_format = "text"  # noqa: S105 - not a secret
    max_token_chars = 2048
    supports_ids = False
    supported_actions = frozenset({Action.COMPLETE, Action.FAIL, Action.HEARTBEAT})

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        try:
            session = boto3.session.Session()
        except botocore.exceptions.BotoCoreError as exc:
            raise ConfigurationError(f"the AWS configuration is invalid: {exc}.") from exc
        # boto3 reads AWS_DEFAULT_REGION; Lambda and the AWS CLI also set AWS_REGION.
        self.region = session.region_name or os.environ.get("AWS_REGION") or None
        if self.region is None:
            raise ConfigurationError(
                "AWS_REGION is not set: the Step Functions backend needs the region of the "
                "state machines (AWS_REGION or AWS_DEFAULT_REGION)."
            )
        self._session = session
        self._config = botocore.config.Config(
            retries={"mode": "standard"},
            connect_timeout=settings.rpc_timeout_seconds,
            read_timeout=settings.rpc_timeout_seconds,
            user_agent_extra="activity-completer",
        )
        self._client: SFNClient | None = None

    @property
    def client(self) -> SFNClient:
        """The boto3 ``stepfunctions`` client of this process."""
        if self._client is None:
            raise InternalError("the Step Functions client is not created.")
        return self._client

    def resolve_target(self, request: CompletionRequest) -> Target:
        if request.action in self.supported_actions and request.task_token is None:
            raise InvalidRequest(_IDS_MESSAGE)
        return super().resolve_target(request)

    def unsupported_action_message(self, action: Action) -> str:
        if action is Action.CANCEL:
            return _CANCEL_MESSAGE
        return super().unsupported_action_message(action)

    async def connect(self) -> None:
        if self._client is not None:
            return
        # Loading the service model reads files: keep it off the event loop.
        self._client = await asyncio.to_thread(
            self._session.client, "stepfunctions", region_name=self.region, config=self._config
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    async def encoded_size(self, request: CompletionRequest) -> int:
        if request.action is Action.COMPLETE:
            return len(_json(request.result).encode())
        if request.action is Action.FAIL:
            assert request.error is not None
            return len(failure_fields(request.error)["cause"].encode())
        # SendTaskHeartbeat carries no details.
        return 0

    async def complete(self, target: Target, result: JsonValue) -> None:
        await asyncio.to_thread(
            self.client.send_task_success, taskToken=_token(target), output=_json(result)
        )

    async def fail(self, target: Target, error: ActivityError) -> None:
        await asyncio.to_thread(
            self.client.send_task_failure, taskToken=_token(target), **failure_fields(error)
        )

    async def heartbeat(self, target: Target, details: JsonValue) -> bool:
        await asyncio.to_thread(self.client.send_task_heartbeat, taskToken=_token(target))
        # Step Functions never asks a task to cancel: a stopped execution's token answers
        # TaskTimedOut or TaskDoesNotExist (activity_not_found) instead.
        return False

    async def cancel(self, target: Target, details: JsonValue) -> None:
        raise InvalidRequest(_CANCEL_MESSAGE)

    def translate_error(self, exc: BaseException) -> CompleterError:
        if isinstance(exc, CompleterError):
            return exc
        if isinstance(exc, botocore.exceptions.ClientError):
            return _translate_client_error(exc)
        if isinstance(exc, botocore.exceptions.ReadTimeoutError):
            return EngineTimeout(
                "Step Functions did not answer within the deadline; the outcome is unknown."
            )
        if isinstance(
            exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
        ):
            return EngineUnavailable(f"Step Functions is unreachable ({type(exc).__name__}).")
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            return InvalidRequest(f"Step Functions refused the request: {exc}")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return InternalError("no AWS credentials were found for the Step Functions client.")
        return InternalError(f"unexpected error from Step Functions ({type(exc).__name__}).")


def _token(target: Target) -> str:
    if not isinstance(target, str):
        raise InvalidRequest("Step Functions task tokens are text, passed on as issued.")
    return target


def _translate_client_error(exc: botocore.exceptions.ClientError) -> CompleterError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or code
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in _NOT_FOUND:
        return ActivityNotFound(
            f"the task is not waiting: its token is unknown, already answered, timed out, "
            f"or its execution has stopped ({code})."
        )
    if code in _BAD_REQUEST:
        return InvalidRequest(f"Step Functions refused the request ({code}): {message}")
    if code in _THROTTLED:
        return EngineUnavailable(f"Step Functions is throttling the completer ({code}).")
    if status >= 500:
        return EngineUnavailable(f"Step Functions is unavailable ({code or status}).")
    if code.startswith("Kms"):
        return InternalError(
            f"Step Functions could not use the state machine's KMS key ({code}): {message}"
        )
    return InternalError(f"Step Functions answered {code or status}: {message}")
