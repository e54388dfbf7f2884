"""The callback URL and key-drop samples run: the provider's webhook and the partner's drop
complete their activities through the functions' real handlers.

The payment sample's URL is POSTed to the HTTP function's core as the provider would; the
drop sample's file goes to moto's S3, whose notification (S3 -> SQS) reaches the S3
function, which reads the correlation key out of the object key (DynamoDB ledger on moto).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from examples import partner_drop_by_key, payment_callback
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from completer.client import CompletionClient
from completer.correlation import CorrelationExecutor, build_executor
from completer.handlers.exchange import HttpRequest
from completer.handlers.http import HttpHandler
from completer.handlers.s3 import S3Handler
from completer.ledger.dynamodb import create_table
from completer.settings import Settings
from tests.support.moto_server import FAKE_CREDENTIALS, REGION, moto_server
from tests.test_examples import Announcements, running, unique

ROOT = Path(__file__).resolve().parent.parent
SECRET = "p" * 40
FUNCTION_URL = "https://fn.example.test/complete"


def stripe_event(kind: str, status: str) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:8]}",
        "object": "event",
        "type": kind,
        "data": {"object": {"id": "pi_1", "amount": 12000, "currency": "eur", "status": status}},
    }


async def provider_posts(handler: HttpHandler, url: str, event: dict[str, Any]) -> Any:
    body = json.dumps(event).encode()
    answer = await handler.handle(
        HttpRequest(
            "POST",
            headers={"content-type": "application/json"},
            query={k: v[0] for k, v in parse_qs(urlsplit(url).query).items()},
            body=body,
        )
    )
    return answer.status, answer.body


@pytest.fixture
async def http_function(temporal_client: Client) -> AsyncIterator[HttpHandler]:
    settings = Settings(
        COMPLETER_BACKEND="temporal",
        COMPLETER_RPC_TIMEOUT_SECONDS=5,
        COMPLETER_LINK_SECRET=SECRET,
    )
    async with CompletionClient.create(settings) as client:
        chain = build_executor(settings, client)
        yield HttpHandler(chain, settings=settings)
        await chain.ledger.close()


@pytest.mark.temporal
@pytest.mark.parametrize("paid", [True, False])
async def test_payment_callback(temporal_client: Client, http_function: HttpHandler, paid: bool):
    announced = Announcements()
    queue = unique("tq-payment")
    worker = payment_callback.build_worker(
        temporal_client,
        function_url=FUNCTION_URL,
        secret=SECRET,
        task_queue=queue,
        announce=announced,
    )
    async with running(worker):
        handle = await temporal_client.start_workflow(
            payment_callback.PaymentWorkflow.run, 12000, id=unique("payment"), task_queue=queue
        )
        url = (await announced.next()).split("\n  ", 1)[1].strip()
        if paid:
            event = stripe_event("payment_intent.succeeded", "succeeded")
            assert await provider_posts(http_function, url, event) == (200, {"status": "completed"})
            assert await handle.result() == event["data"]["object"]
            # The provider's retry of the same event.
            assert (await provider_posts(http_function, url, event))[1]["replayed"] is True
        else:
            event = stripe_event("payment_intent.payment_failed", "requires_payment_method")
            assert await provider_posts(http_function, url, event) == (200, {"status": "failed"})
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
            cause = failed.value.cause
            assert isinstance(cause, ActivityError)
            assert isinstance(cause.cause, ApplicationError)
            assert cause.cause.type == "CallbackFailed"
            assert cause.cause.details == (event["data"]["object"],)


# --- partner drop by key --------------------------------------------------------------------


def aws(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(signature_version="s3v4"),
        **FAKE_CREDENTIALS,
    )


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


class Drop:
    """A bucket whose notifications go to SQS, and the S3 function that reads them."""

    def __init__(self, endpoint: str, handler: S3Handler) -> None:
        self.s3, self.sqs = aws("s3", endpoint), aws("sqs", endpoint)
        self.handler = handler
        self.bucket = f"drop-{uuid.uuid4().hex[:10]}"
        self.queue = self.sqs.create_queue(QueueName=self.bucket)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        self.queue_arn = arn["Attributes"]["QueueArn"]
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_bucket_notification_configuration(
            Bucket=self.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": self.queue_arn, "Events": ["s3:ObjectCreated:*"]}
                ]
            },
        )

    async def partner_drops(self, key: str, content: Any) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(content).encode())
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while not records:
            assert time.monotonic() < deadline, "moto sent no notification"
            received = await asyncio.to_thread(
                self.sqs.receive_message, QueueUrl=self.queue, WaitTimeSeconds=1
            )
            for m in received.get("Messages", []):
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
                if "s3:TestEvent" not in m["Body"]:
                    records.append(
                        {
                            "messageId": m["MessageId"],
                            "body": m["Body"],
                            "eventSource": "aws:sqs",
                            "eventSourceARN": self.queue_arn,
                        }
                    )
        assert await self.handler.handle({"Records": records}, None) == {"batchItemFailures": []}


@pytest.fixture
async def chain(
    temporal_client: Client, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Settings, CorrelationExecutor]]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_CREDENTIALS["aws_secret_access_key"])
    table = f"ledger-{uuid.uuid4().hex[:8]}"
    create_table(table, client=aws("dynamodb", moto_endpoint))
    settings = Settings(
        COMPLETER_BACKEND="temporal",
        COMPLETER_RPC_TIMEOUT_SECONDS=5,
        COMPLETER_LEDGER=f"dynamodb://{table}",
        COMPLETER_S3_KEY_PATTERN=partner_drop_by_key.INBOX.replace("{order}", "{correlation_key}"),
    )
    async with CompletionClient.create(settings) as client:
        executor = build_executor(settings, client)
        yield settings, executor
        await executor.ledger.close()


@pytest.mark.temporal
@pytest.mark.moto
@pytest.mark.parametrize("first", ["workflow", "partner"])
async def test_partner_drop_by_key(
    temporal_client: Client,
    moto_endpoint: str,
    chain: tuple[Settings, CorrelationExecutor],
    first: str,
):
    settings, executor = chain
    drop = Drop(moto_endpoint, S3Handler(executor, settings=settings, s3=aws("s3", moto_endpoint)))
    announced = Announcements()
    queue = unique("tq-drop")
    order = f"ORDER-{uuid.uuid4().hex[:6]}"
    worker = partner_drop_by_key.build_worker(
        temporal_client,
        bucket=drop.bucket,
        task_queue=queue,
        announce=announced,
        executor=executor,
    )
    content = {"order": order, "rows": 3}
    if first == "partner":  # the file arrives before the workflow even started
        await drop.partner_drops(f"inbox/{order}.json", content)
    async with running(worker):
        handle = await temporal_client.start_workflow(
            partner_drop_by_key.PartnerDropWorkflow.run, order, id=unique("drop"), task_queue=queue
        )
        said = await announced.next()
        if first == "workflow":
            assert said.endswith(f"s3://{drop.bucket}/inbox/{order}.json")
            await drop.partner_drops(f"inbox/{order}.json", content)
        else:
            assert "already there: completed" in said
        assert await handle.result() == content


@pytest.mark.parametrize("sample", ["payment_callback", "partner_drop_by_key"])
def test_each_sample_has_help(sample: str):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{sample}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
