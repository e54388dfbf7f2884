"""The Step Functions approval notifier (the AWS example's approval flow), on moto in server mode.

A waiting Step Functions task's token goes to the notifier, which publishes approve/reject
links to SNS (read back through an SQS subscription); the approve link completes the task.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from completer.activity import stepfunctions_approval_handler
from completer.client import CompletionClient
from completer.errors import ConfigurationError, InvalidRequest
from completer.links import open_link
from completer.models import Status
from completer.settings import Settings
from tests.support.stepfunctions import (
    REGION,
    MotoStepFunctions,
    aws_env,
    moto_stepfunctions,
)

LINK_SECRET = "approval-link-secret-" + "z" * 20
FUNCTION_URL = "https://abc123.lambda-url.us-east-1.on.aws/"

pytestmark = pytest.mark.moto


@pytest.fixture(scope="module")
def moto_sfn() -> Iterator[MotoStepFunctions]:
    yield from moto_stepfunctions()


@pytest.fixture
def inbox(moto_sfn: MotoStepFunctions, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An SNS topic with an SQS subscriber, and the notifier's environment pointing at it."""
    for name, value in aws_env(moto_sfn.endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", moto_sfn.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_sfn.endpoint)
    sns = boto3.client("sns", endpoint_url=moto_sfn.endpoint, region_name=REGION)
    unique = uuid.uuid4().hex[:12]
    topic = sns.create_topic(Name=f"approvals-{unique}")["TopicArn"]
    queue = moto_sfn.sqs.create_queue(QueueName=f"approval-mail-{unique}")["QueueUrl"]
    queue_arn = moto_sfn.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    secrets = boto3.client("secretsmanager", endpoint_url=moto_sfn.endpoint, region_name=REGION)
    arn = secrets.create_secret(Name=f"link-secret-{unique}", SecretString=LINK_SECRET)["ARN"]
    monkeypatch.delenv("COMPLETER_LINK_SECRET", raising=False)
    monkeypatch.setenv("COMPLETER_LINK_SECRET_SECRET_ARN", arn)
    monkeypatch.setenv("APPROVAL_FUNCTION_URL", FUNCTION_URL)
    monkeypatch.setenv("APPROVAL_TOPIC_ARN", topic)

    def read() -> dict[str, Any]:
        got = moto_sfn.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)["Messages"]
        envelope: dict[str, Any] = json.loads(got[0]["Body"])
        return envelope

    return read


async def test_links_by_sns_complete_the_waiting_task(moto_sfn: MotoStepFunctions, inbox: Any):
    waiting = moto_sfn.start_waiting()
    answer = stepfunctions_approval_handler(
        {
            "task_token": waiting.task_token,
            "subject": "Approve order 42 - 1200 €",
            "description": "Order 42 needs your approval.",
            "approve_result": {"approved": True, "order": 42},
        }
    )
    mail = inbox()
    assert mail["Subject"].startswith("Approve order 42")
    assert waiting.task_token not in mail["Message"]
    links = re.findall(r"https://\S+", mail["Message"])
    assert len(links) == 2
    assert all(link.startswith(FUNCTION_URL) for link in links)
    query = parse_qs(urlsplit(links[0]).query)
    opened = open_link(query["link"][0], secret=LINK_SECRET, choice=query["choice"][0])
    assert opened.expires_at == answer["expires_at"]
    settings = Settings(COMPLETER_BACKEND="stepfunctions")
    async with CompletionClient.create(settings) as client:
        assert (await client.execute(opened.request)).status is Status.COMPLETED
    finished = await waiting.finished()
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == {"approved": True, "order": 42}


def test_notifier_without_its_settings_stops(inbox: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("APPROVAL_TOPIC_ARN")
    with pytest.raises(ConfigurationError, match="APPROVAL_TOPIC_ARN"):
        stepfunctions_approval_handler({"task_token": "dG9rZW4"})


def test_notifier_without_a_token_is_invalid(inbox: Any):
    with pytest.raises(InvalidRequest, match="task_token"):
        stepfunctions_approval_handler({"subject": "x"})
