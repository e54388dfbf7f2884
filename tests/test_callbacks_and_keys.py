"""Callback URLs and correlation keys on real services.

Temporal dev server for the engine; the ledger on the Firestore emulator (GCP triggers) and
on DynamoDB in moto (AWS triggers); S3 -> SQS notifications and Step Functions on moto;
Pub/Sub and Cloud Storage on their emulators. The completion chain is the one every
function builds: ``completer.correlation.build_executor(settings, client)``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError as TemporalActivityError
from temporalio.exceptions import ApplicationError

from completer.activity import callback_url, callback_url_async, register_async
from completer.callbacks import open_callback
from completer.cli import EXIT_CODES
from completer.client import CompletionClient
from completer.correlation import CorrelationExecutor, build_executor
from completer.errors import ConfigurationError, Conflict, InvalidRequest, Unauthorized
from completer.events.objects import KeyPattern
from completer.handlers.exchange import HttpRequest
from completer.handlers.gcs import GcsHandler
from completer.handlers.http import HttpHandler
from completer.handlers.pubsub import PubSubHandler
from completer.handlers.s3 import S3Handler
from completer.ledger import Ledger, create_store, parse_ledger_url
from completer.ledger.dynamodb import create_table
from completer.links import create_link, open_link
from completer.models import CompletionRequest, parse_request
from completer.settings import Settings
from completer.storage.gcs import GcsReader
from tests.support.gcs import GcsEmulator, gcs_emulator
from tests.support.moto_server import FAKE_CREDENTIALS, REGION
from tests.support.pubsub import PubSubEmulator, pubsub_emulator
from tests.support.stepfunctions import MotoStepFunctions, moto_stepfunctions
from tests.support.temporal import TemporalServer, WaitingActivity
from tests.test_cli import completer as run_cli

SECRET = "callback-secret-" + "x" * 32
FUNCTION_URL = "https://fn.example.test/complete"

# A Stripe-like event (https://docs.stripe.com/api/events/object), trimmed.
STRIPE_SUCCEEDED: dict[str, Any] = {
    "id": "evt_3PZ1",
    "object": "event",
    "type": "payment_intent.succeeded",
    "created": 1764500000,
    "data": {
        "object": {
            "id": "pi_3PZ1",
            "object": "payment_intent",
            "amount": 12000,
            "currency": "eur",
            "status": "succeeded",
            "metadata": {"order": "ORDER-1042"},
        }
    },
}
STRIPE_FAILED_WHEN = "type == 'payment_intent.payment_failed'"

# A GitHub workflow_run webhook (https://docs.github.com/webhooks/webhook-events-and-payloads),
# trimmed.
GITHUB_RUN_FAILED: dict[str, Any] = {
    "action": "completed",
    "workflow_run": {
        "id": 30433642,
        "name": "Build",
        "head_branch": "main",
        "status": "completed",
        "conclusion": "failure",
        "html_url": "https://github.com/octo-org/octo-repo/actions/runs/30433642",
    },
    "repository": {"full_name": "octo-org/octo-repo"},
}


# --- services --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_sfn() -> Iterator[MotoStepFunctions]:
    # One moto server for S3, SQS, DynamoDB and Step Functions.
    yield from moto_stepfunctions()


@pytest.fixture
def aws(moto_sfn: MotoStepFunctions, monkeypatch: pytest.MonkeyPatch) -> str:
    endpoint = moto_sfn.endpoint
    for name, value in {
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_ENDPOINT_URL_SFN": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    return endpoint


def aws_client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(signature_version="s3v4"),
        **FAKE_CREDENTIALS,
    )


@pytest.fixture
def dynamodb_table(aws: str) -> str:
    table = f"ledger-{uuid.uuid4().hex[:10]}"
    create_table(table, client=aws_client("dynamodb", aws))
    return table


def temporal_settings(**extra: Any) -> Settings:
    return Settings(
        COMPLETER_BACKEND="temporal",
        COMPLETER_RPC_TIMEOUT_SECONDS=5,
        COMPLETER_LINK_SECRET=SECRET,
        COMPLETER_ALLOW_UNSIGNED="true",
        **extra,
    )


@dataclass
class Chain:
    settings: Settings
    client: CompletionClient
    executor: CorrelationExecutor

    @property
    def ledger(self) -> Ledger:
        return self.executor.ledger


@pytest.fixture
async def gcp_chain(temporal_server: TemporalServer, firestore_host: str) -> AsyncIterator[Chain]:
    """The chain of a GCP function: keys -> Firestore ledger -> Temporal."""
    settings = temporal_settings(
        COMPLETER_LEDGER=f"firestore://(default)/ledger-{uuid.uuid4().hex[:8]}",
        COMPLETER_GCS_KEY_PATTERN="inbox/{correlation_key}.json",
    )
    async with CompletionClient.create(settings) as client:
        executor = build_executor(settings, client)
        try:
            yield Chain(settings, client, executor)
        finally:
            await executor.ledger.close()


@pytest.fixture
async def aws_chain(temporal_server: TemporalServer, dynamodb_table: str) -> AsyncIterator[Chain]:
    """The chain of an AWS function: keys -> DynamoDB ledger (moto) -> Temporal."""
    settings = temporal_settings(
        COMPLETER_LEDGER=f"dynamodb://{dynamodb_table}",
        COMPLETER_S3_KEY_PATTERN="inbox/{correlation_key}.json",
    )
    async with CompletionClient.create(settings) as client:
        executor = build_executor(settings, client)
        try:
            yield Chain(settings, client, executor)
        finally:
            await executor.ledger.close()


@pytest.fixture
async def memory_chain(temporal_server: TemporalServer) -> AsyncIterator[Chain]:
    """A function without a shared ledger: callbacks still replay within the instance."""
    settings = temporal_settings()
    async with CompletionClient.create(settings) as client:
        executor = build_executor(settings, client)
        try:
            yield Chain(settings, client, executor)
        finally:
            await executor.ledger.close()


async def post(
    handler: HttpHandler,
    *,
    query: dict[str, str] | None = None,
    body: bytes | Any = b"",
    media_type: str = "application/json",
    method: str = "POST",
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = await handler.handle(
        HttpRequest(
            method,
            headers={"content-type": media_type, "content-length": str(len(raw))},
            query=query or {},
            body=raw,
        )
    )
    return answer.status, answer.body


def sealed(url: str) -> dict[str, str]:
    """The query of a callback URL, decoded as the function sees it."""
    return {"callback": parse_qs(urlsplit(url).query)["callback"][0]}


async def failure_of(waiting: WaitingActivity) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(waiting.handle.result(), 20)
    cause = failed.value.cause
    assert isinstance(cause, TemporalActivityError)
    assert isinstance(cause.cause, ApplicationError)
    return cause.cause


# --- callback URLs: made ---------------------------------------------------------------------


def test_bad_expressions_are_refused_when_the_url_is_made():
    bads: list[dict[str, Any]] = [{"select": "data.["}, {"fail_when": "type =="}, {"select": ""}]
    for bad in bads:
        with pytest.raises(InvalidRequest, match="JMESPath"):
            callback_url(FUNCTION_URL, secret=SECRET, task_token="dG9rZW4", **bad)


def test_a_callback_by_ids_seals_a_run_id():
    with pytest.raises(InvalidRequest, match="run_id"):
        callback_url(FUNCTION_URL, secret=SECRET, workflow_id="w", activity_id="a")
    url = callback_url(FUNCTION_URL, secret=SECRET, workflow_id="w", activity_id="a", run_id="r")
    opened = open_callback(sealed(url)["callback"], secret=SECRET)
    assert opened.activity == {"workflow_id": "w", "activity_id": "a", "run_id": "r"}


def test_a_callback_is_not_a_link_and_a_link_is_not_a_callback():
    url = callback_url(FUNCTION_URL, secret=SECRET, task_token="dG9rZW4")
    with pytest.raises(Unauthorized):
        open_link(sealed(url)["callback"], secret=SECRET)
    link = create_link(FUNCTION_URL, secret=SECRET, choice="approve", task_token="dG9rZW4")
    with pytest.raises(Unauthorized):
        open_callback(parse_qs(urlsplit(link).query)["link"][0], secret=SECRET)


def test_expired_and_tampered_callbacks_are_unauthorized():
    url = callback_url(FUNCTION_URL, secret=SECRET, task_token="dG9rZW4", ttl_seconds=60)
    part = sealed(url)["callback"]
    with pytest.raises(Unauthorized, match="expired"):
        open_callback(part, secret=SECRET, now=time.time() + 61)
    flipped = part[:-5] + ("A" if part[-5] != "A" else "B") + part[-4:]
    with pytest.raises(Unauthorized, match="altered"):
        open_callback(flipped, secret=SECRET)
    with pytest.raises(Unauthorized):
        open_callback(part, secret="another-secret-" + "y" * 32)


async def test_callback_url_async_looks_the_run_id_up(temporal_client, waiting: WaitingActivity):
    url = await callback_url_async(
        FUNCTION_URL,
        secret=SECRET,
        workflow_id=waiting.workflow_id,
        activity_id=waiting.activity_id,
        client=temporal_client,
    )
    assert open_callback(sealed(url)["callback"], secret=SECRET).activity["run_id"] == (
        waiting.run_id
    )


# --- callback URLs: called -------------------------------------------------------------------


async def test_stripe_like_event_completes_with_what_select_picks(
    memory_chain: Chain, waiting: WaitingActivity
):
    # Signing secrets set: JSON requests must be signed, callbacks carry their own credential.
    settings = temporal_settings(
        COMPLETER_SIGNING_SECRETS="whsec_" + base64.b64encode(b"k" * 32).decode()
    )
    handler = HttpHandler(memory_chain.executor, settings=settings)
    url = callback_url(
        FUNCTION_URL,
        secret=SECRET,
        task_token=waiting.token_b64,
        select="data.object",
        fail_when=STRIPE_FAILED_WHEN,
    )
    assert await post(handler, query=sealed(url), body=STRIPE_SUCCEEDED) == (
        200,
        {"status": "completed"},
    )
    assert await asyncio.wait_for(waiting.handle.result(), 20) == STRIPE_SUCCEEDED["data"]["object"]
    # The provider retries the same event: the first answer again, no engine call.
    assert await post(handler, query=sealed(url), body=STRIPE_SUCCEEDED) == (
        200,
        {"status": "completed", "replayed": True},
    )
    other = {**STRIPE_SUCCEEDED, "data": {"object": {"id": "pi_other"}}}
    status, body = await post(handler, query=sealed(url), body=other)
    assert (status, body["error"]["code"]) == (409, "conflict")
    # An unsigned JSON completion request is still refused by the signature rule.
    status, body = await post(handler, body={"task_token": waiting.token_b64})
    assert (status, body["error"]["code"]) == (401, "unauthorized")


async def test_github_workflow_run_failure_fails_the_activity(
    memory_chain: Chain, temporal_client, waiting: WaitingActivity
):
    handler = HttpHandler(memory_chain.executor, settings=memory_chain.settings)
    url = await callback_url_async(
        FUNCTION_URL,
        secret=SECRET,
        workflow_id=waiting.workflow_id,
        activity_id=waiting.activity_id,
        client=temporal_client,
        select="workflow_run.{id: id, conclusion: conclusion, url: html_url}",
        fail_when="workflow_run.conclusion != 'success'",
    )
    assert await post(handler, query=sealed(url), body=GITHUB_RUN_FAILED) == (
        200,
        {"status": "failed"},
    )
    error = await failure_of(waiting)
    assert error.type == "CallbackFailed"
    assert error.details == (
        {
            "id": 30433642,
            "conclusion": "failure",
            "url": GITHUB_RUN_FAILED["workflow_run"]["html_url"],
        },
    )


async def test_text_body_completes_with_the_text(memory_chain: Chain, waiting: WaitingActivity):
    handler = HttpHandler(memory_chain.executor, settings=memory_chain.settings)
    url = callback_url(FUNCTION_URL, secret=SECRET, task_token=waiting.token_urlsafe)
    text = "signed by Ana Müller\nenvelope 42"
    status, _ = await post(handler, query=sealed(url), body=text.encode(), media_type="text/plain")
    assert status == 200
    assert await asyncio.wait_for(waiting.handle.result(), 20) == text


async def test_callback_refusals(memory_chain: Chain, waiting: WaitingActivity):
    handler = HttpHandler(memory_chain.executor, settings=memory_chain.settings)
    url = callback_url(FUNCTION_URL, secret=SECRET, task_token=waiting.token_b64, ttl_seconds=60)
    query = sealed(url)

    async def code(**kwargs: Any) -> tuple[int, str]:
        status, body = await post(handler, **kwargs)
        return status, body["error"]["code"]

    assert await code(query=query, body=b"<x/>", media_type="application/xml") == (
        415,
        "unsupported_media_type",
    )
    assert await code(query=query, method="GET") == (405, "method_not_allowed")
    for bad in (b'{"a": 1, "a": 2}', b'{"a": "\\ud800"}', b'{"n": ' + b"9" * 400 + b"}"):
        assert await code(query=query, body=bad) == (400, "invalid_request")
    too_big = b'"' + b"x" * memory_chain.settings.max_body_bytes + b'"'
    assert await code(query=query, body=too_big) == (413, "payload_too_large")
    part = sealed(url)["callback"]
    stale = callback_url(
        FUNCTION_URL,
        secret=SECRET,
        task_token=waiting.token_b64,
        ttl_seconds=60,
        now=time.time() - 120,
    )
    assert await code(query=sealed(stale), body={}) == (401, "unauthorized")
    assert await code(query={"callback": part[:-4] + "AAAA"}, body={}) == (401, "unauthorized")
    assert await code(query={"callback": "nonsense"}, body={}) == (401, "unauthorized")
    # Nothing of the above completed the activity.
    assert (await waiting.pending_activity()) is not None


async def test_callbacks_without_a_link_secret_are_unauthorized(memory_chain: Chain):
    settings = Settings(COMPLETER_BACKEND="temporal", COMPLETER_ALLOW_UNSIGNED="true")
    handler = HttpHandler(memory_chain.executor, settings=settings)
    url = callback_url(FUNCTION_URL, secret=SECRET, task_token="dG9rZW4")
    status, body = await post(handler, query=sealed(url), body={})
    assert (status, body["error"]["code"]) == (401, "unauthorized")


# --- correlation keys: requests --------------------------------------------------------------


def test_keys_over_1000_characters_are_refused():
    with pytest.raises(InvalidRequest, match="correlation_key"):
        parse_request(json.dumps({"correlation_key": "k" * 1001, "result": 1}))
    assert parse_request(json.dumps({"correlation_key": "k" * 1000})).correlation_key
    with pytest.raises(InvalidRequest, match="one way"):
        parse_request(json.dumps({"correlation_key": "k", "task_token": "dG9rZW4"}))
    with pytest.raises(InvalidRequest):
        asyncio.run(register_async("k" * 1001, task_token="dG9rZW4"))


def test_key_patterns():
    pattern = KeyPattern("inbox/{correlation_key}.json")
    assert pattern.correlation_key("inbox/ORDER-1042.json") == "ORDER-1042"
    assert pattern.correlation_key("inbox/.json") is None
    assert pattern.correlation_key("other/ORDER-1042.json") is None
    assert pattern.object_key("ORDER-1042") == "inbox/ORDER-1042.json"
    assert pattern.correlation_key(pattern.object_key("a/b c.json")) == "a/b c.json"
    for bad in (
        "inbox/*.json",
        "{correlation_key}/{correlation_key}",
        "in/{key}/{correlation_key}",
    ):
        with pytest.raises(ValueError, match="COMPLETER_S3_KEY_PATTERN"):
            Settings(COMPLETER_S3_KEY_PATTERN=bad)


async def test_registration_needs_a_shared_ledger():
    with pytest.raises(ConfigurationError, match="COMPLETER_LEDGER"):
        await register_async("k", task_token="dG9rZW4", settings=Settings())


# --- correlation keys over HTTP (Firestore ledger) ------------------------------------------


async def test_http_register_then_complete(gcp_chain: Chain, new_waiting):
    waiting, later = await new_waiting(), await new_waiting()
    handler = HttpHandler(gcp_chain.executor, settings=gcp_chain.settings)
    key = f"ORDER-{uuid.uuid4().hex[:6]}"
    ids = {"workflow_id": waiting.workflow_id, "activity_id": waiting.activity_id}
    assert await register_async(key, **ids, executor=gcp_chain.executor) is None
    # The same activity again renews; another activity is refused while the key is in use.
    assert await register_async(key, **ids, executor=gcp_chain.executor) is None
    with pytest.raises(Conflict):
        await register_async(key, task_token=later.token_b64, executor=gcp_chain.executor)
    request = {"correlation_key": key, "result": {"paid": True}}
    assert await post(handler, body=request) == (200, {"status": "completed"})
    assert await asyncio.wait_for(waiting.handle.result(), 20) == {"paid": True}
    assert await post(handler, body=request) == (200, {"status": "completed", "replayed": True})
    status, body = await post(handler, body={"correlation_key": key, "result": {"paid": False}})
    assert (status, body["error"]["code"]) == (409, "conflict")
    # Consumed: the key may now name another activity.
    await register_async(key, task_token=later.token_b64, executor=gcp_chain.executor)
    assert await post(handler, body={"correlation_key": key, "result": 2}) == (
        200,
        {"status": "completed"},
    )
    assert await asyncio.wait_for(later.handle.result(), 20) == 2


async def test_http_complete_then_register(gcp_chain: Chain, waiting: WaitingActivity):
    handler = HttpHandler(gcp_chain.executor, settings=gcp_chain.settings)
    key = f"ORDER-{uuid.uuid4().hex[:6]}"
    request = {"correlation_key": key, "result": {"early": True}}
    assert await post(handler, body=request) == (202, {"status": "buffered"})
    assert await post(handler, body=request) == (202, {"status": "buffered"})  # a retry
    status, body = await post(handler, body={"correlation_key": key, "result": 0})
    assert (status, body["error"]["code"]) == (409, "conflict")
    outcome = await register_async(
        key,
        workflow_id=waiting.workflow_id,
        activity_id=waiting.activity_id,
        run_id=waiting.run_id,
        executor=gcp_chain.executor,
    )
    assert outcome is not None
    assert outcome.status == "completed"
    assert await asyncio.wait_for(waiting.handle.result(), 20) == {"early": True}
    assert await gcp_chain.ledger.registry.peek_buffered(key) is None


async def test_take_buffered_is_atomic_across_instances(gcp_chain: Chain, dynamodb_table: str):
    ledgers = [gcp_chain.ledger]
    location = parse_ledger_url(f"dynamodb://{dynamodb_table}")
    ledgers.append(Ledger(create_store(location), scope="atomic"))
    for ledger in ledgers:
        key = f"k-{uuid.uuid4().hex}"
        await ledger.registry.buffer(key, {"correlation_key": key}, origin=None, ttl_seconds=60)
        # Another instance of the same function: its own client on the same store.
        twin = Ledger(create_store(parse_ledger_url(ledger.store.url)), scope=ledger.scope)
        try:
            taken = await asyncio.gather(
                *(r.take_buffered(key) for r in (ledger.registry, twin.registry) for _ in range(3))
            )
        finally:
            await twin.close()
        assert sum(t is not None for t in taken) == 1
    await ledgers[1].close()


# --- correlation keys over Pub/Sub (emulator) ----------------------------------------------


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    with pubsub_emulator(tmp_path_factory.mktemp("pubsub")) as emulator:
        yield emulator


def delivered(emulator: PubSubEmulator, subscription: str) -> Any:
    from cloudevents.http import CloudEvent

    (received,) = emulator.pull(subscription)
    message = received.message
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/t",
            "id": message.message_id,
        },
        {
            "message": {
                "data": base64.b64encode(message.data).decode(),
                "attributes": dict(message.attributes),
                "messageId": message.message_id,
            },
            "subscription": subscription,
        },
    )


@pytest.mark.pubsub
@pytest.mark.parametrize("form", ["attribute", "envelope"])
async def test_pubsub_both_orders(gcp_chain: Chain, pubsub: PubSubEmulator, new_waiting, form):
    handler = PubSubHandler(gcp_chain.executor, dead_letters=None)
    topic = pubsub.topic()
    subscription = pubsub.pull_subscription(topic)

    def publish(key: str, result: Any) -> None:
        if form == "attribute":
            pubsub.publish(topic, json.dumps(result).encode(), correlation_key=key)
        else:
            pubsub.publish(topic, json.dumps({"correlation_key": key, "result": result}).encode())

    first, second = await new_waiting(), await new_waiting()
    key = f"pubsub-{uuid.uuid4().hex[:6]}"
    await register_async(key, task_token=first.token_b64, executor=gcp_chain.executor)
    publish(key, {"n": 1})
    await handler.handle(delivered(pubsub, subscription))
    assert await asyncio.wait_for(first.handle.result(), 20) == {"n": 1}

    early = f"pubsub-{uuid.uuid4().hex[:6]}"
    publish(early, {"n": 2})
    await handler.handle(delivered(pubsub, subscription))  # acknowledged: buffered
    assert await gcp_chain.ledger.registry.peek_buffered(early) is not None
    outcome = await register_async(early, task_token=second.token_b64, executor=gcp_chain.executor)
    assert outcome is not None
    assert outcome.status == "completed"
    assert await asyncio.wait_for(second.handle.result(), 20) == {"n": 2}


# --- correlation keys over Cloud Storage (emulator) -----------------------------------------


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
        try:
            yield emulator
        finally:
            if previous is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous


async def test_gcs_metadata_and_key_pattern(gcp_chain: Chain, gcs: GcsEmulator, new_waiting):
    from completer.dev.gcs_events import finalized_event

    handler = GcsHandler(
        gcp_chain.executor, settings=gcp_chain.settings, reader=GcsReader(gcs.client)
    )
    bucket = gcs.bucket()

    async def upload(name: str, content: dict[str, Any], metadata: dict[str, str]) -> None:
        from cloudevents.http import CloudEvent

        blob = bucket.blob(name)
        blob.metadata = metadata or None
        await asyncio.to_thread(
            blob.upload_from_string, json.dumps(content), content_type="application/json"
        )
        await asyncio.to_thread(blob.reload)
        event = finalized_event(blob._properties)
        data = event.pop("data")
        await handler.handle(CloudEvent(event, data))

    by_meta, by_name = await new_waiting(), await new_waiting()
    key = f"gcs-{uuid.uuid4().hex[:6]}"
    await register_async(key, task_token=by_meta.token_b64, executor=gcp_chain.executor)
    await upload("drop/a.json", {"via": "metadata"}, {"correlation-key": key})
    assert await asyncio.wait_for(by_meta.handle.result(), 20) == {"via": "metadata"}

    early = f"ORDER-{uuid.uuid4().hex[:6]}"
    await upload(f"inbox/{early}.json", {"via": "name"}, {})  # before the registration
    outcome = await register_async(early, task_token=by_name.token_b64, executor=gcp_chain.executor)
    assert outcome is not None
    assert outcome.status == "completed"
    assert await asyncio.wait_for(by_name.handle.result(), 20) == {"via": "name"}


# --- correlation keys over S3 -> SQS (moto, DynamoDB ledger) --------------------------------


@pytest.mark.moto
async def test_s3_key_pattern_through_a_real_notification(aws_chain: Chain, aws: str, new_waiting):
    s3, sqs = aws_client("s3", aws), aws_client("sqs", aws)
    name = f"drop-{uuid.uuid4().hex[:10]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    handler = S3Handler(aws_chain.executor, settings=aws_chain.settings, s3=s3)

    def notifications() -> dict[str, Any]:
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while not records and time.monotonic() < deadline:
            for m in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []):
                if "s3:TestEvent" not in m["Body"]:
                    records.append(
                        {
                            "messageId": m["MessageId"],
                            "body": m["Body"],
                            "eventSource": "aws:sqs",
                            "eventSourceARN": queue_arn,
                        }
                    )
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        assert records, "moto sent no notification"
        return {"Records": records}

    registered_first, uploaded_first = await new_waiting(), await new_waiting()
    key = f"ORDER-{uuid.uuid4().hex[:6]}"
    await register_async(key, task_token=registered_first.token_b64, executor=aws_chain.executor)
    s3.put_object(Bucket=name, Key=f"inbox/{key}.json", Body=b'{"rows": 3}')
    assert await handler.handle(notifications(), None) == {"batchItemFailures": []}
    assert await asyncio.wait_for(registered_first.handle.result(), 20) == {"rows": 3}

    early = f"ORDER-{uuid.uuid4().hex[:6]}"
    s3.put_object(
        Bucket=name, Key="any/name.json", Body=b'{"rows": 4}', Metadata={"correlation-key": early}
    )
    assert await handler.handle(notifications(), None) == {"batchItemFailures": []}
    outcome = await register_async(
        early, task_token=uploaded_first.token_b64, executor=aws_chain.executor
    )
    assert outcome is not None
    assert outcome.status == "completed"
    assert await asyncio.wait_for(uploaded_first.handle.result(), 20) == {"rows": 4}


# --- Step Functions by key ------------------------------------------------------------------


@pytest.mark.moto
@pytest.mark.parametrize("order", ["register_first", "request_first"])
async def test_step_functions_task_completed_by_key(
    moto_sfn: MotoStepFunctions, aws: str, dynamodb_table: str, order: str
):
    settings = Settings(
        COMPLETER_BACKEND="stepfunctions",
        COMPLETER_RPC_TIMEOUT_SECONDS=5,
        COMPLETER_LEDGER=f"dynamodb://{dynamodb_table}",
        COMPLETER_ALLOW_UNSIGNED="true",
    )
    task = moto_sfn.start_waiting()
    key = f"job-{uuid.uuid4().hex[:6]}"
    async with CompletionClient.create(settings) as client:
        chain = build_executor(settings, client)
        handler = HttpHandler(chain, settings=settings)
        request = {"correlation_key": key, "result": {"job": "done"}}
        try:
            if order == "register_first":
                await register_async(key, task_token=task.task_token, executor=chain)
                assert await post(handler, body=request) == (200, {"status": "completed"})
            else:
                assert await post(handler, body=request) == (202, {"status": "buffered"})
                outcome = await register_async(key, task_token=task.task_token, executor=chain)
                assert outcome is not None
                assert outcome.status == "completed"
        finally:
            await chain.ledger.close()
    finished = await task.finished()
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == {"job": "done"}


def test_completion_request_by_key_is_log_safe():
    request = CompletionRequest.build({"correlation_key": "k" * 1000})
    assert len(request.describe_activity()) < 120


# --- the command line -----------------------------------------------------------------------


async def test_cli_callback_url_looks_the_run_id_up_and_refuses_bad_expressions(
    temporal_server: TemporalServer, waiting: WaitingActivity
):
    env = {"COMPLETER_LINK_SECRET": SECRET, "TEMPORAL_ADDRESS": temporal_server.address}
    ids = ("-w", waiting.workflow_id, "-a", waiting.activity_id)
    made = await run_cli("callback-url", "--url", FUNCTION_URL, *ids, "--ttl", "1d", env=env)
    assert made.returncode == 0, made.stderr
    opened = open_callback(sealed(made.json()["url"])["callback"], secret=SECRET)
    assert opened.activity["run_id"] == waiting.run_id
    assert opened.expires_at == pytest.approx(time.time() + 86400, abs=60)
    bad = await run_cli(
        "callback-url", "--url", FUNCTION_URL, *ids, "-r", "r1", "--select", "data.[", env=env
    )
    assert bad.returncode == EXIT_CODES["invalid_request"]
    assert "JMESPath" in bad.stderr


async def test_cli_register_needs_a_ledger_and_carries_out_what_waited(
    gcp_chain: Chain, temporal_server: TemporalServer, waiting: WaitingActivity
):
    handler = HttpHandler(gcp_chain.executor, settings=gcp_chain.settings)
    plain = await run_cli("register", "k", "-t", waiting.token_b64, env={"COMPLETER_LEDGER": ""})
    assert plain.returncode == EXIT_CODES["configuration"]
    assert "COMPLETER_LEDGER" in plain.stderr
    key = f"ORDER-{uuid.uuid4().hex[:6]}"
    assert await post(handler, body={"correlation_key": key, "result": "early"}) == (
        202,
        {"status": "buffered"},
    )
    env = {
        "COMPLETER_LEDGER": str(gcp_chain.settings.ledger),
        "TEMPORAL_ADDRESS": temporal_server.address,
    }
    done = await run_cli(
        "register", key, "-w", waiting.workflow_id, "-a", waiting.activity_id, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.json() == {"status": "completed"}
    assert await asyncio.wait_for(waiting.handle.result(), 20) == "early"
    again = await run_cli("register", key, "-t", waiting.token_b64, "--ttl", "1h", env=env)
    assert again.returncode == 0, again.stderr  # consumed: free for another activity
    assert again.json() == {"registered": key}


# --- the other engines ------------------------------------------------------------------------


@pytest.mark.moto
async def test_step_functions_task_completed_by_callback_url(moto_sfn: MotoStepFunctions, aws: str):
    settings = Settings(
        COMPLETER_BACKEND="stepfunctions",
        COMPLETER_RPC_TIMEOUT_SECONDS=5,
        COMPLETER_LINK_SECRET=SECRET,
    )
    task = moto_sfn.start_waiting()
    async with CompletionClient.create(settings) as client:
        chain = build_executor(settings, client)
        handler = HttpHandler(chain, settings=settings)
        url = callback_url(
            FUNCTION_URL, secret=SECRET, task_token=task.task_token, select="data.object"
        )
        try:
            assert await post(handler, query=sealed(url), body=STRIPE_SUCCEEDED) == (
                200,
                {"status": "completed"},
            )
        finally:
            await chain.ledger.close()
    finished = await task.finished()
    assert json.loads(finished["output"]) == STRIPE_SUCCEEDED["data"]["object"]


async def test_cadence_by_callback_url_and_by_key():
    from tests.support.cadence import fake_frontend

    async with fake_frontend() as frontend:
        settings = Settings(
            COMPLETER_BACKEND="cadence",
            CADENCE_ADDRESS=frontend.address,
            CADENCE_DOMAIN="orders",
            COMPLETER_RPC_TIMEOUT_SECONDS=5,
            COMPLETER_LINK_SECRET=SECRET,
            COMPLETER_ALLOW_UNSIGNED=True,  # the JSON request below is unsigned, as behind IAM
        )
        by_url = frontend.api.schedule_activity("await-payment")
        by_key = frontend.api.schedule_activity("await-file")
        async with CompletionClient.create(settings) as client:
            chain = build_executor(settings, client)
            handler = HttpHandler(chain, settings=settings)
            try:
                token = base64.b64encode(by_url.task_token).decode()
                url = callback_url(FUNCTION_URL, secret=SECRET, task_token=token, select="data")
                status, _ = await post(handler, query=sealed(url), body={"data": {"ok": True}})
                assert status == 200
                # The in-process ledger holds the key for this instance (tests only: a real
                # registration needs a shared ledger).
                request = {"correlation_key": "cadence-1", "result": [1, 2]}
                assert await post(handler, body=request) == (202, {"status": "buffered"})
                key_token = base64.b64encode(by_key.task_token).decode()
                outcome = await register_async("cadence-1", task_token=key_token, executor=chain)
                assert outcome is not None
                assert outcome.status == "completed"
            finally:
                await chain.ledger.close()
        assert by_url.closed == ("completed", b'{"ok":true}')
        assert by_key.closed == ("completed", b"[1,2]")


async def test_a_request_too_big_to_keep_for_its_key_is_refused(gcp_chain: Chain):
    handler = HttpHandler(gcp_chain.executor, settings=gcp_chain.settings)
    key = f"big-{uuid.uuid4().hex[:6]}"
    status, body = await post(handler, body={"correlation_key": key, "result": "x" * 400_000})
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert "register the key first" in body["error"]["message"]
    assert await gcp_chain.ledger.registry.peek_buffered(key) is None


def test_a_restricted_signing_scope_does_not_cover_correlation_keys():
    from completer.errors import Forbidden
    from completer.signatures import UNRESTRICTED, Scope, check_scope

    by_key = CompletionRequest.build({"correlation_key": "ORDER-1", "result": 1})
    check_scope(UNRESTRICTED, by_key)
    check_scope(Scope(actions=frozenset({by_key.action})), by_key)
    for restricted in (Scope(workflow_id_prefixes=("acme-",)), Scope(namings=frozenset({"ids"}))):
        with pytest.raises(Forbidden, match="correlation key"):
            check_scope(restricted, by_key)
