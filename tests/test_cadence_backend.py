"""The Cadence backend at the gRPC wire, against a model of the Cadence frontend.

No Cadence server runs in the test environment. tests/support/cadence.py models the
frontend from the server's source (github.com/cadence-workflow/cadence and the yarpc-go it
pins): each case below names the server file whose answer it holds the adapter to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from cadence.api.v1 import common_pb2, error_pb2, service_domain_pb2, service_worker_pb2
from cadence.api.v1.service_domain_pb2_grpc import DomainAPIStub
from cadence.api.v1.service_worker_pb2_grpc import WorkerAPIStub
from cadence.data_converter import DefaultDataConverter
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from completer import errors
from completer.backends.cadence import CadenceBackend, UnknownDomain, check_token
from completer.client import CompletionClient
from completer.errors import ConfigurationError
from completer.models import CompletionRequest, Status
from completer.settings import MIB, Settings, load_settings
from tests.support.cadence import (
    CANCEL_DETAILS_EXCEEDS_LIMIT,
    COMPLETE_RESULT_EXCEEDS_LIMIT,
    HEARTBEAT_EXCEEDS_LIMIT,
    Activity,
    FakeFrontend,
    fake_frontend,
    task_token,
)
from tests.support.services import free_port
from tests.support.tls import make_pki

DOMAIN = "orders"
SMALL_DOMAIN = "small"  # limit.blobSize.error set to 1000 bytes for this domain
IDENTITY = "completer-test@host"
YARPC = (
    ("rpc-service", "cadence-frontend"),
    ("rpc-caller", "test"),
    ("rpc-encoding", "proto"),
)


@pytest.fixture(scope="session")
async def frontend_server() -> Any:
    async with fake_frontend(domains={DOMAIN: 2 * MIB, SMALL_DOMAIN: 1000}) as frontend:
        yield frontend


@pytest.fixture
def frontend(frontend_server: FakeFrontend) -> FakeFrontend:
    frontend_server.api.reset()
    return frontend_server


def cadence_settings(address: str, **extra: Any) -> Settings:
    return Settings(
        COMPLETER_BACKEND="cadence",
        CADENCE_ADDRESS=address,
        CADENCE_DOMAIN=extra.pop("domain", DOMAIN),
        COMPLETER_IDENTITY=IDENTITY,
        COMPLETER_RPC_TIMEOUT_SECONDS=extra.pop("timeout", 5.0),
        **extra,
    )


@pytest.fixture
async def client(frontend: FakeFrontend) -> Any:
    async with CompletionClient.create(cadence_settings(frontend.address)) as client:
        yield client


@contextlib.asynccontextmanager
async def lazy_client(settings: Settings) -> AsyncIterator[CompletionClient]:
    """A client that connects on its first request (as a function's does), then closes."""
    client = CompletionClient.create(settings)
    try:
        yield client
    finally:
        await client.close()


async def run(client: CompletionClient, **fields: Any) -> Any:
    return await client.execute(CompletionRequest.build(fields))


def b64(token: bytes) -> str:
    return base64.b64encode(token).decode()


def pending(frontend: FakeFrontend, activity_id: str = "approve", **kwargs: Any) -> Activity:
    return frontend.api.schedule_activity(activity_id, **kwargs)


def cadence_status(
    code: grpc.StatusCode, message: str, detail: Message | None = None
) -> status_pb2.Status:
    status = status_pb2.Status(code=code.value[0], message=message)
    if detail is not None:
        status.details.add().Pack(detail)
    return status


# --- requests on the wire ------------------------------------------------------------------


async def test_complete_by_token_sends_token_json_result_identity_and_yarpc_headers(
    client, frontend: FakeFrontend
):
    activity = pending(frontend)
    result = {"approved": True, "by": "ana", "amount": 12.5, "tags": ["a", "ü"], "none": None}
    outcome = await run(client, task_token=b64(activity.task_token), result=result)
    assert outcome.status is Status.COMPLETED
    call = frontend.only_call
    assert call.method == "RespondActivityTaskCompleted"
    assert call.request.task_token == activity.task_token
    # One JSON value: what Go (encoding/json), Java (JsonDataConverter) and Python decode.
    data = b'{"approved":true,"by":"ana","amount":12.5,"tags":["a","\xc3\xbc"],"none":null}'
    assert call.request.result.data == data
    assert DefaultDataConverter().from_data(call.request.result, [dict]) == [result]
    assert activity.closed == ("completed", data)
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
    activity = pending(frontend)
    await run(client, task_token=b64(activity.task_token), result=result)
    assert activity.closed == ("completed", data)


async def test_token_alphabets_all_reach_cadence_as_the_same_bytes(client, frontend: FakeFrontend):
    activity = pending(frontend)
    urlsafe = base64.urlsafe_b64encode(activity.task_token).decode().rstrip("=")
    await run(client, task_token=urlsafe, result=1)
    assert frontend.only_call.request.task_token == activity.task_token


@pytest.mark.parametrize("with_run_id", [False, True])
async def test_complete_by_ids_names_domain_execution_and_activity(
    client, frontend: FakeFrontend, with_run_id: bool
):
    activity = pending(frontend)
    ids: dict[str, Any] = {"workflow_id": activity.workflow_id, "activity_id": "approve"}
    if with_run_id:
        ids["run_id"] = activity.run_id
    await run(client, result={"ok": 1}, **ids)
    request = frontend.only_call.request
    assert frontend.only_call.method == "RespondActivityTaskCompletedByID"
    assert request.domain == DOMAIN
    assert request.workflow_execution.workflow_id == activity.workflow_id
    assert request.workflow_execution.run_id == (activity.run_id if with_run_id else "")
    assert request.activity_id == "approve"
    assert request.identity == IDENTITY
    assert activity.closed == ("completed", b'{"ok":1}')


async def test_fail_sends_reason_one_json_value_and_fatal_category(client, frontend: FakeFrontend):
    activity = pending(frontend)
    outcome = await run(
        client,
        task_token=b64(activity.task_token),
        error={
            "message": "rejected by reviewer",
            "type": "Rejected",
            "details": {"reviewer": "bo"},
            "non_retryable": True,
        },
    )
    assert outcome.status is Status.FAILED
    failure = frontend.only_call.request.failure
    assert failure.reason == "Rejected"
    # ONE JSON value: a Java worker reads several values as one JSON array, so two
    # space-separated values could not be decoded there (JsonDataConverter.fromDataArray).
    assert json.loads(failure.details) == {
        "message": "rejected by reviewer",
        "details": {"reviewer": "bo"},
    }
    assert DefaultDataConverter().from_data(common_pb2.Payload(data=failure.details), [dict]) == [
        {"message": "rejected by reviewer", "details": {"reviewer": "bo"}}
    ]
    # Recorded by the server, though only NonRetriableErrorReasons stop retries
    # (service/history/execution/retry.go getBackoffInterval).
    assert failure.options.failure_category == common_pb2.FAILURE_CATEGORY_FATAL
    assert activity.closed == ("failed", "Rejected", failure.details)


async def test_fail_without_type_uses_message_as_reason_and_stays_retryable(
    client, frontend: FakeFrontend
):
    activity = pending(frontend)
    await run(client, task_token=b64(activity.task_token), error={"message": "boom"})
    failure = frontend.only_call.request.failure
    assert failure.reason == "boom"
    assert failure.details == b'{"message":"boom","details":null}'
    assert not failure.HasField("options")


async def test_fail_with_a_java_exception_type_carries_what_a_java_workflow_needs(
    client, frontend: FakeFrontend
):
    # cadence-java-client SyncDecisionContext loads the reason as a class and decodes the
    # details into it; CustomThrowableTypeAdapter.read needs "class"; Throwable's message
    # field is "detailMessage".
    activity = pending(frontend)
    await run(
        client,
        task_token=b64(activity.task_token),
        error={"message": "no", "type": "com.example.RejectedException", "details": [1]},
    )
    failure = frontend.only_call.request.failure
    assert failure.reason == "com.example.RejectedException"
    assert json.loads(failure.details) == {
        "message": "no",
        "details": [1],
        "class": "com.example.RejectedException",
        "detailMessage": "no",
    }


async def test_a_reason_the_go_client_keeps_for_itself_is_refused(client, frontend: FakeFrontend):
    # cadence-go-client internal/internal_utils.go constructError: "cadenceInternal:Timeout"
    # reasons are decoded as a timeout type and panic the workflow on other details.
    activity = pending(frontend)
    with pytest.raises(errors.InvalidRequest, match="cadenceInternal:"):
        await run(
            client,
            task_token=b64(activity.task_token),
            error={"message": "m", "type": "cadenceInternal:Timeout START_TO_CLOSE"},
        )
    assert frontend.activity_calls == []


async def test_fail_by_ids(client, frontend: FakeFrontend):
    activity = pending(frontend, "ship")
    await run(
        client,
        workflowId=activity.workflow_id,
        activityId="ship",
        error={"message": "no stock", "type": "OutOfStock"},
    )
    call = frontend.only_call
    assert call.method == "RespondActivityTaskFailedByID"
    assert call.request.domain == DOMAIN
    assert call.request.failure.reason == "OutOfStock"
    assert activity.closed is not None
    assert activity.closed[:2] == ("failed", "OutOfStock")


@pytest.mark.parametrize("cancel_requested", [False, True])
async def test_heartbeat_by_token_reports_cancel_requested(
    client, frontend: FakeFrontend, cancel_requested: bool
):
    activity = pending(frontend)
    if cancel_requested:
        frontend.api.request_cancel(activity)
    outcome = await run(
        client, task_token=b64(activity.task_token), action="heartbeat", details={"pct": 40}
    )
    assert outcome.status is Status.HEARTBEAT_RECORDED
    assert outcome.cancel_requested is cancel_requested
    assert frontend.only_call.method == "RecordActivityTaskHeartbeat"
    assert activity.heartbeats == [b'{"pct":40}']
    assert activity.closed is None


@pytest.mark.parametrize("cancel_requested", [False, True])
async def test_heartbeat_by_ids_without_details(
    client, frontend: FakeFrontend, cancel_requested: bool
):
    activity = pending(frontend, "wait")
    if cancel_requested:
        frontend.api.request_cancel(activity)
    outcome = await run(
        client, action="heartbeat", workflow_id=activity.workflow_id, activity_id="wait"
    )
    assert outcome.cancel_requested is cancel_requested
    assert frontend.only_call.method == "RecordActivityTaskHeartbeatByID"
    assert activity.heartbeats == [b""]


async def test_cancel_after_the_workflow_asked_by_token_and_by_ids(client, frontend: FakeFrontend):
    by_token, by_ids = pending(frontend, "a"), pending(frontend, "b")
    frontend.api.request_cancel(by_token)
    frontend.api.request_cancel(by_ids)
    outcome = await run(
        client, task_token=b64(by_token.task_token), action="cancel", details={"why": "asked"}
    )
    assert outcome.status is Status.CANCELLED
    await run(
        client,
        action="cancel",
        workflow_id=by_ids.workflow_id,
        run_id=by_ids.run_id,
        activity_id="b",
    )
    assert by_token.closed == ("canceled", b'{"why":"asked"}')
    assert by_ids.closed == ("canceled", b"")
    assert [call.method for call in frontend.activity_calls] == [
        "RespondActivityTaskCanceled",
        "RespondActivityTaskCanceledByID",
    ]


@pytest.mark.parametrize("by", ["token", "ids"])
async def test_cancel_before_the_workflow_asked_is_conflict(
    client, frontend: FakeFrontend, by: str
):
    # engineimpl/respond_activity_task_canceled.go: AddActivityTaskCanceledEvent fails
    # without CancelRequested -> InternalServiceError, rewritten by the metered wrapper.
    activity = pending(frontend)
    naming = (
        {"task_token": b64(activity.task_token)}
        if by == "token"
        else {"workflow_id": activity.workflow_id, "activity_id": activity.activity_id}
    )
    with pytest.raises(errors.Conflict) as info:
        await run(client, action="cancel", **naming)
    assert info.value.code == "conflict"
    assert "cancel_requested" in info.value.message
    assert activity.closed is None  # still waiting: a heartbeat, complete or fail still work
    await run(client, result="done", **naming)
    assert activity.closed == ("completed", b'"done"')


# --- the token -----------------------------------------------------------------------------

MALFORMED_TOKENS = [
    pytest.param(bytes(range(256)), id="binary"),
    pytest.param(b"\x00\x01cadence-token\xff", id="not-utf8"),
    pytest.param(b"not json", id="text"),
    pytest.param(b"null", id="null"),
    pytest.param(b'["domainId"]', id="array"),
    pytest.param(b"{}", id="empty-object"),
    pytest.param(b'{"domainId":1,"workflowId":"w"}', id="domainId-number"),
    pytest.param(b'{"domainId":"d","workflowId":"w","scheduleId":1.5}', id="scheduleId-float"),
    pytest.param(b'{"domainId":"d","workflowId":"w","scheduleId":true}', id="scheduleId-bool"),
    pytest.param(b'{"domainId":"d","workflowId":"w","scheduleId":9223372036854775808}', id="int64"),
    pytest.param(b'{"domainId":"d","workflowId":"w","runId":"r"}', id="runId-not-uuid"),
]


@pytest.mark.parametrize("token", MALFORMED_TOKENS)
async def test_malformed_token_is_refused_before_cadence(
    client, frontend: FakeFrontend, token: bytes
):
    with pytest.raises(errors.InvalidRequest):
        await run(client, task_token=b64(token), result=1)
    assert frontend.activity_calls == []


def test_a_token_the_server_issues_passes_the_local_check():
    token = task_token(
        domain_id=str(uuid.uuid4()),
        workflow_id="w",
        run_id=str(uuid.uuid4()),
        schedule_id=5,
        activity_id="a",
    )
    assert check_token(token) == token
    # encoding/json is case-insensitive and ignores unknown fields and nulls.
    assert check_token(b'{"DOMAINID":"d","workflowid":"w","extra":[1],"runId":null}')


async def test_the_frontend_answers_a_non_json_token_unknown_and_it_is_invalid_request(
    frontend: FakeFrontend,
):
    # common/json_task_token_serializer.go Deserialize fails; the metered and
    # clusterredirection wrappers return that error untyped: proto/errors.go FromError's
    # CodeUnknown. The adapter refuses such tokens itself; should one pass, it is still ours.
    async with grpc.aio.insecure_channel(frontend.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await WorkerAPIStub(channel).RespondActivityTaskCompleted(
                service_worker_pb2.RespondActivityTaskCompletedRequest(
                    task_token=bytes(range(256))
                ),
                timeout=5,
                metadata=YARPC,
            )
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    backend = CadenceBackend(cadence_settings(frontend.address))
    assert type(backend.translate_error(info.value)) is errors.InvalidRequest


async def test_a_token_of_an_unknown_domain_is_activity_not_found(client, frontend: FakeFrontend):
    # common/cache/domainCache.go GetDomainByID -> EntityNotExists (NOT_FOUND).
    token = task_token(
        domain_id=str(uuid.uuid4()),
        workflow_id="w",
        run_id=str(uuid.uuid4()),
        schedule_id=5,
        activity_id="a",
    )
    with pytest.raises(errors.ActivityNotFound):
        await run(client, task_token=b64(token), result=1)


# --- activities that are not waiting -------------------------------------------------------


async def test_by_ids_unknown_or_finished_activity_is_activity_not_found(
    client, frontend: FakeFrontend
):
    # engineimpl/history_engine.go getScheduleID: BadRequest "Cannot locate Activity
    # ScheduleID" (INVALID_ARGUMENT), which means the activity is not pending.
    activity = pending(frontend)
    with pytest.raises(errors.ActivityNotFound) as unknown:
        await run(client, workflow_id=activity.workflow_id, activity_id="nope", result=1)
    assert "Cannot locate Activity ScheduleID" in unknown.value.message
    await run(client, workflow_id=activity.workflow_id, activity_id="approve", result=1)
    with pytest.raises(errors.ActivityNotFound):
        await run(client, workflow_id=activity.workflow_id, activity_id="approve", result=2)
    assert activity.closed == ("completed", b"1")


async def test_by_ids_unknown_workflow_is_activity_not_found(client, frontend: FakeFrontend):
    # persistence GetCurrentExecution: EntityNotExists.
    with pytest.raises(errors.ActivityNotFound):
        await run(client, workflow_id="never-started", activity_id="a", result=1)


async def test_token_of_a_finished_activity_is_activity_not_found(client, frontend: FakeFrontend):
    # engineimpl/respond_activity_task_completed.go: ErrActivityTaskNotFound (NOT_FOUND).
    activity = pending(frontend)
    await run(client, task_token=b64(activity.task_token), result=1)
    with pytest.raises(errors.ActivityNotFound):
        await run(client, task_token=b64(activity.task_token), action="heartbeat")


async def test_closed_workflow_is_activity_not_found(client, frontend: FakeFrontend):
    # workflow.ErrAlreadyCompleted, downgraded to EntityNotExists for a client without the
    # feature flag (api/handler.go normalizeVersionedErrors).
    activity = pending(frontend)
    frontend.api.close_workflow(activity)
    with pytest.raises(errors.ActivityNotFound):
        await run(client, task_token=b64(activity.task_token), result=1)
    with pytest.raises(errors.ActivityNotFound):
        await run(client, workflow_id=activity.workflow_id, activity_id="approve", result=1)


async def test_run_id_that_is_not_a_uuid_is_invalid_request_before_cadence(
    client, frontend: FakeFrontend
):
    # history/execution/cache.go: "RunID is not valid UUID." (BadRequest).
    with pytest.raises(errors.InvalidRequest, match="UUID"):
        await run(client, workflow_id="w", run_id="r", activity_id="a", result=1)
    assert frontend.activity_calls == []


# --- sizes ---------------------------------------------------------------------------------


async def test_result_exactly_at_the_limit_is_sent(client, frontend: FakeFrontend):
    activity = pending(frontend)
    result = "x" * (2 * MIB - 2)  # plus the two quotes of its JSON: exactly 2 MiB
    outcome = await run(client, task_token=b64(activity.task_token), result=result)
    assert outcome.status is Status.COMPLETED
    assert activity.closed is not None
    assert activity.closed[0] == "completed"


async def test_result_one_byte_over_is_refused_and_the_activity_keeps_waiting(
    client, frontend: FakeFrontend
):
    activity = pending(frontend)
    with pytest.raises(errors.PayloadTooLarge) as info:
        await run(client, task_token=b64(activity.task_token), result="x" * (2 * MIB - 1))
    assert str(2 * MIB + 1) in info.value.message
    assert frontend.activity_calls == []
    assert activity.closed is None


async def test_a_limit_above_the_domains_lets_cadence_fail_the_activity_silently(
    frontend: FakeFrontend,
):
    # api/handler.go: over limit.blobSize.error the frontend fails the activity
    # (COMPLETE_RESULT_EXCEEDS_LIMIT, CANCEL_DETAILS_EXCEEDS_LIMIT, HEARTBEAT_EXCEEDS_LIMIT)
    # and answers OK: why COMPLETER_MAX_PAYLOAD_BYTES must be the domain's limit.
    settings = cadence_settings(frontend.address, domain=SMALL_DOMAIN)
    async with CompletionClient.create(settings) as client:
        completed = pending(frontend, "a", domain=SMALL_DOMAIN)
        outcome = await run(client, task_token=b64(completed.task_token), result="x" * 2000)
        assert outcome.status is Status.COMPLETED  # what the server said
        assert completed.closed is not None
        assert completed.closed[:2] == ("failed", COMPLETE_RESULT_EXCEEDS_LIMIT)
        beat = pending(frontend, "b", domain=SMALL_DOMAIN)
        outcome = await run(
            client, task_token=b64(beat.task_token), action="heartbeat", details="x" * 2000
        )
        assert outcome.cancel_requested is True
        assert beat.closed is not None
        assert beat.closed[1] == HEARTBEAT_EXCEEDS_LIMIT
        cancelled = pending(frontend, "c", domain=SMALL_DOMAIN)
        await run(client, task_token=b64(cancelled.task_token), action="cancel", details="x" * 2000)
        assert cancelled.closed is not None
        assert cancelled.closed[1] == CANCEL_DETAILS_EXCEEDS_LIMIT
    settings = cadence_settings(
        frontend.address, domain=SMALL_DOMAIN, COMPLETER_MAX_PAYLOAD_BYTES=1000
    )
    async with CompletionClient.create(settings) as client:
        waiting = pending(frontend, "d", domain=SMALL_DOMAIN)
        with pytest.raises(errors.PayloadTooLarge):
            await run(client, task_token=b64(waiting.task_token), result="x" * 2000)
        assert waiting.closed is None


async def test_failure_size_is_the_details_cadence_measures(frontend: FakeFrontend):
    settings = cadence_settings(frontend.address, COMPLETER_MAX_PAYLOAD_BYTES=100)
    async with CompletionClient.create(settings) as client:
        activity = pending(frontend)
        token = b64(activity.task_token)
        # '{"message":"m","details":"<x>"}' is 28 bytes + len(x)
        with pytest.raises(errors.PayloadTooLarge):
            await run(client, task_token=token, error={"message": "m", "details": "x" * 73})
        with pytest.raises(errors.PayloadTooLarge):
            await run(client, task_token=token, action="heartbeat", details="x" * 99)
        await run(client, task_token=token, error={"message": "m", "details": "x" * 72})
    assert [call.method for call in frontend.activity_calls] == ["RespondActivityTaskFailed"]


async def test_nothing_over_the_4_mb_grpc_message_limit_is_sent(frontend: FakeFrontend):
    settings = cadence_settings(frontend.address, COMPLETER_MAX_PAYLOAD_BYTES=64 * MIB)
    async with CompletionClient.create(settings) as client:
        activity = pending(frontend)
        with pytest.raises(errors.PayloadTooLarge, match="gRPC"):
            await run(client, task_token=b64(activity.task_token), result="x" * (4 * MIB))
    assert frontend.activity_calls == []
    assert activity.closed is None


async def test_the_frontend_answers_an_oversized_message_resource_exhausted(
    frontend: FakeFrontend,
):
    # common/rpc/factory.go: grpc.ServerMaxRecvMsgSize(grpcMaxMsgSize); gRPC itself refuses.
    async with grpc.aio.insecure_channel(frontend.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await WorkerAPIStub(channel).RespondActivityTaskCompleted(
                service_worker_pb2.RespondActivityTaskCompletedRequest(
                    task_token=b"{}", result=common_pb2.Payload(data=b"x" * (4 * MIB + 1))
                ),
                timeout=5,
                metadata=YARPC,
            )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert frontend.api.calls == []


# --- the model's own answers on the wire ----------------------------------------------------


async def raw_call(frontend: FakeFrontend, method: str, request: Any) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(frontend.address) as channel:
        stub: Any = WorkerAPIStub(channel)
        if method == "DescribeDomain":
            stub = DomainAPIStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await getattr(stub, method)(request, timeout=5, metadata=YARPC)
    return info.value


async def test_wire_cancel_before_request_is_unknown_with_the_servers_message(
    frontend: FakeFrontend,
):
    # engineimpl/respond_activity_task_canceled.go + metered/metered.go handleErr.
    activity = pending(frontend)
    error = await raw_call(
        frontend,
        "RespondActivityTaskCanceled",
        service_worker_pb2.RespondActivityTaskCanceledRequest(task_token=activity.task_token),
    )
    assert error.code() == grpc.StatusCode.UNKNOWN
    assert error.details() == (
        "cadence internal error, msg: Unable to add ActivityTaskCanceled event to history."
    )


async def test_wire_by_ids_not_pending_is_invalid_argument(frontend: FakeFrontend):
    # engineimpl/history_engine.go getScheduleID; proto/errors.go fromBadRequestError.
    activity = pending(frontend)
    error = await raw_call(
        frontend,
        "RespondActivityTaskCompletedByID",
        service_worker_pb2.RespondActivityTaskCompletedByIDRequest(
            domain=DOMAIN,
            workflow_execution=common_pb2.WorkflowExecution(workflow_id=activity.workflow_id),
            activity_id="other",
        ),
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Cannot locate Activity ScheduleID",
    )


async def test_wire_describe_domain_of_a_missing_domain_is_entity_not_exists(
    frontend: FakeFrontend,
):
    # common/domain/handler.go DescribeDomain; nosql_domain_store.go GetDomain.
    error = await raw_call(
        frontend, "DescribeDomain", service_domain_pb2.DescribeDomainRequest(name="typo")
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Domain typo does not exist.",
    )
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    assert status.details[0].Is(error_pb2.EntityNotExistsError.DESCRIPTOR)


# --- the yarpc transport -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "timeout", "message"),
    [
        ((), 5, "missing service name, caller name, encoding"),
        (YARPC, None, "missing TTL"),
    ],
)
async def test_yarpc_refuses_calls_without_its_headers_or_a_deadline(
    frontend: FakeFrontend, metadata: Any, timeout: Any, message: str
):
    # yarpc v1.88.0 api/transport/request.go ValidateRequest, ValidateRequestContext.
    activity = pending(frontend)
    async with grpc.aio.insecure_channel(frontend.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await WorkerAPIStub(channel).RespondActivityTaskCompleted(
                service_worker_pb2.RespondActivityTaskCompletedRequest(
                    task_token=activity.task_token
                ),
                timeout=timeout,
                metadata=metadata,
            )
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


# --- the server's transient answers --------------------------------------------------------


async def test_shutting_down_and_shard_moved_are_engine_unavailable(client, frontend: FakeFrontend):
    activity = pending(frontend)
    token = b64(activity.task_token)
    # api/handler.go isShuttingDown -> validate.ErrShuttingDown, via metered: UNKNOWN.
    frontend.api.shutting_down = True
    with pytest.raises(errors.EngineUnavailable, match="Shutting down"):
        await run(client, task_token=token, result=1)
    frontend.api.shutting_down = False
    # history/shard/controller.go ShardOwnershipLostError, via metered: UNKNOWN.
    frontend.api.shard_ownership_lost = True
    with pytest.raises(errors.EngineUnavailable, match="Shard is not owned"):
        await run(client, workflow_id=activity.workflow_id, activity_id="approve", result=1)
    frontend.api.shard_ownership_lost = False
    await run(client, task_token=token, result=1)
    assert activity.closed == ("completed", b"1")


EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
INJECTED_FAULTS = [
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
        cadence_status(grpc.StatusCode.UNAVAILABLE, "no healthy upstream"),
        errors.EngineUnavailable,
        id="UNAVAILABLE",
    ),
    pytest.param(
        cadence_status(grpc.StatusCode.UNKNOWN, "cadence internal error, msg: db down"),
        errors.InternalError,
        id="InternalServiceError",
    ),
    pytest.param(
        cadence_status(grpc.StatusCode.PERMISSION_DENIED, "no access"),
        errors.InternalError,
        id="AccessDenied",
    ),
]


@pytest.mark.parametrize(("fault", "expected"), INJECTED_FAULTS)
@pytest.mark.parametrize("action", ["complete", "fail", "heartbeat", "cancel"])
async def test_injected_faults_are_classified_and_no_token_is_logged(
    client,
    frontend: FakeFrontend,
    caplog: pytest.LogCaptureFixture,
    fault: status_pb2.Status,
    expected: type[errors.CompleterError],
    action: str,
):
    token = b64(pending(frontend).task_token)
    frontend.api.fault = fault
    fields: dict[str, Any] = {"task_token": token, "action": action}
    if action == "fail":
        fields["error"] = {"message": "m"}
    with caplog.at_level(logging.DEBUG, logger="completer"), pytest.raises(expected) as info:
        await run(client, **fields)
    assert type(info.value) is expected
    assert len(frontend.activity_calls) == 1
    assert token not in caplog.text
    assert token not in info.value.message


async def test_slow_frontend_is_engine_timeout_within_the_deadline(frontend: FakeFrontend):
    settings = cadence_settings(frontend.address, timeout=0.3)
    async with CompletionClient.create(settings) as client:
        await client.ensure_connected()
        frontend.api.delay = 3.0
        started = time.monotonic()
        with pytest.raises(errors.EngineTimeout):
            await run(client, task_token=b64(pending(frontend).task_token), result=1)
        elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 1.0, elapsed  # gRPC's deadline fired, not the client's margin


async def test_closed_port_is_engine_unavailable_and_retried_on_the_next_call():
    settings = cadence_settings(f"127.0.0.1:{free_port()}", timeout=3.0)
    token = task_token(
        domain_id=str(uuid.uuid4()), workflow_id="w", run_id="", schedule_id=5, activity_id="a"
    )
    async with lazy_client(settings) as client:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(errors.EngineUnavailable):
                await run(client, task_token=b64(token), result=1)
            assert time.monotonic() - started < 3.0


# --- the domain, checked at start ----------------------------------------------------------


async def test_a_wrong_domain_stops_the_start_with_one_sentence(frontend: FakeFrontend):
    # common/domain/handler.go DescribeDomain -> "Domain <name> does not exist." NOT_FOUND.
    backend = CadenceBackend(cadence_settings(frontend.address, domain="typo"))
    with pytest.raises(ConfigurationError) as info:
        await backend.connect()
    assert "CADENCE_DOMAIN" in str(info.value)
    assert "'typo'" in str(info.value)
    await backend.close()
    # Should a lazy client meet it on a request, it is a retried internal error, never
    # activity_not_found.
    async with lazy_client(cadence_settings(frontend.address, domain="typo")) as client:
        with pytest.raises(UnknownDomain) as on_request:
            await run(client, workflow_id="w", activity_id="a", result=1)
    assert on_request.value.code == "internal"
    assert frontend.activity_calls == []


async def test_the_domain_is_described_once_per_channel(client, frontend: FakeFrontend):
    for _ in range(3):
        activity = pending(frontend)
        await run(client, task_token=b64(activity.task_token), action="heartbeat")
    described = [call for call in frontend.api.calls if call.method == "DescribeDomain"]
    assert len(described) == 1
    assert described[0].request.name == DOMAIN


async def test_one_channel_is_reused_across_calls(client, frontend: FakeFrontend):
    backend = client.backend
    assert isinstance(backend, CadenceBackend)
    activity = pending(frontend)
    await run(client, task_token=b64(activity.task_token), action="heartbeat", details=0)
    channel = backend._channel
    for number in range(1, 10):
        await run(client, task_token=b64(activity.task_token), action="heartbeat", details=number)
    assert backend._channel is channel
    peers = {call.peer for call in frontend.api.calls}
    assert len(frontend.activity_calls) == 10
    assert len(peers) == 1, peers  # one TCP connection: the same client port every time


# --- TLS -----------------------------------------------------------------------------------


async def test_cadence_over_tls_with_a_client_certificate(tmp_path: Path):
    pki = make_pki()
    files = pki.write(tmp_path)
    credentials = grpc.ssl_server_credentials(
        [(pki.server.key, pki.server.cert)],
        root_certificates=pki.ca.cert,
        require_client_auth=True,
    )
    async with fake_frontend(tls=credentials) as frontend:
        activity = frontend.api.schedule_activity("approve")
        settings = cadence_settings(
            frontend.address,
            CADENCE_TLS_SERVER_CA_CERT_PATH=str(files["ca.crt"]),
            CADENCE_TLS_CLIENT_CERT_PATH=str(files["client.crt"]),
            CADENCE_TLS_CLIENT_KEY_PATH=str(files["client.key"]),
        )
        async with CompletionClient.create(settings) as client:
            outcome = await run(client, task_token=b64(activity.task_token), result="tls")
        assert outcome.status is Status.COMPLETED
        assert activity.closed == ("completed", b'"tls"')
        # Without the client certificate the server refuses the handshake.
        no_cert = cadence_settings(
            frontend.address, CADENCE_TLS_SERVER_CA_CERT_PATH=str(files["ca.crt"]), timeout=2.0
        )
        async with lazy_client(no_cert) as client:
            with pytest.raises(errors.EngineUnavailable):
                await run(client, workflow_id=activity.workflow_id, activity_id="x", result=1)
        # A server the CA did not sign is refused by the completer.
        other = make_pki("another-ca")
        (tmp_path / "other.crt").write_bytes(other.ca.cert)
        wrong_ca = cadence_settings(
            frontend.address,
            CADENCE_TLS_SERVER_CA_CERT_PATH=str(tmp_path / "other.crt"),
            CADENCE_TLS_CLIENT_CERT_PATH=str(files["client.crt"]),
            CADENCE_TLS_CLIENT_KEY_PATH=str(files["client.key"]),
            timeout=2.0,
        )
        async with lazy_client(wrong_ca) as client:
            with pytest.raises(errors.EngineUnavailable):
                await run(client, workflow_id=activity.workflow_id, activity_id="x", result=1)


async def test_tls_server_name_is_the_name_checked_in_the_certificate(tmp_path: Path):
    pki = make_pki()
    files = pki.write(tmp_path)
    credentials = grpc.ssl_server_credentials([(pki.server.key, pki.server.cert)])
    async with fake_frontend(tls=credentials) as frontend:
        activity = frontend.api.schedule_activity("approve")

        def settings(server_name: str) -> Settings:
            return cadence_settings(
                frontend.address,
                CADENCE_TLS="true",
                CADENCE_TLS_SERVER_CA_CERT_PATH=str(files["ca.crt"]),
                CADENCE_TLS_SERVER_NAME=server_name,
                timeout=2.0,
            )

        async with lazy_client(settings("wrong.example")) as client:
            with pytest.raises(errors.EngineUnavailable):
                await run(client, task_token=b64(activity.task_token), result=1)
        async with CompletionClient.create(settings("localhost")) as client:
            await run(client, task_token=b64(activity.task_token), result=1)
    assert activity.closed == ("completed", b"1")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CADENCE_TLS_CLIENT_CERT_PATH": "{dir}/client.crt"}, "CADENCE_TLS_CLIENT_KEY_PATH"),
        ({"CADENCE_TLS_SERVER_CA_CERT_PATH": "{dir}/missing.crt"}, "CADENCE_TLS_SERVER_CA"),
        (
            {"CADENCE_TLS": "false", "CADENCE_TLS_SERVER_CA_CERT_PATH": "{dir}/ca.crt"},
            "CADENCE_TLS",
        ),
        ({"CADENCE_TLS_SERVER_CA_CERT_PATH": "{dir}/ca.key"}, "CADENCE_TLS_SERVER_CA"),
        (
            {
                "CADENCE_TLS_CLIENT_CERT_PATH": "{dir}/client.crt",
                "CADENCE_TLS_CLIENT_KEY_PATH": "{dir}/client.crt",
            },
            "CADENCE_TLS_CLIENT_KEY_PATH",
        ),
    ],
)
def test_tls_misconfiguration_stops_the_start(tmp_path: Path, env: dict[str, str], variable: str):
    make_pki().write(tmp_path)
    values = {key: value.format(dir=tmp_path) for key, value in env.items()}
    with pytest.raises(ConfigurationError, match=variable):
        CadenceBackend(cadence_settings("localhost:7833", **values))


# --- configuration -------------------------------------------------------------------------


async def test_the_frontend_refuses_a_long_identity_and_the_completer_refuses_to_start(
    frontend: FakeFrontend,
):
    # api/handler.go: "Identity length exceeds limit." (limit.identityLength, 1000 bytes).
    activity = pending(frontend)
    async with grpc.aio.insecure_channel(frontend.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await WorkerAPIStub(channel).RespondActivityTaskCompleted(
                service_worker_pb2.RespondActivityTaskCompletedRequest(
                    task_token=activity.task_token, identity="é" * 501
                ),
                timeout=5,
                metadata=YARPC,
            )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ConfigurationError, match="COMPLETER_IDENTITY"):
        CadenceBackend(
            Settings(
                COMPLETER_BACKEND="cadence", CADENCE_DOMAIN=DOMAIN, COMPLETER_IDENTITY="é" * 501
            )
        )


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
    activity = pending(frontend)
    frontend.api.request_cancel(activity)
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
        SYNC_SCRIPT % b64(activity.task_token),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "{'status': 'heartbeat_recorded', 'cancel_requested': True}"
    assert activity.heartbeats == [b'"sync"']
