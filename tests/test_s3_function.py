"""The S3 function end to end: moto in server mode (S3 -> SQS notifications) and Temporal.

An upload's notification is delivered to an SQS queue by moto, received with boto3, and
handed to the handler the ways Lambda would: the notification itself (S3 -> Lambda), the
SQS messages wrapped in an SQS event (S3 -> SQS -> Lambda), or an EventBridge event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_plus

import boto3
import pytest
import requests
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.config import Config
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from completer.activity import presigned_upload
from completer.client import CompletionClient
from completer.deadletter import DeadLetterQueue
from completer.errors import TransientError
from completer.handlers.s3 import S3Handler
from completer.logs import JsonFormatter
from completer.settings import Settings, get_settings
from tests.support.proxy import TcpProxy
from tests.support.services import free_port
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = [pytest.mark.moto, pytest.mark.temporal]

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "functions" / "s3" / "main.py"
REGION = "us-east-1"
ACCOUNT = "123456789012"
INLINE_MAX = 1024
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}


# --- moto, buckets and queues ---------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def aws_client(service: Literal["s3", "sqs"], endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 2}),
    )


@dataclass
class Bucket:
    """A fresh bucket whose object notifications go to a fresh SQS queue."""

    s3: Any
    sqs: Any
    name: str
    queue_url: str
    queue_arn: str
    seen: set[str] = field(default_factory=set)
    test_event: dict[str, Any] = field(default_factory=dict)

    def put(
        self,
        key: str,
        body: bytes | str,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": self.name, "Key": key, "Body": body}
        if metadata is not None:
            params["Metadata"] = metadata
        if content_type is not None:
            params["ContentType"] = content_type
        response: dict[str, Any] = self.s3.put_object(**params)
        return response

    def receive(self, count: int = 1, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``count`` messages moto delivered (each received once)."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(messages) < count:
            assert time.monotonic() < deadline, f"only {len(messages)} of {count} messages"
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=600,
                AttributeNames=["All"],
            )
            for message in response.get("Messages", []):
                if message["MessageId"] not in self.seen:
                    self.seen.add(message["MessageId"])
                    messages.append(message)
        return messages

    def upload(self, key: str, body: bytes | str, **kwargs: Any) -> dict[str, Any]:
        """Put an object and return the notification moto sent for it (the SQS message)."""
        self.put(key, body, **kwargs)
        (message,) = self.receive()
        return message

    def sqs_event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Messages as Lambda's SQS event source hands them to a function."""
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": REGION,
                }
                for m in messages
            ]
        }

    def eventbridge_event(self, key: str) -> dict[str, Any]:
        """The EventBridge ``Object Created`` event S3 sends for an object (S3 ev-events)."""
        head = self.s3.head_object(Bucket=self.name, Key=key)
        obj: dict[str, Any] = {
            "key": quote_plus(key),
            "size": head["ContentLength"],
            "etag": head["ETag"].strip('"'),
            "sequencer": "00617F08299329D189",
        }
        if head.get("VersionId"):
            obj["version-id"] = head["VersionId"]
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": ACCOUNT,
            "time": "2025-11-28T12:00:00Z",
            "region": REGION,
            "resources": [f"arn:aws:s3:::{self.name}"],
            "detail": {
                "version": "0",
                "bucket": {"name": self.name},
                "object": obj,
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": ACCOUNT,
                "source-ip-address": "203.0.113.15",
                "reason": "PutObject",
            },
        }


@pytest.fixture
def bucket(moto_endpoint: str) -> Bucket:
    s3, sqs = aws_client("s3", moto_endpoint), aws_client("sqs", moto_endpoint)
    name = f"uploads-{uuid.uuid4().hex[:12]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
                }
            ]
        },
    )
    created = Bucket(s3=s3, sqs=sqs, name=name, queue_url=queue_url, queue_arn=queue_arn)
    # S3 (and moto) send s3:TestEvent to the queue when the notification is configured.
    (created.test_event,) = created.receive()
    return created


# --- the completer under test ---------------------------------------------------------------


@pytest.fixture(scope="module")
def test_settings(temporal_server: TemporalServer) -> Settings:
    return Settings(
        COMPLETER_BACKEND="temporal",
        COMPLETER_RPC_TIMEOUT_SECONDS=5,
        COMPLETER_S3_INLINE_MAX_BYTES=INLINE_MAX,
    )


@pytest.fixture(scope="module")
async def engine(test_settings: Settings) -> AsyncIterator[CompletionClient]:
    async with CompletionClient.create(test_settings) as client:
        yield client


@pytest.fixture
def completer(test_settings: Settings, engine: CompletionClient, moto_endpoint: str) -> S3Handler:
    return S3Handler(engine, settings=test_settings, s3=aws_client("s3", moto_endpoint))


@pytest.fixture
def logs() -> Iterator[list[logging.LogRecord]]:
    """Every record the completer logs during the test."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("completer")
    handler, previous = Keep(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def outcomes(records: list[logging.LogRecord]) -> list[str]:
    """The outcome of every object the S3 completer logged, in order."""
    return [
        r.completer["outcome"]  # type: ignore[attr-defined]
        for r in records
        if r.name == "completer.s3" and "outcome" in getattr(r, "completer", {})
    ]


def assert_no_raw_token(records: list[logging.LogRecord], *tokens: str) -> None:
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in records)
    for token in tokens:
        assert token not in text


async def call(handler: Any, event: dict[str, Any]) -> Any:
    """Invoke an S3Handler on this loop, or the Lambda module's handler as Lambda does."""
    if isinstance(handler, S3Handler):
        return await handler.handle(event)
    # The module's handler runs its own kept loop: not on this one, where the worker lives.
    return await asyncio.to_thread(handler, event, None)


async def result_of(waiting: WaitingActivity) -> Any:
    """The workflow's result; a completion that never came fails the test instead of hanging."""
    return await asyncio.wait_for(waiting.handle.result(), timeout=30)


async def assert_still_waiting(waiting: WaitingActivity) -> None:
    description = await waiting.handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert await waiting.pending_activity() is not None


def etag_of(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


# --- the real Lambda module -----------------------------------------------------------------


@contextlib.contextmanager
def lambda_module() -> Iterator[Any]:
    """functions/s3/main.py imported as one Lambda instance would (the environment set first)."""
    # The module makes the process's one settings object: start from none.
    get_settings.cache_clear()
    completer_logger = logging.getLogger("completer")
    saved = (list(completer_logger.handlers), completer_logger.propagate, completer_logger.level)
    spec = importlib.util.spec_from_file_location(f"s3_main_{uuid.uuid4().hex}", MAIN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        # What ends with the Lambda environment: the engine connection on the module's loop.
        module._loop.run_until_complete(module._s3.executor.close())
        module._loop.close()
        get_settings.cache_clear()
        completer_logger.handlers[:] = saved[0]
        completer_logger.propagate, completer_logger.level = saved[1], saved[2]


@pytest.fixture
def lambda_env(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, temporal_server: TemporalServer
) -> pytest.MonkeyPatch:
    """The Lambda environment of these tests (a test may add to it before importing)."""
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL_S3": moto_endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COMPLETER_BACKEND", "temporal")
    monkeypatch.setenv("COMPLETER_S3_INLINE_MAX_BYTES", str(INLINE_MAX))
    monkeypatch.delenv("COMPLETER_RPC_TIMEOUT_SECONDS", raising=False)
    return monkeypatch


@pytest.fixture
def lambda_main(lambda_env: pytest.MonkeyPatch) -> Iterator[Any]:
    """functions/s3/main.py imported as Lambda would, with the environment set first."""
    with lambda_module() as module:
        yield module


# --- completing ----------------------------------------------------------------------------


@pytest.mark.parametrize("delivery", ["direct", "sqs"])
async def test_json_upload_completes_inline_through_the_lambda_module(
    lambda_main: Any, bucket: Bucket, waiting: WaitingActivity, delivery: str
):
    approval = {"approved": True, "by": "ana", "amount": 12.5, "note": "ü"}
    message = bucket.upload(
        "incoming/approval.json",
        json.dumps(approval),
        metadata={"task-token": waiting.token_urlsafe},
    )
    if delivery == "direct":
        assert await call(lambda_main.handler, json.loads(message["Body"])) is None
    else:
        event = bucket.sqs_event([message])
        assert await call(lambda_main.handler, event) == {"batchItemFailures": []}
    assert await result_of(waiting) == approval


async def test_eventbridge_object_created_through_the_lambda_module(
    lambda_main: Any, bucket: Bucket, waiting: WaitingActivity
):
    bucket.put(
        "incoming/eb approval.json", b'{"ok": 1}', metadata={"task-token": waiting.token_b64}
    )
    event = bucket.eventbridge_event("incoming/eb approval.json")
    assert await call(lambda_main.handler, event) is None
    assert await result_of(waiting) == {"ok": 1}


async def test_json_by_content_type_without_json_key(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    message = bucket.upload(
        "incoming/approval",
        b"[1, 2, 3]",
        metadata={"task-token": waiting.token_urlsafe},
        content_type="application/json; charset=utf-8",
    )
    await call(completer, json.loads(message["Body"]))
    assert await result_of(waiting) == [1, 2, 3]


async def test_binary_object_is_passed_by_reference(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    body = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    message = bucket.upload(
        "incoming/scan.png",
        body,
        metadata={"task-token": waiting.token_urlsafe},
        content_type="image/png",
    )
    assert await call(completer, bucket.sqs_event([message])) == {"batchItemFailures": []}
    assert await result_of(waiting) == {
        "uri": f"s3://{bucket.name}/incoming/scan.png",
        "bucket": bucket.name,
        "key": "incoming/scan.png",
        "version_id": None,
        "size": len(body),
        "etag": etag_of(body),
        "content_type": "image/png",
    }


async def test_json_over_the_inline_limit_is_passed_by_reference(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    body = json.dumps({"rows": ["x" * 100] * 20}).encode()
    assert len(body) > INLINE_MAX
    message = bucket.upload(
        "incoming/big.json",
        body,
        metadata={"task-token": waiting.token_urlsafe},
        content_type="application/json",
    )
    await call(completer, json.loads(message["Body"]))
    assert await result_of(waiting) == {
        "uri": f"s3://{bucket.name}/incoming/big.json",
        "bucket": bucket.name,
        "key": "incoming/big.json",
        "version_id": None,
        "size": len(body),
        "etag": etag_of(body),
        "content_type": "application/json",
    }


async def test_json_exactly_at_the_inline_limit_is_inline(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    body = json.dumps({"pad": ""}).encode()
    body = json.dumps({"pad": "y" * (INLINE_MAX - len(body))}).encode()
    assert len(body) == INLINE_MAX
    message = bucket.upload("incoming/edge.json", body, metadata={"task-token": waiting.token_b64})
    await call(completer, json.loads(message["Body"]))
    assert await result_of(waiting) == json.loads(body)


async def test_key_with_spaces_plus_and_non_ascii(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    key = "incoming/réponse final+v2 (1).json"
    message = bucket.upload(key, b'{"key": "odd"}', metadata={"task-token": waiting.token_urlsafe})
    sent_key = json.loads(message["Body"])["Records"][0]["s3"]["object"]["key"]
    assert sent_key == quote_plus(key)  # S3 URL-encodes keys in notifications, space as '+'
    assert " " not in sent_key
    assert await call(completer, bucket.sqs_event([message])) == {"batchItemFailures": []}
    assert await result_of(waiting) == {"key": "odd"}


async def test_fail_action_fails_the_activity_with_the_object(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    error = {
        "message": "rejected by partner",
        "type": "Rejected",
        "details": {"reason": "budget"},
        "non_retryable": True,
    }
    message = bucket.upload(
        "incoming/rejection.json",
        json.dumps(error),
        metadata={"task-token": waiting.token_urlsafe, "action": "fail"},
    )
    await call(completer, json.loads(message["Body"]))
    with pytest.raises(WorkflowFailureError) as failure:
        await result_of(waiting)
    cause: Any = failure.value.cause
    cause = cause.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.message, cause.type, cause.non_retryable) == (
        "rejected by partner",
        "Rejected",
        True,
    )
    assert list(cause.details) == [{"reason": "budget"}]


async def test_by_workflow_and_activity_ids(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    message = bucket.upload(
        "incoming/by-ids.json",
        b'"done"',
        metadata={
            "workflow-id": waiting.workflow_id,
            "activity-id": waiting.activity_id,
            "run-id": waiting.run_id,
        },
    )
    await call(completer, json.loads(message["Body"]))
    assert await result_of(waiting) == "done"


async def test_heartbeat_leaves_the_activity_waiting(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity, logs: list[Any]
):
    message = bucket.upload(
        "incoming/progress.json",
        b'{"progress": 0.5}',
        metadata={"task-token": waiting.token_urlsafe, "action": "heartbeat"},
    )
    await call(completer, json.loads(message["Body"]))
    assert outcomes(logs) == ["heartbeat_recorded"]
    await assert_still_waiting(waiting)


async def test_presigned_upload_with_the_token_header_completes(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    upload = presigned_upload(
        bucket.s3,
        bucket=bucket.name,
        key="incoming/partner.json",
        task_token=waiting.token_urlsafe,
        content_type="application/json",
    )
    response = await asyncio.to_thread(
        requests.put, upload.url, data=b'{"invoice": 42}', headers=upload.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    (message,) = bucket.receive()
    await call(completer, bucket.sqs_event([message]))
    assert await result_of(waiting) == {"invoice": 42}


async def test_versioned_object_is_read_at_the_version_the_event_names(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    bucket.s3.put_bucket_versioning(
        Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"}
    )
    token = {"task-token": waiting.token_urlsafe}
    first = bucket.put("incoming/versioned.json", b'{"v": 1}', metadata=token)["VersionId"]
    bucket.put("incoming/versioned.json", b'{"v": 2}', metadata=token)
    first_message, _ = bucket.receive(2)
    # moto's records carry neither versionId nor sequencer; AWS's do: add them as AWS would.
    event = json.loads(first_message["Body"])
    event["Records"][0]["s3"]["object"].update(versionId=first, sequencer="0055AED6DCD90281E5")
    await call(completer, event)
    assert await result_of(waiting) == {"v": 1}


async def test_versioned_reference_names_the_version(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity
):
    bucket.s3.put_bucket_versioning(
        Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"}
    )
    version = bucket.put(
        "incoming/scan.bin", b"\x00\x01", metadata={"task-token": waiting.token_urlsafe}
    )["VersionId"]
    bucket.receive()
    await call(completer, bucket.eventbridge_event("incoming/scan.bin"))
    result = await result_of(waiting)
    assert (result["version_id"], result["size"]) == (version, 2)


# --- permanent problems: logged, never raised, nothing completed ----------------------------


@pytest.mark.parametrize("delivery", ["direct", "sqs"])
async def test_missing_metadata_is_permanent(
    completer: S3Handler,
    bucket: Bucket,
    waiting: WaitingActivity,
    logs: list[Any],
    delivery: str,
):
    message = bucket.upload("incoming/anonymous.json", b'{"a": 1}', metadata={"other": "x"})
    event = json.loads(message["Body"]) if delivery == "direct" else bucket.sqs_event([message])
    expected: Any = None if delivery == "direct" else {"batchItemFailures": []}
    assert await call(completer, event) == expected
    assert outcomes(logs) == ["invalid_request"]
    await assert_still_waiting(waiting)


@pytest.mark.parametrize("delivery", ["direct", "sqs"])
async def test_object_deleted_before_read_is_permanent(
    completer: S3Handler,
    bucket: Bucket,
    waiting: WaitingActivity,
    logs: list[Any],
    delivery: str,
):
    message = bucket.upload(
        "incoming/gone.json", b'{"a": 1}', metadata={"task-token": waiting.token_urlsafe}
    )
    bucket.s3.delete_object(Bucket=bucket.name, Key="incoming/gone.json")
    event = json.loads(message["Body"]) if delivery == "direct" else bucket.sqs_event([message])
    expected: Any = None if delivery == "direct" else {"batchItemFailures": []}
    assert await call(completer, event) == expected
    assert outcomes(logs) == ["invalid_request"]
    assert "gone" in logs[-1].completer["reason"]
    await assert_still_waiting(waiting)
    assert_no_raw_token(logs, waiting.token_urlsafe, waiting.token_b64)


async def test_bad_json_is_permanent(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity, logs: list[Any]
):
    message = bucket.upload(
        "incoming/bad.json", b'{"approved": tru', metadata={"task-token": waiting.token_urlsafe}
    )
    assert await call(completer, json.loads(message["Body"])) is None
    assert outcomes(logs) == ["invalid_request"]
    await assert_still_waiting(waiting)
    assert_no_raw_token(logs, waiting.token_urlsafe)


async def test_unknown_activity_is_permanent_and_a_second_upload_changes_nothing(
    completer: S3Handler, bucket: Bucket, waiting: WaitingActivity, logs: list[Any]
):
    token = {"task-token": waiting.token_urlsafe}
    first = bucket.upload("incoming/first.json", b'"first"', metadata=token)
    second = bucket.upload("incoming/second.json", b'"second"', metadata=token)
    await call(completer, json.loads(first["Body"]))
    assert await result_of(waiting) == "first"
    assert await call(completer, bucket.sqs_event([second])) == {"batchItemFailures": []}
    # The same notification delivered again (at least once) is also just logged.
    assert await call(completer, json.loads(first["Body"])) is None
    assert outcomes(logs) == ["completed", "activity_not_found", "activity_not_found"]
    assert await result_of(waiting) == "first"
    assert_no_raw_token(logs, waiting.token_urlsafe)


async def test_test_event_and_non_create_events_are_ignored(
    completer: S3Handler, bucket: Bucket, logs: list[Any]
):
    assert json.loads(bucket.test_event["Body"])["Event"] == "s3:TestEvent"
    test_event = bucket.sqs_event([bucket.test_event])
    assert await call(completer, test_event) == {"batchItemFailures": []}
    removed = json.loads(bucket.upload("incoming/x.json", b"{}")["Body"])
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    assert await call(completer, removed) is None
    assert outcomes(logs) == []


# --- transient problems: raised (direct, EventBridge) or reported (SQS) ---------------------


def throttle_keys(s3: Any, marker: str) -> None:
    """Make S3 answer 503 SlowDown to every request for keys containing ``marker``."""

    class Body:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield b"<Error><Code>SlowDown</Code><Message>Slow down.</Message></Error>"

    def slow_down(request: Any, **_: Any) -> AWSResponse | None:
        if marker in request.url:
            return AWSResponse(request.url, 503, HTTPHeaders(), Body())
        return None

    s3.meta.events.register("before-send.s3.HeadObject", slow_down)


async def test_sqs_batch_with_mixed_outcomes_names_exactly_the_transient_ones(
    completer: S3Handler, bucket: Bucket, new_waiting: Any, logs: list[Any]
):
    done, throttled, also_done = await new_waiting(), await new_waiting(), await new_waiting()
    throttle_keys(completer.s3, "throttled")
    messages = [
        bucket.upload("incoming/ok.json", b'"ok"', metadata={"task-token": done.token_urlsafe}),
        bucket.upload("incoming/no-metadata.json", b'"lost"'),
        bucket.upload(
            "incoming/throttled.json", b'"later"', metadata={"task-token": throttled.token_urlsafe}
        ),
        bucket.upload("incoming/bad.json", b"{", metadata={"task-token": also_done.token_urlsafe}),
        bucket.upload(
            "incoming/ok-too.bin", b"\x00", metadata={"task-token": also_done.token_urlsafe}
        ),
    ]
    event = bucket.sqs_event(messages)
    assert await call(completer, event) == {
        "batchItemFailures": [{"itemIdentifier": messages[2]["MessageId"]}]
    }
    # The records run concurrently: one line each, in any order.
    assert sorted(outcomes(logs)) == sorted(
        ["completed", "invalid_request", "internal", "invalid_request", "completed"]
    )
    assert await result_of(done) == "ok"
    assert (await result_of(also_done))["key"] == "incoming/ok-too.bin"
    await assert_still_waiting(throttled)


async def test_s3_throttling_raises_for_direct_events_after_the_other_records(
    completer: S3Handler, bucket: Bucket, new_waiting: Any
):
    slow, fine = await new_waiting(), await new_waiting()
    throttle_keys(completer.s3, "throttled")
    first = bucket.upload(
        "incoming/throttled.json", b"1", metadata={"task-token": slow.token_urlsafe}
    )
    second = bucket.upload("incoming/fine.json", b"2", metadata={"task-token": fine.token_urlsafe})
    event = {
        "Records": json.loads(first["Body"])["Records"] + json.loads(second["Body"])["Records"]
    }
    with pytest.raises(TransientError):
        await call(completer, event)
    assert await result_of(fine) == 2
    await assert_still_waiting(slow)


async def test_engine_down_is_reported_and_a_retry_completes_once_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
    temporal_server: TemporalServer,
    moto_endpoint: str,
    bucket: Bucket,
    waiting: WaitingActivity,
    logs: list[Any],
):
    proxy = TcpProxy(temporal_server.port)  # not started yet: its port refuses connections
    monkeypatch.setenv("TEMPORAL_ADDRESS", proxy.address)
    settings = Settings(COMPLETER_BACKEND="temporal", COMPLETER_RPC_TIMEOUT_SECONDS=2)
    engine_client = CompletionClient.create(settings)  # not connected: the engine is down
    try:
        down = S3Handler(engine_client, settings=settings, s3=aws_client("s3", moto_endpoint))
        message = bucket.upload(
            "incoming/while-down.json", b'"made it"', metadata={"task-token": waiting.token_b64}
        )
        sqs_event = bucket.sqs_event([message])
        assert await call(down, sqs_event) == {
            "batchItemFailures": [{"itemIdentifier": message["MessageId"]}]
        }
        with pytest.raises(TransientError):
            await call(down, json.loads(message["Body"]))
        await assert_still_waiting(waiting)
        assert set(outcomes(logs)) <= {"engine_unavailable", "engine_timeout"}
        with proxy:
            # SQS redelivers; the breaker answers at once until its probe (every 0.5 s) has
            # seen the engine back, so the record may come back once more before it completes.
            deadline = time.monotonic() + 5
            while (answer := await call(down, sqs_event)) != {"batchItemFailures": []}:
                assert answer == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            assert await result_of(waiting) == "made it"
    finally:
        await engine_client.close()
    assert_no_raw_token(logs, waiting.token_b64)


def deny_keys(s3: Any, marker: str) -> None:
    """Make S3 answer 403 AccessDenied to HeadObject for keys containing ``marker`` (an IAM gap)."""

    class Body:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"

    def deny(request: Any, **_: Any) -> AWSResponse | None:
        if marker in request.url:
            return AWSResponse(request.url, 403, HTTPHeaders(), Body())
        return None

    s3.meta.events.register("before-send.s3.HeadObject", deny)


@pytest.fixture
def dead_letter_queue(moto_endpoint: str) -> tuple[Any, str]:
    sqs = aws_client("sqs", moto_endpoint)
    return sqs, sqs.create_queue(QueueName=f"refused-{uuid.uuid4().hex[:12]}")["QueueUrl"]


def dead_letters(sqs: Any, queue_url: str, count: int) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(letters) < count and time.monotonic() < deadline:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        letters += [json.loads(m["Body"]) for m in response.get("Messages", [])]
    return letters


async def test_access_denied_is_retried_never_dropped_nor_dead_lettered(
    test_settings: Settings,
    engine: CompletionClient,
    moto_endpoint: str,
    bucket: Bucket,
    waiting: WaitingActivity,
    dead_letter_queue: tuple[Any, str],
    logs: list[Any],
):
    sqs, queue_url = dead_letter_queue
    s3 = aws_client("s3", moto_endpoint)
    deny_keys(s3, "denied")
    handler = S3Handler(
        engine, settings=test_settings, s3=s3, dead_letters=DeadLetterQueue(queue_url, sqs=sqs)
    )
    message = bucket.upload(
        "incoming/denied.json", b'"later"', metadata={"task-token": waiting.token_b64}
    )
    assert await call(handler, bucket.sqs_event([message])) == {
        "batchItemFailures": [{"itemIdentifier": message["MessageId"]}]
    }
    with pytest.raises(TransientError):
        await call(handler, json.loads(message["Body"]))
    [line, _] = [r.completer for r in logs if r.name == "completer.s3"]
    assert (line["outcome"], line["disposition"]) == ("internal", "retry")
    assert "s3:GetObject" in line["reason"]
    assert dead_letters(sqs, queue_url, 1) == []
    await assert_still_waiting(waiting)
    # Once the operator fixes the policy, the retry completes.
    fixed = S3Handler(engine, settings=test_settings, s3=aws_client("s3", moto_endpoint))
    assert await call(fixed, bucket.sqs_event([message])) == {"batchItemFailures": []}
    assert await result_of(waiting) == "later"


async def test_permanent_failures_are_sent_to_the_dead_letter_queue(
    test_settings: Settings,
    engine: CompletionClient,
    moto_endpoint: str,
    bucket: Bucket,
    waiting: WaitingActivity,
    dead_letter_queue: tuple[Any, str],
    logs: list[Any],
):
    sqs, queue_url = dead_letter_queue
    handler = S3Handler(
        engine,
        settings=test_settings,
        s3=aws_client("s3", moto_endpoint),
        dead_letters=DeadLetterQueue(queue_url, sqs=sqs),
    )
    unnamed = bucket.upload("incoming/no-metadata.json", b'"lost"')
    bad = bucket.upload("incoming/bad.json", b"{", metadata={"task-token": waiting.token_b64})
    event = bucket.sqs_event([unnamed, bad])
    assert await call(handler, event) == {"batchItemFailures": []}
    letters = sorted(dead_letters(sqs, queue_url, 2), key=lambda letter: letter["source"])
    assert [letter["source"] for letter in letters] == [
        f"s3://{bucket.name}/incoming/bad.json",
        f"s3://{bucket.name}/incoming/no-metadata.json",
    ]
    for letter, message in zip(letters, [bad, unnamed], strict=True):
        assert set(letter) == {"source", "version_id", "error", "event"}
        assert letter["error"]["code"] == "invalid_request"
        assert letter["error"]["message"]
        # The notification record exactly as S3 sent it.
        assert letter["event"] == json.loads(message["Body"])["Records"][0]
    refused = [r.completer for r in logs if r.name == "completer.s3"]
    assert len(refused) == 2
    assert all(line["disposition"] == "dead_letter" for line in refused)
    assert all(line["dead_letter_message_id"] for line in refused)
    await assert_still_waiting(waiting)
    assert_no_raw_token(logs, waiting.token_b64)


async def test_a_dead_letter_that_cannot_be_sent_is_retried_not_lost(
    test_settings: Settings, engine: CompletionClient, moto_endpoint: str, bucket: Bucket
):
    sqs = aws_client("sqs", moto_endpoint)
    missing = f"{moto_endpoint}/{ACCOUNT}/no-such-queue-{uuid.uuid4().hex[:8]}"
    handler = S3Handler(
        engine,
        settings=test_settings,
        s3=aws_client("s3", moto_endpoint),
        dead_letters=DeadLetterQueue(missing, sqs=sqs),
    )
    message = bucket.upload("incoming/no-metadata.json", b'"lost"')
    assert await call(handler, bucket.sqs_event([message])) == {
        "batchItemFailures": [{"itemIdentifier": message["MessageId"]}]
    }


class SlowEngine:
    """An executor that adds engine latency in front of the real client."""

    def __init__(self, engine: CompletionClient, delay: float) -> None:
        self.engine, self.delay = engine, delay

    async def execute(self, request: Any, /, *, origin: Any = None) -> Any:
        await asyncio.sleep(self.delay)
        return await self.engine.execute(request, origin=origin)


async def test_the_records_of_a_batch_are_carried_out_concurrently(
    test_settings: Settings,
    engine: CompletionClient,
    moto_endpoint: str,
    bucket: Bucket,
    new_waiting: Any,
):
    handler = S3Handler(
        SlowEngine(engine, 0.5), settings=test_settings, s3=aws_client("s3", moto_endpoint)
    )
    activities = [await new_waiting() for _ in range(8)]
    messages = [
        bucket.upload(f"incoming/{i}.json", str(i), metadata={"task-token": a.token_urlsafe})
        for i, a in enumerate(activities)
    ]
    started = time.monotonic()
    assert await call(handler, bucket.sqs_event(messages)) == {"batchItemFailures": []}
    # One after another would take 8 x 0.5 s; together they take about one delay.
    assert time.monotonic() - started < 2.5
    assert [await result_of(a) for a in activities] == list(range(8))


@pytest.fixture
def dead_letter_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """A real SQS queue on moto named by COMPLETER_DEAD_LETTER_QUEUE (before the module loads)."""
    url: str = aws_client("sqs", moto_endpoint).create_queue(
        QueueName=f"refused-{uuid.uuid4().hex[:12]}"
    )["QueueUrl"]
    monkeypatch.setenv("COMPLETER_DEAD_LETTER_QUEUE", url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    return url


async def test_the_lambda_module_dead_letters_to_the_configured_queue(
    dead_letter_env: str, lambda_main: Any, moto_endpoint: str, bucket: Bucket
):
    message = bucket.upload("incoming/unnamed.json", b'"lost"')
    assert await call(lambda_main.handler, bucket.sqs_event([message])) == {"batchItemFailures": []}
    [letter] = dead_letters(aws_client("sqs", moto_endpoint), dead_letter_env, 1)
    assert letter["source"] == f"s3://{bucket.name}/incoming/unnamed.json"
    assert letter["error"]["code"] == "invalid_request"


# --- the cold path --------------------------------------------------------------------------

_IMPORTS_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(module.handler)
prefixes = sys.argv[2].split(",")
loaded = [m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in prefixes)]
print(json.dumps(sorted(loaded)))
"""

_NEVER = ["functions_framework", "flask", "google.cloud.pubsub", "google.cloud.pubsub_v1"]
_ENGINE_SDKS = ["temporalio", "grpc", "cadence"]


def probe_imports(env: dict[str, str], prefixes: list[str]) -> tuple[int, list[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_PROBE, str(MAIN), ",".join(prefixes)],
        env={"PATH": os.environ.get("PATH", ""), **AWS_ENV, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    loaded = json.loads(result.stdout) if result.returncode == 0 else []
    return result.returncode, loaded, result.stderr


def test_cold_path_with_step_functions_loads_no_engine_sdk_nor_gcp():
    if importlib.util.find_spec("completer.backends.stepfunctions") is None:
        pytest.skip("the Step Functions backend (issue 6) is not in this checkout yet")
    code, loaded, stderr = probe_imports(
        {"COMPLETER_BACKEND": "stepfunctions"}, _NEVER + _ENGINE_SDKS
    )
    assert code == 0, stderr
    assert loaded == []


def test_cold_path_with_temporal_loads_nothing_from_gcp(temporal_server: TemporalServer):
    code, loaded, stderr = probe_imports(
        {"COMPLETER_BACKEND": "temporal", "TEMPORAL_ADDRESS": temporal_server.address},
        [*_NEVER, "temporalio"],
    )
    assert code == 0, stderr
    assert "temporalio" in loaded  # the probe sees what is loaded...
    assert [m for m in loaded if not m.startswith("temporalio")] == []  # ...and GCP is not


def test_wrong_configuration_fails_at_import_with_one_sentence():
    code, _, stderr = probe_imports({"COMPLETER_RPC_TIMEOUT_SECONDS": "soon"}, [])
    assert code != 0
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("completer.errors.ConfigurationError: COMPLETER_RPC_TIMEOUT_SECONDS")


# --- the completion ledger (docs/ledger.md) ----------------------------------------------------


async def test_a_notification_delivered_twice_to_two_instances_completes_once(
    lambda_env: pytest.MonkeyPatch, moto_endpoint: str, bucket: Bucket, waiting: WaitingActivity
):
    """S3 (and SQS) deliver at least once: the second delivery, to another instance sharing
    the DynamoDB ledger, answers the first outcome and dead-letters nothing."""
    from completer.ledger.dynamodb import create_table

    table = f"ledger-{uuid.uuid4().hex[:8]}"
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)
    create_table(table, client=dynamodb)
    dead_letters = bucket.sqs.create_queue(QueueName=f"dead-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    lambda_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    lambda_env.setenv("COMPLETER_LEDGER", f"dynamodb://{table}")
    lambda_env.setenv("COMPLETER_DEAD_LETTER_QUEUE", dead_letters)
    message = bucket.upload(
        "incoming/twice.json", b'{"approved": true}', metadata={"task-token": waiting.token_b64}
    )
    instances = contextlib.ExitStack()
    try:
        # Each import connects on its own loop (Lambda's init phase), off this running one.
        first = await asyncio.to_thread(instances.enter_context, lambda_module())
        second = await asyncio.to_thread(instances.enter_context, lambda_module())
        event = bucket.sqs_event([message])
        assert await call(first.handler, event) == {"batchItemFailures": []}
        assert await result_of(waiting) == {"approved": True}
        # Without the ledger the second delivery would be activity_not_found, dead-lettered.
        assert await call(second.handler, event) == {"batchItemFailures": []}
        assert first._ledger.ledger is not second._ledger.ledger
    finally:
        # Each instance closes its connections on its own loop, off this running one.
        await asyncio.to_thread(instances.close)
    left = bucket.sqs.receive_message(QueueUrl=dead_letters, WaitTimeSeconds=1)
    assert left.get("Messages", []) == []
    items = dynamodb.scan(TableName=table)["Items"]
    assert len(items) == 1  # one completion recorded, by the first instance
