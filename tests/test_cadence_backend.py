"""The Cadence backend at the gRPC wire, against an in-process ``WorkerAPI`` server.

No Cadence server runs in the test environment, so this is protocol-level verification:
a ``grpc.aio`` server implementing ``cadence.api.v1``'s ``WorkerAPIServicer`` records every
request with its metadata, and answers OK or with the status and error details a Cadence
frontend sends (``common/types/mapper/proto/errors.go`` in the Cadence server).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
import time
from typing import Any

import grpc
import grpc.aio
import pytest
from cadence.api.v1 import common_pb2, error_pb2
from cadence.data_converter import DefaultDataConverter
from google.protobuf.message import Message
from google.rpc import status_pb2

from completer import errors
from completer.backends.cadence import CadenceBackend
from completer.client import CompletionClient
from completer.errors import ConfigurationError
from completer.models import CompletionRequest, Status
from completer.settings import MIB, Settings, load_settings
from tests.support.cadence import FakeFrontend, fake_frontend
from tests.support.services import free_port

TOKEN = bytes(range(256)) + b"cadence-task-token"
TOKEN_B64 = base64.b64encode(TOKEN).decode()
DOMAIN = "orders"
IDENTITY = "completer-test@host"


@pytest.fixture(scope="session")
async def frontend_server() -> Any:
    async with fake_frontend() as frontend:
        yield frontend


@pytest.fixture
def frontend(frontend_server: FakeFrontend) -> FakeFrontend:
    frontend_server.api.reset()
    return frontend_server


def cadence_settings(address: str, **extra: Any) -> Settings:
    return Settings(
        COMPLETER_BACKEND="cadence",
        CADENCE_ADDRESS=address,
        CADENCE_DOMAIN=DOMAIN,
        COMPLETER_IDENTITY=IDENTITY,
        COMPLETER_RPC_TIMEOUT_SECONDS=extra.pop("timeout", 5.0),
        **extra,
    )


@pytest.fixture
async def client(frontend: FakeFrontend) -> Any:
    async with CompletionClient.create(cadence_settings(frontend.address)) as client:
        yield client


async def run(client: CompletionClient, **fields: Any) -> Any:
    return await client.execute(CompletionRequest.build(fields))


def cadence_status(
    code: grpc.StatusCode, message: str, detail: Message | None = None
) -> status_pb2.Status:
    """A status as the Cadence frontend sends it: the error proto packed in the details."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if detail is not None:
        status.details.add().Pack(detail)
    return status


# --- requests on the wire ------------------------------------------------------------------


async def test_complete_by_token_sends_token_json_result_identity_and_yarpc_headers(
    client, frontend: FakeFrontend
):
    result = {"approved": True, "by": "ana", "amount": 12.5, "tags": ["a", "ü"], "none": None}
    outcome = await run(client, task_token=TOKEN_B64, result=result)
    assert outcome.status is Status.COMPLETED
    call = frontend.only_call
    assert call.method == "RespondActivityTaskCompleted"
    assert call.request.task_token == TOKEN
    # Plain JSON bytes: what Go (encoding/json), Java and Python Cadence workers decode.
    assert call.request.result.data == (
        b'{"approved":true,"by":"ana","amount":12.5,"tags":["a","\xc3\xbc"],"none":null}'
    )
    assert DefaultDataConverter().from_data(call.request.result, [dict]) == [result]
    assert call.request.identity == IDENTITY
    assert call.metadata["rpc-service"] == "cadence-frontend"
    assert call.metadata["rpc-caller"] == "activity-completer"
    assert call.metadata["rpc-encoding"] == "proto"
    assert call.metadata["cadence-caller-type"] == "sdk"


@pytest.mark.parametrize(
    ("result", "data"),
    [(None, b"null"), ("text", b'"text"'), (7, b"7"), (2**70, b"1180591620717411303424")],
)
async def test_complete_scalar_results(client, frontend: FakeFrontend, result: Any, data: bytes):
    await run(client, task_token=TOKEN_B64, result=result)
    assert frontend.only_call.request.result.data == data


async def test_token_alphabets_all_reach_cadence_as_the_same_bytes(client, frontend: FakeFrontend):
    urlsafe = base64.urlsafe_b64encode(TOKEN).decode().rstrip("=")
    await run(client, task_token=urlsafe, result=1)
    assert frontend.only_call.request.task_token == TOKEN


@pytest.mark.parametrize("run_id", [None, "run-7"])
async def test_complete_by_ids_names_domain_execution_and_activity(
    client, frontend: FakeFrontend, run_id: str | None
):
    ids: dict[str, Any] = {"workflow_id": "order-1", "activity_id": "approve"}
    if run_id:
        ids["run_id"] = run_id
    await run(client, result={"ok": 1}, **ids)
    call = frontend.only_call
    assert call.method == "RespondActivityTaskCompletedByID"
    request = call.request
    assert request.domain == DOMAIN
    assert request.workflow_execution.workflow_id == "order-1"
    assert request.workflow_execution.run_id == (run_id or "")
    assert request.activity_id == "approve"
    assert request.result.data == b'{"ok":1}'
    assert request.identity == IDENTITY


async def test_fail_with_type_sends_reason_details_and_fatal_category(
    client, frontend: FakeFrontend
):
    outcome = await run(
        client,
        task_token=TOKEN_B64,
        error={
            "message": "rejected by reviewer",
            "type": "Rejected",
            "details": {"reviewer": "bo"},
            "non_retryable": True,
        },
    )
    assert outcome.status is Status.FAILED
    call = frontend.only_call
    assert call.method == "RespondActivityTaskFailed"
    failure = call.request.failure
    assert call.request.task_token == TOKEN
    assert call.request.identity == IDENTITY
    assert failure.reason == "Rejected"
    # Two JSON values, space-separated: Go reads them with customErr.Details(&d, &msg).
    assert failure.details == b'{"reviewer":"bo"} "rejected by reviewer"'
    assert DefaultDataConverter().from_data(
        common_pb2.Payload(data=failure.details), [dict, str]
    ) == [{"reviewer": "bo"}, "rejected by reviewer"]
    assert failure.options.failure_category == common_pb2.FAILURE_CATEGORY_FATAL


async def test_fail_without_type_uses_message_as_reason_and_stays_retryable(
    client, frontend: FakeFrontend
):
    await run(client, task_token=TOKEN_B64, error={"message": "boom"})
    failure = frontend.only_call.request.failure
    assert failure.reason == "boom"
    assert failure.details == b'null "boom"'
    assert not failure.HasField("options")


async def test_fail_by_ids(client, frontend: FakeFrontend):
    await run(
        client,
        workflowId="order-2",
        activityId="ship",
        error={"message": "no stock", "type": "OutOfStock"},
    )
    call = frontend.only_call
    assert call.method == "RespondActivityTaskFailedByID"
    assert call.request.domain == DOMAIN
    assert call.request.workflow_execution.workflow_id == "order-2"
    assert call.request.activity_id == "ship"
    assert call.request.failure.reason == "OutOfStock"
    assert call.request.identity == IDENTITY


@pytest.mark.parametrize("cancel_requested", [False, True])
async def test_heartbeat_by_token_reports_cancel_requested(
    client, frontend: FakeFrontend, cancel_requested: bool
):
    frontend.api.cancel_requested = cancel_requested
    outcome = await run(client, task_token=TOKEN_B64, action="heartbeat", details={"pct": 40})
    assert outcome.status is Status.HEARTBEAT_RECORDED
    assert outcome.cancel_requested is cancel_requested
    call = frontend.only_call
    assert call.method == "RecordActivityTaskHeartbeat"
    assert call.request.task_token == TOKEN
    assert call.request.details.data == b'{"pct":40}'
    assert call.request.identity == IDENTITY


@pytest.mark.parametrize("cancel_requested", [False, True])
async def test_heartbeat_by_ids_without_details(
    client, frontend: FakeFrontend, cancel_requested: bool
):
    frontend.api.cancel_requested = cancel_requested
    outcome = await run(client, action="heartbeat", workflow_id="order-3", activity_id="wait")
    assert outcome.cancel_requested is cancel_requested
    call = frontend.only_call
    assert call.method == "RecordActivityTaskHeartbeatByID"
    assert call.request.domain == DOMAIN
    assert call.request.workflow_execution.workflow_id == "order-3"
    assert call.request.activity_id == "wait"
    assert call.request.details.data == b""


async def test_cancel_by_token_and_by_ids(client, frontend: FakeFrontend):
    outcome = await run(client, task_token=TOKEN_B64, action="cancel", details={"why": "asked"})
    assert outcome.status is Status.CANCELLED
    await run(client, action="cancel", workflow_id="order-4", run_id="r", activity_id="a")
    by_token, by_ids = frontend.api.calls
    assert by_token.method == "RespondActivityTaskCanceled"
    assert by_token.request.task_token == TOKEN
    assert by_token.request.details.data == b'{"why":"asked"}'
    assert by_ids.method == "RespondActivityTaskCanceledByID"
    assert by_ids.request.domain == DOMAIN
    assert by_ids.request.workflow_execution.run_id == "r"
    assert by_ids.request.details.data == b""
    assert by_ids.request.identity == IDENTITY


async def test_bad_token_encoding_never_reaches_cadence(client, frontend: FakeFrontend):
    with pytest.raises(errors.InvalidRequest):
        await run(client, task_token="not base64 !!", result=1)
    assert frontend.api.calls == []


# --- one channel ---------------------------------------------------------------------------


async def test_one_channel_is_reused_across_calls(client, frontend: FakeFrontend):
    backend = client.backend
    assert isinstance(backend, CadenceBackend)
    channel = backend._channel
    for number in range(10):
        await run(client, task_token=TOKEN_B64, action="heartbeat", details=number)
    assert backend._channel is channel
    peers = {call.peer for call in frontend.api.calls}
    assert len(frontend.api.calls) == 10
    assert len(peers) == 1, peers  # one TCP connection: the same client port every time


# --- errors --------------------------------------------------------------------------------

NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

ERROR_CASES = [
    pytest.param(
        cadence_status(NOT_FOUND, "activity task not found", error_pb2.EntityNotExistsError()),
        errors.ActivityNotFound,
        id="EntityNotExists",
    ),
    pytest.param(
        cadence_status(
            NOT_FOUND,
            "workflow execution already completed",
            error_pb2.WorkflowExecutionAlreadyCompletedError(),
        ),
        errors.ActivityNotFound,
        id="WorkflowExecutionAlreadyCompleted",
    ),
    pytest.param(
        cadence_status(grpc.StatusCode.INVALID_ARGUMENT, "error deserializing task token"),
        errors.InvalidRequest,
        id="BadRequest",
    ),
    pytest.param(
        cadence_status(EXHAUSTED, "too busy", error_pb2.ServiceBusyError(reason="rps")),
        errors.EngineUnavailable,
        id="ServiceBusy",
    ),
    pytest.param(
        cadence_status(EXHAUSTED, "limit", error_pb2.LimitExceededError()),
        errors.EngineUnavailable,
        id="LimitExceeded",
    ),
    pytest.param(
        cadence_status(
            grpc.StatusCode.FAILED_PRECONDITION,
            "domain not active",
            error_pb2.DomainNotActiveError(
                domain=DOMAIN, current_cluster="east", active_cluster="west"
            ),
        ),
        errors.EngineUnavailable,
        id="DomainNotActive",
    ),
    pytest.param(
        cadence_status(grpc.StatusCode.UNAVAILABLE, "shutting down"),
        errors.EngineUnavailable,
        id="UNAVAILABLE",
    ),
    pytest.param(
        cadence_status(grpc.StatusCode.ABORTED, "shard ownership lost"),
        errors.EngineUnavailable,
        id="ShardOwnershipLost",
    ),
    pytest.param(
        cadence_status(grpc.StatusCode.INTERNAL, "cassandra down"),
        errors.InternalError,
        id="InternalServiceError",
    ),
    pytest.param(
        cadence_status(
            grpc.StatusCode.FAILED_PRECONDITION,
            "Feature flag not enabled",
            error_pb2.FeatureNotEnabledError(feature_flag="x"),
        ),
        errors.InternalError,
        id="FeatureNotEnabled",
    ),
    pytest.param(
        cadence_status(grpc.StatusCode.PERMISSION_DENIED, "no access"),
        errors.InternalError,
        id="AccessDenied",
    ),
]


@pytest.mark.parametrize(("fault", "expected"), ERROR_CASES)
@pytest.mark.parametrize("action", ["complete", "fail", "heartbeat", "cancel"])
async def test_cadence_errors_are_classified(
    client,
    frontend: FakeFrontend,
    caplog: pytest.LogCaptureFixture,
    fault: status_pb2.Status,
    expected: type[errors.CompleterError],
    action: str,
):
    frontend.api.fault = fault
    fields: dict[str, Any] = {"task_token": TOKEN_B64, "action": action}
    if action == "fail":
        fields["error"] = {"message": "m"}
    with caplog.at_level(logging.DEBUG, logger="completer"), pytest.raises(expected) as info:
        await run(client, **fields)
    assert type(info.value) is expected
    assert len(frontend.api.calls) == 1
    assert TOKEN_B64 not in caplog.text
    assert TOKEN_B64 not in info.value.message


async def test_error_classes_carry_the_contract_codes(client, frontend: FakeFrontend):
    frontend.api.fault = cadence_status(NOT_FOUND, "gone", error_pb2.EntityNotExistsError())
    with pytest.raises(errors.ActivityNotFound) as not_found:
        await run(client, task_token=TOKEN_B64, result=1)
    assert (not_found.value.code, not_found.value.http_status) == ("activity_not_found", 404)
    assert not_found.value.transient is False
    frontend.api.fault = cadence_status(EXHAUSTED, "busy", error_pb2.ServiceBusyError())
    with pytest.raises(errors.EngineUnavailable) as busy:
        await run(client, task_token=TOKEN_B64, result=1)
    assert (busy.value.code, busy.value.http_status, busy.value.transient) == (
        "engine_unavailable",
        503,
        True,
    )
    assert busy.value.retry_after > 0


async def test_slow_frontend_is_engine_timeout_within_the_deadline(frontend: FakeFrontend):
    frontend.api.delay = 3.0
    async with CompletionClient.create(cadence_settings(frontend.address, timeout=0.3)) as client:
        started = time.monotonic()
        with pytest.raises(errors.EngineTimeout):
            await run(client, task_token=TOKEN_B64, result=1)
        elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 1.0, elapsed  # gRPC's deadline fired, not the client's margin


async def test_closed_port_is_engine_unavailable():
    settings = cadence_settings(f"127.0.0.1:{free_port()}", timeout=3.0)
    async with CompletionClient.create(settings) as client:
        started = time.monotonic()
        with pytest.raises(errors.EngineUnavailable):
            await run(client, task_token=TOKEN_B64, result=1)
        assert time.monotonic() - started < 3.0


# --- the payload limit ---------------------------------------------------------------------


async def test_result_exactly_at_the_2_mib_limit_is_sent(client, frontend: FakeFrontend):
    result = "x" * (2 * MIB - 2)  # plus the two quotes of its JSON: exactly 2 MiB
    outcome = await run(client, task_token=TOKEN_B64, result=result)
    assert outcome.status is Status.COMPLETED
    assert len(frontend.only_call.request.result.data) == 2 * MIB


async def test_result_one_byte_over_is_refused_before_cadence(client, frontend: FakeFrontend):
    with pytest.raises(errors.PayloadTooLarge) as info:
        await run(client, task_token=TOKEN_B64, result="x" * (2 * MIB - 1))
    assert str(2 * MIB + 1) in info.value.message
    assert frontend.api.calls == []


async def test_failure_and_details_limits_count_what_cadence_stores(frontend: FakeFrontend):
    settings = cadence_settings(frontend.address, COMPLETER_MAX_PAYLOAD_BYTES=100)
    async with CompletionClient.create(settings) as client:
        # reason "T" (1 byte) + details '"<88 x>" "m"' (90 + 1 + 3 bytes) = 95 bytes: sent.
        await run(
            client, task_token=TOKEN_B64, error={"message": "m", "type": "T", "details": "x" * 88}
        )
        with pytest.raises(errors.PayloadTooLarge):
            await run(
                client,
                task_token=TOKEN_B64,
                error={"message": "m", "type": "T", "details": "x" * 94},
            )
        with pytest.raises(errors.PayloadTooLarge):
            await run(client, task_token=TOKEN_B64, action="heartbeat", details="x" * 99)
        await run(client, task_token=TOKEN_B64, action="heartbeat", details="x" * 98)
    assert [call.method for call in frontend.api.calls] == [
        "RespondActivityTaskFailed",
        "RecordActivityTaskHeartbeat",
    ]


# --- configuration -------------------------------------------------------------------------


def test_cadence_without_domain_fails_at_start(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COMPLETER_BACKEND", "cadence")
    monkeypatch.delenv("CADENCE_DOMAIN", raising=False)
    with pytest.raises(ConfigurationError, match="CADENCE_DOMAIN"):
        load_settings()


def test_default_address_is_the_frontend_grpc_port():
    backend = CadenceBackend(Settings(COMPLETER_BACKEND="cadence", CADENCE_DOMAIN=DOMAIN))
    assert backend.address == "localhost:7833"
    assert backend.domain == DOMAIN


# --- a script of its own (asyncio.run) -------------------------------------------------------

SYNC_SCRIPT = """
import asyncio
from completer.client import CompletionClient
from completer.models import CompletionRequest

async def main():
    async with await CompletionClient.connect() as client:
        return await client.execute(
            CompletionRequest.build({"task_token": %r, "action": "heartbeat", "details": "sync"})
        )

print(asyncio.run(main()).to_dict())
"""


async def test_script_process_completes_and_exits_cleanly(frontend: FakeFrontend):
    frontend.api.cancel_requested = True
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COMPLETER_", "CADENCE_", "TEMPORAL_"))
    }
    env.update(
        {
            "COMPLETER_BACKEND": "cadence",
            "CADENCE_ADDRESS": frontend.address,
            "CADENCE_DOMAIN": DOMAIN,
        }
    )
    # Asynchronously, so this loop keeps serving the in-process frontend meanwhile.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SYNC_SCRIPT % TOKEN_B64,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "{'status': 'heartbeat_recorded', 'cancel_requested': True}"
    assert frontend.only_call.request.details.data == b'"sync"'
    assert frontend.only_call.request.task_token == TOKEN
