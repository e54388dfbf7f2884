"""AWS Step Functions adapter, over ``boto3``'s ``stepfunctions`` client (task-token callbacks).

A state machine task with ``.waitForTaskToken`` hands out ``$$.Task.Token``; this adapter
answers it with ``SendTaskSuccess``, ``SendTaskFailure`` or ``SendTaskHeartbeat``. Tokens are
passed on as issued (1 to 2,048 characters). Step Functions has no cancel callback and no way
to name a task by IDs: both are ``invalid_request``.

One client per process, made in :meth:`StepFunctionsBackend.connect`; AWS settings come from
boto3's usual sources (``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_SFN``,
credentials chain). boto3 blocks, so every call runs in a thread of the backend's own bounded
pool. botocore's whole retry budget (attempts, connect and read timeouts, backoff) fits inside
the RPC deadline (:func:`retry_budget`), and no attempt is sent once the deadline has passed:
when the completer answers, no call of that request is still going on, so a task is never
completed after its caller was told to retry. Errors map as follows:

- ``TaskDoesNotExist``, ``TaskTimedOut``: ``activity_not_found``.
- ``InvalidToken``, ``InvalidOutput``, ``ValidationException``: ``invalid_request``.
- throttling (``ThrottlingException``, ``KmsThrottlingException``, ...): ``engine_unavailable``
  with a ``Retry-After``; any 5xx, connection refused or reset, connect timeout:
  ``engine_unavailable``.
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
import contextvars
import functools
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

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
    from collections.abc import Callable

    from mypy_boto3_stepfunctions import SFNClient
    from pydantic import JsonValue

    from completer.settings import Settings

__all__ = [
    "RetryBudget",
    "StepFunctionsBackend",
    "failure_fields",
    "retry_budget",
    "truncate_utf16",
]

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

MAX_CONCURRENT_CALLS = 32
"""Threads of the backend's own pool: calls beyond it wait for a free thread."""
START_GRACE_SECONDS = 0.5
"""A call that waited longer than this for a thread is refused (engine_unavailable)."""
CONNECT_TIMEOUT_SECONDS = 0.5
"""Longest one TCP connect may take (an unreachable endpoint answers within 2 s)."""
RETRY_BACKOFF_ALLOWANCE_SECONDS = 1.0
"""What one botocore retry may wait (standard mode: at most 1 s for throttling)."""
MIN_READ_TIMEOUT_SECONDS = 0.5
"""A retry is planned only when every attempt still gets at least this read timeout."""
THROTTLED_RETRY_AFTER_SECONDS = 2
"""``Retry-After`` when Step Functions throttles the completer."""
_PROBE_TOKEN = "activity-completer-probe"  # noqa: S105 - an invalid token, not a secret

# The latest time the running call may send an attempt (set in the pool thread).
_send_by: contextvars.ContextVar[float] = contextvars.ContextVar("completer_sfn_send_by")


class RetryBudget(NamedTuple):
    """botocore's attempts and timeouts for one RPC deadline."""

    total_max_attempts: int
    connect_timeout: float
    read_timeout: float

    @property
    def worst_case_seconds(self) -> float:
        """The longest a call can take: every attempt times out, every backoff is full."""
        attempts = self.total_max_attempts
        return (
            attempts * (self.connect_timeout + self.read_timeout)
            + (attempts - 1) * RETRY_BACKOFF_ALLOWANCE_SECONDS
        )


def retry_budget(deadline: float) -> RetryBudget:
    """Split the RPC deadline into botocore attempts so that the worst case fits inside it.

    Two attempts when the deadline leaves each a useful read timeout, else one.
    """
    connect = min(CONNECT_TIMEOUT_SECONDS, deadline / 4)
    two = (deadline - RETRY_BACKOFF_ALLOWANCE_SECONDS) / 2 - connect
    if two >= MIN_READ_TIMEOUT_SECONDS:
        return RetryBudget(2, connect, two)
    return RetryBudget(1, connect, deadline - connect)


class _SentTooLate(Exception):
    """An attempt would have been sent after the deadline."""


def _refuse_late_send(**_: Any) -> None:
    send_by = _send_by.get(None)
    if send_by is not None and time.monotonic() > send_by:
        raise _SentTooLate


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
        self.budget = retry_budget(settings.rpc_timeout_seconds)
        self._config = _config(self.budget)
        self._probe_config = _config(
            RetryBudget(1, CONNECT_TIMEOUT_SECONDS, CONNECT_TIMEOUT_SECONDS)
        )
        self._client: SFNClient | None = None
        self._probe_client: SFNClient | None = None
        self._pool: ThreadPoolExecutor | None = None

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
        if self._pool is None:
            self._pool = ThreadPoolExecutor(MAX_CONCURRENT_CALLS, "completer-sfn")
        # Loading the service model reads files: keep it off the event loop.
        self._probe_client = await asyncio.to_thread(self._new_client, self._probe_config)
        self._client = await asyncio.to_thread(self._new_client, self._config)

    def _new_client(self, config: botocore.config.Config) -> SFNClient:
        client = self._session.client("stepfunctions", region_name=self.region, config=config)
        client.meta.events.register("before-send", _refuse_late_send)
        return client

    async def close(self) -> None:
        clients = (self._client, self._probe_client)
        self._client = self._probe_client = None
        pool, self._pool = self._pool, None
        for client in clients:
            if client is not None:
                await asyncio.to_thread(client.close)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def probe(self) -> None:
        # Any answer, even InvalidToken, proves the endpoint can be reached.
        client = self._probe_client
        if client is None:
            raise InternalError("the Step Functions client is not created.")
        try:
            await self._run(client.send_task_heartbeat, taskToken=_PROBE_TOKEN)
        except botocore.exceptions.ClientError:
            return

    async def _run(self, call: Callable[..., Any], /, **kwargs: Any) -> Any:
        if self._pool is None:
            raise InternalError("the Step Functions client is not created.")
        queued = time.monotonic()
        deadline = self.settings.rpc_timeout_seconds
        task = functools.partial(_bounded, call, kwargs, queued=queued, send_by=queued + deadline)
        # Cancelling the awaiting coroutine (the client's deadline) drops a call that has
        # not started; one that has started ends within the retry budget.
        return await asyncio.get_running_loop().run_in_executor(self._pool, task)

    async def encoded_size(self, request: CompletionRequest) -> int:
        if request.action is Action.COMPLETE:
            return len(_json(request.result).encode())
        if request.action is Action.FAIL:
            assert request.error is not None
            return len(failure_fields(request.error)["cause"].encode())
        # SendTaskHeartbeat carries no details.
        return 0

    async def complete(self, target: Target, result: JsonValue) -> None:
        await self._run(
            self.client.send_task_success, taskToken=_token(target), output=_json(result)
        )

    async def fail(self, target: Target, error: ActivityError) -> None:
        await self._run(
            self.client.send_task_failure, taskToken=_token(target), **failure_fields(error)
        )

    async def heartbeat(self, target: Target, details: JsonValue) -> bool:
        await self._run(self.client.send_task_heartbeat, taskToken=_token(target))
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
        if isinstance(exc, botocore.exceptions.ReadTimeoutError | _SentTooLate):
            return EngineTimeout(
                "Step Functions did not answer within the deadline; the outcome is unknown."
            )
        if isinstance(
            exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
        ):
            return EngineUnavailable(
                f"Step Functions is unreachable ({type(exc).__name__}).", unreachable=True
            )
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            return InvalidRequest(f"Step Functions refused the request: {exc}")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return InternalError("no AWS credentials were found for the Step Functions client.")
        return InternalError(f"unexpected error from Step Functions ({type(exc).__name__}).")


def _config(budget: RetryBudget) -> botocore.config.Config:
    return botocore.config.Config(
        retries={"mode": "standard", "total_max_attempts": budget.total_max_attempts},
        connect_timeout=budget.connect_timeout,
        read_timeout=budget.read_timeout,
        max_pool_connections=MAX_CONCURRENT_CALLS,
        user_agent_extra="activity-completer",
    )


def _bounded(
    call: Callable[..., Any], kwargs: dict[str, Any], *, queued: float, send_by: float
) -> Any:
    # Runs in a pool thread: refuse to start late, and let no attempt leave after send_by.
    if time.monotonic() - queued > START_GRACE_SECONDS:
        raise EngineUnavailable(
            f"the completer has {MAX_CONCURRENT_CALLS} Step Functions calls in flight; retry.",
            retry_after=1,
        )
    _send_by.set(send_by)
    return call(**kwargs)


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
        return EngineUnavailable(
            f"Step Functions is throttling the completer ({code}).",
            retry_after=THROTTLED_RETRY_AFTER_SECONDS,
        )
    if status >= 500:
        return EngineUnavailable(f"Step Functions is unavailable ({code or status}).")
    if code.startswith("Kms"):
        return InternalError(
            f"Step Functions could not use the state machine's KMS key ({code}): {message}"
        )
    return InternalError(f"Step Functions answered {code or status}: {message}")
