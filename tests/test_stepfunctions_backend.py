"""The Step Functions backend: real HTTP against moto in server mode, and each AWS error code.

moto executes state machines when its ``stepfunctions.execute_state_machine`` option is on:
a ``.waitForTaskToken`` SQS task then hands out a real task token and waits for the callback.
Error codes moto cannot produce are answered by botocore's Stubber on the backend's own client.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from completer import errors
from completer.backends.stepfunctions import (
    MAX_CAUSE_CHARS,
    MAX_CONCURRENT_CALLS,
    MAX_ERROR_CHARS,
    StepFunctionsBackend,
    retry_budget,
)
from completer.client import CompletionClient
from completer.errors import ConfigurationError
from completer.models import CompletionRequest, Status
from completer.settings import Settings
from tests.support.proxy import TcpProxy
from tests.support.services import free_port
from tests.support.stepfunctions import (
    OUTPUT_LIMIT,
    REGION,
    MotoStepFunctions,
    WaitingTask,
    aws_env,
    moto_stepfunctions,
)


@pytest.fixture(scope="session")
def moto_sfn() -> Iterator[MotoStepFunctions]:
    yield from moto_stepfunctions()


def sfn_settings(**extra: Any) -> Settings:
    return Settings(
        COMPLETER_BACKEND="stepfunctions",
        COMPLETER_RPC_TIMEOUT_SECONDS=extra.pop("timeout", 5.0),
        **extra,
    )


@pytest.fixture
async def client(moto_sfn: MotoStepFunctions, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in aws_env(moto_sfn.endpoint).items():
        monkeypatch.setenv(name, value)
    async with CompletionClient.create(sfn_settings()) as client:
        yield client


@pytest.fixture
def waiting(moto_sfn: MotoStepFunctions) -> WaitingTask:
    return moto_sfn.start_waiting()


async def run(client: CompletionClient, **fields: Any) -> Any:
    return await client.execute(CompletionRequest.build(fields))


# --- happy paths over HTTP against moto ----------------------------------------------------


@pytest.mark.moto
async def test_complete_sends_the_result_as_the_task_output(client, waiting: WaitingTask):
    result = {"approved": True, "by": "ana", "amount": 12.5, "tags": ["a", "ü"], "none": None}
    outcome = await run(client, task_token=waiting.task_token, result=result)
    assert outcome.status is Status.COMPLETED
    finished = await waiting.finished()
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == result


@pytest.mark.moto
async def test_fail_fails_the_task_with_the_error_type(client, waiting: WaitingTask):
    outcome = await run(
        client,
        task_token=waiting.task_token,
        error={"message": "rejected by reviewer", "type": "Rejected", "details": {"by": "bo"}},
    )
    assert outcome.status is Status.FAILED
    finished = await waiting.finished()
    assert finished["status"] == "FAILED"
    assert finished["error"] == "Rejected"  # moto drops the cause; the Stubber test checks it


@pytest.mark.moto
async def test_heartbeat_then_complete(client, waiting: WaitingTask):
    outcome = await run(client, task_token=waiting.task_token, action="heartbeat", details=1)
    assert outcome.to_dict() == {"status": "heartbeat_recorded", "cancel_requested": False}
    assert waiting.describe()["status"] == "RUNNING"
    await run(client, task_token=waiting.task_token, result="done")
    assert (await waiting.finished())["status"] == "SUCCEEDED"


@pytest.mark.moto
async def test_unknown_token_is_refused_by_step_functions(client, moto_sfn: MotoStepFunctions):
    # moto, like AWS for a token it never issued, answers InvalidToken over HTTP.
    with pytest.raises(errors.InvalidRequest, match="InvalidToken"):
        await run(client, task_token=str(uuid.uuid4()), result=1)


@pytest.mark.moto
async def test_output_exactly_at_the_limit_is_accepted(client, waiting: WaitingTask):
    result = {"v": "é" * ((OUTPUT_LIMIT - 8) // 2)}  # 2 bytes each, plus {"v":""} (8 bytes)
    assert len(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()) == (
        OUTPUT_LIMIT
    )
    outcome = await run(client, task_token=waiting.task_token, result=result)
    assert outcome.status is Status.COMPLETED  # SendTaskSuccess took all 262,144 bytes
    # The task is answered. (moto's interpreter then fails the state with
    # States.DataLimitExceeded: it allows task results strictly under 256 KiB.)
    assert (await waiting.finished())["status"] != "RUNNING"


@pytest.mark.moto
async def test_output_one_byte_over_is_refused_and_the_task_keeps_waiting(
    client, waiting: WaitingTask
):
    result = {"v": "é" * ((OUTPUT_LIMIT - 8) // 2) + "a"}
    with pytest.raises(errors.PayloadTooLarge) as info:
        await run(client, task_token=waiting.task_token, result=result)
    assert f"{OUTPUT_LIMIT + 1} bytes" in info.value.message
    assert waiting.describe()["status"] == "RUNNING"
    await run(client, task_token=waiting.task_token, result={"v": "smaller"})
    assert json.loads((await waiting.finished())["output"]) == {"v": "smaller"}


@pytest.mark.moto
async def test_one_client_serves_every_call(client, moto_sfn: MotoStepFunctions):
    backend = client.backend
    boto_client = backend.client
    for _ in range(3):
        task = moto_sfn.start_waiting()
        await run(client, task_token=task.task_token, action="heartbeat")
        await run(client, task_token=task.task_token, result=1)
    await client.ensure_connected()
    assert backend.client is boto_client


# --- faults at the connection --------------------------------------------------------------


async def test_connection_refused_is_engine_unavailable(monkeypatch: pytest.MonkeyPatch):
    for name, value in aws_env(f"http://127.0.0.1:{free_port()}").items():
        monkeypatch.setenv(name, value)
    async with CompletionClient.create(sfn_settings(timeout=2.0)) as client:
        with pytest.raises(errors.EngineUnavailable):
            await run(client, task_token="token", result=1)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts TCP connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_silent_endpoint_is_engine_timeout_within_the_deadline(
    silent_endpoint: str, monkeypatch: pytest.MonkeyPatch
):
    for name, value in aws_env(silent_endpoint).items():
        monkeypatch.setenv(name, value)
    async with CompletionClient.create(sfn_settings(timeout=0.5)) as client:
        started = time.monotonic()
        with pytest.raises(errors.EngineTimeout):
            await run(client, task_token="token", result=1)
        assert time.monotonic() - started < 0.5 + 1.5


# --- each AWS error code, through the Stubber ----------------------------------------------


@pytest.fixture
async def stubbed(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client whose backend's boto3 client answers from a Stubber (nothing leaves)."""
    for name, value in aws_env("http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)
    settings = sfn_settings()
    backend = StepFunctionsBackend(settings)
    await backend.connect()
    with Stubber(backend.client) as stubber:
        client = CompletionClient(backend, settings=settings)
        yield client, stubber
        stubber.assert_no_pending_responses()
    await client.close()


ERROR_CODES = [
    ("TaskDoesNotExist", 400, errors.ActivityNotFound),
    ("TaskTimedOut", 400, errors.ActivityNotFound),
    ("InvalidToken", 400, errors.InvalidRequest),
    ("InvalidOutput", 400, errors.InvalidRequest),
    ("ValidationException", 400, errors.InvalidRequest),
    ("ThrottlingException", 400, errors.EngineUnavailable),
    ("KmsThrottlingException", 400, errors.EngineUnavailable),
    ("InternalFailure", 500, errors.EngineUnavailable),
    ("ServiceUnavailable", 503, errors.EngineUnavailable),
    ("KmsAccessDeniedException", 400, errors.InternalError),
    ("KmsInvalidStateException", 400, errors.InternalError),
    ("AccessDeniedException", 400, errors.InternalError),
]

ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "complete": ("send_task_success", {"result": {"ok": 1}}),
    "fail": ("send_task_failure", {"error": {"message": "m"}}),
    "heartbeat": ("send_task_heartbeat", {"action": "heartbeat"}),
}


@pytest.mark.parametrize(("code", "http_status", "expected"), ERROR_CODES)
@pytest.mark.parametrize("action", sorted(ACTIONS))
async def test_aws_error_codes_are_classified(
    stubbed, code: str, http_status: int, expected: type[errors.CompleterError], action: str
):
    client, stubber = stubbed
    method, fields = ACTIONS[action]
    stubber.add_client_error(
        method, service_error_code=code, service_message="boom", http_status_code=http_status
    )
    with pytest.raises(expected) as info:
        await run(client, task_token="tok", **fields)
    assert type(info.value) is expected


async def test_success_sends_compact_utf8_json_output(stubbed):
    client, stubber = stubbed
    stubber.add_response(
        "send_task_success", {}, {"taskToken": "tok", "output": '{"a":"ü","b":[1,null]}'}
    )
    await run(client, task_token="tok", result={"a": "ü", "b": [1, None]})


async def test_failure_error_is_the_type_and_cause_carries_message_and_details(stubbed):
    client, stubber = stubbed
    stubber.add_response(
        "send_task_failure",
        {},
        {
            "taskToken": "tok",
            "error": "Rejected",
            "cause": '{"message":"no budget","details":{"by":"bo"}}',
        },
    )
    await run(
        client,
        task_token="tok",
        error={"message": "no budget", "type": "Rejected", "details": {"by": "bo"}},
    )


async def test_failure_without_type_uses_the_message_as_error(stubbed):
    client, stubber = stubbed
    stubber.add_response(
        "send_task_failure",
        {},
        {"taskToken": "tok", "error": "boom", "cause": '{"message":"boom","details":null}'},
    )
    await run(client, task_token="tok", error={"message": "boom"})


@pytest.mark.parametrize(
    ("type_", "expected_error"),
    [
        ("é" * 300, "é" * MAX_ERROR_CHARS),  # two UTF-8 bytes, one UTF-16 unit each
        ("€" * 300, "€" * MAX_ERROR_CHARS),  # three UTF-8 bytes
        ("😀" * 200, "😀" * (MAX_ERROR_CHARS // 2)),  # four UTF-8 bytes, two UTF-16 units
        ("a" + "😀" * 128, "a" + "😀" * 127),  # the 256th unit would split the last emoji
        ("x" * MAX_ERROR_CHARS, "x" * MAX_ERROR_CHARS),  # exactly at the limit: untouched
    ],
)
async def test_error_is_truncated_to_256_without_splitting_a_character(
    stubbed, type_: str, expected_error: str
):
    client, stubber = stubbed
    cause = json.dumps({"message": "m", "details": None}, separators=(",", ":"))
    stubber.add_response(
        "send_task_failure", {}, {"taskToken": "tok", "error": expected_error, "cause": cause}
    )
    await run(client, task_token="tok", error={"message": "m", "type": type_})
    expected_error.encode("utf-8")  # a whole string: no lone surrogate, no split character


async def test_cause_is_truncated_to_32768_without_splitting_a_character(stubbed):
    client, stubber = stubbed
    message = "ü" + "😀" * 20_000  # 40,001 UTF-16 units once in JSON
    full = json.dumps({"message": message, "details": None}, ensure_ascii=False)
    full = full.replace(": ", ":").replace(", ", ",")
    prefix = '{"message":"ü'
    # 12 units of prefix, then emoji of two units each: 16,378 fit in the remaining 32,756.
    expected = prefix + "😀" * ((MAX_CAUSE_CHARS - len(prefix)) // 2)
    assert full.startswith(expected)
    # 13 units of prefix leave 32,755: 16,377 emoji, and the last unit stays empty
    # because the next emoji would be split.
    assert len(expected.encode("utf-16-le")) // 2 == MAX_CAUSE_CHARS - 1
    stubber.add_response(
        "send_task_failure", {}, {"taskToken": "tok", "error": "T", "cause": expected}
    )
    await run(client, task_token="tok", error={"message": message, "type": "T"})


# --- what Step Functions cannot do ---------------------------------------------------------


async def test_cancel_is_invalid_request_saying_why(stubbed):
    client, _ = stubbed
    with pytest.raises(errors.InvalidRequest) as info:
        await run(client, task_token="tok", action="cancel")
    assert "no cancel callback" in info.value.message
    assert "StopExecution" in info.value.message


@pytest.mark.parametrize("action", ["complete", "heartbeat"])
async def test_ids_are_invalid_request_saying_why(stubbed, action: str):
    client, _ = stubbed
    with pytest.raises(errors.InvalidRequest) as info:
        await run(client, action=action, workflow_id="w", activity_id="a")
    assert "only by its task token" in info.value.message


async def test_token_over_2048_characters_is_refused_before_calling(stubbed):
    client, stubber = stubbed
    with pytest.raises(errors.InvalidRequest, match="2048"):
        await run(client, task_token="t" * 2049, result=1)
    stubber.add_response("send_task_success", {}, {"taskToken": "t" * 2048, "output": "1"})
    await run(client, task_token="t" * 2048, result=1)


def test_missing_region_fails_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        StepFunctionsBackend(sfn_settings())


def test_unknown_aws_profile_fails_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ConfigurationError, match="AWS configuration is invalid"):
        StepFunctionsBackend(sfn_settings())


# --- the S3 Lambda's import footprint ------------------------------------------------------


def test_stepfunctions_loads_neither_temporalio_nor_grpc():
    code = (
        "import sys\n"
        "import completer.backends.stepfunctions\n"
        "from completer.client import CompletionClient\n"
        "client = CompletionClient.create()\n"
        "assert client.backend.name == 'stepfunctions'\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('temporalio', 'grpc', 'grpc_status', 'cadence'))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COMPLETER_", "CADENCE_", "TEMPORAL_"))
    }
    env.update({"COMPLETER_BACKEND": "stepfunctions", "AWS_DEFAULT_REGION": REGION})
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "[]"


# --- the retry budget inside the deadline -------------------------------------------------


@pytest.mark.parametrize("deadline", [0.5, 1.0, 2.0, 3.0, 3.5, 5.0, 10.0, 30.0, 60.0])
def test_botocore_worst_case_fits_inside_the_deadline(deadline: float):
    budget = retry_budget(deadline)
    assert budget.worst_case_seconds <= deadline + 1e-9
    assert budget.connect_timeout <= 0.5
    assert budget.read_timeout > 0
    if deadline >= 10:
        assert budget.total_max_attempts == 2


async def test_unreachable_endpoint_is_unavailable_within_2s_whatever_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
):
    for name, value in aws_env(f"http://127.0.0.1:{free_port()}").items():
        monkeypatch.setenv(name, value)
    async with CompletionClient.create(sfn_settings(timeout=30.0)) as client:
        started = time.monotonic()
        with pytest.raises(errors.EngineUnavailable) as info:
            await run(client, task_token="token", result=1)
        assert time.monotonic() - started < 2.0
        assert info.value.unreachable
        assert client.breaker.is_open
        started = time.monotonic()
        with pytest.raises(errors.EngineUnavailable):
            await run(client, task_token="token", result=1)
        assert time.monotonic() - started < 0.05


async def test_throttling_asks_to_retry_after_and_keeps_the_breaker_closed(stubbed):
    client, stubber = stubbed
    stubber.add_client_error(
        "send_task_success", service_error_code="ThrottlingException", http_status_code=400
    )
    with pytest.raises(errors.EngineUnavailable) as info:
        await run(client, task_token="tok", result=1)
    assert info.value.retry_after >= 1
    assert not info.value.unreachable
    assert not client.breaker.is_open


@pytest.mark.moto
async def test_no_callback_reaches_step_functions_after_the_completer_answered(
    moto_sfn: MotoStepFunctions, monkeypatch: pytest.MonkeyPatch
):
    # Requests reach moto at once, answers come back late (slower than the read timeout):
    # the first SendTaskSuccess completes the task, botocore retries, and the completer
    # answers engine_timeout (the outcome is unknown to it). Before, botocore's retries went
    # on in an abandoned thread after that answer.
    waiting = moto_sfn.start_waiting()
    deadline = 3.5
    budget = retry_budget(deadline)
    assert budget.total_max_attempts == 2
    port = int(moto_sfn.endpoint.rsplit(":", 1)[1])
    with TcpProxy(port) as proxy:
        proxy.response_delay = deadline + 1.0  # slower than any read timeout, old or new
        for name, value in aws_env(proxy.url).items():
            monkeypatch.setenv(name, value)
        async with CompletionClient.create(sfn_settings(timeout=deadline)) as client:
            started = time.monotonic()
            with pytest.raises(errors.EngineTimeout):
                await run(client, task_token=waiting.task_token, result={"v": 1})
            answered = time.monotonic()
            assert answered - started <= deadline + 1.5
            sent = len(proxy.sent_upstream)
            assert sent >= 1
            # Longer than the old code's retries took to go out after its answer.
            await asyncio.sleep(deadline + 1.0)
            late = [t - answered for t in proxy.sent_upstream if t > answered]
            assert late == [], f"sent {late} s after the answer"
    described = await waiting.finished()
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"v": 1}


async def test_calls_run_on_the_backends_own_bounded_pool(
    silent_endpoint: str, monkeypatch: pytest.MonkeyPatch
):
    for name, value in aws_env(silent_endpoint).items():
        monkeypatch.setenv(name, value)
    async with CompletionClient.create(sfn_settings(timeout=1.0)) as client:
        answers = await asyncio.gather(
            *(run(client, task_token=f"t{i}", result=i) for i in range(MAX_CONCURRENT_CALLS + 8)),
            return_exceptions=True,
        )
        codes = {type(a).__name__ for a in answers}
        assert codes <= {"EngineTimeout", "EngineUnavailable"}, codes
        pool = [t for t in threading.enumerate() if t.name.startswith("completer-sfn")]
        assert 0 < len(pool) <= MAX_CONCURRENT_CALLS
        # The loop's default executor is not clogged by calls to a silent engine.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 0.5) == "free"
