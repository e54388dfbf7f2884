"""The activity side: Pub/Sub attributes, presigned uploads (moto server), links, the token."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from completer.activity import (
    DEFAULT_REJECT_ERROR,
    approval_links,
    presigned_upload,
    pubsub_attributes,
    s3_metadata,
    temporal_task_token,
)
from completer.client import CompletionClient
from completer.errors import InvalidRequest
from completer.links import open_link
from completer.models import Action, CompletionRequest
from completer.settings import Settings
from completer.tokens import decode_token, encode_token
from tests.support.moto_server import moto_server, s3_client

TOKEN = encode_token(b"\x0a\x24some-binary-task-token\xff\x00")
SECRET = "s" * 40


# --- Pub/Sub attributes -----------------------------------------------------------------


def test_pubsub_attributes_by_token_and_by_ids():
    assert pubsub_attributes(task_token=TOKEN) == {"task_token": TOKEN}
    assert pubsub_attributes(task_token=TOKEN, action="heartbeat") == {
        "task_token": TOKEN,
        "action": "heartbeat",
    }
    assert pubsub_attributes(workflow_id="wf", activity_id="a", run_id="r", action=Action.FAIL) == {
        "workflow_id": "wf",
        "activity_id": "a",
        "run_id": "r",
        "action": "fail",
    }


def test_pubsub_attributes_make_a_valid_request_with_the_data():
    attributes = pubsub_attributes(task_token=TOKEN, action="complete")
    request = CompletionRequest.build({**attributes, "result": {"ok": True}})
    assert request.task_token == TOKEN
    assert request.result == {"ok": True}


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"task_token": TOKEN, "workflow_id": "wf", "activity_id": "a"}, "not both"),
        ({"workflow_id": "wf"}, "together"),
        ({"activity_id": "a"}, "together"),
        ({"task_token": "not base64!"}, "base64"),
        ({"task_token": ""}, "empty"),
        ({}, "outside a Temporal activity"),
        ({"task_token": TOKEN, "action": "approve"}, "action must be one of"),
    ],
)
def test_naming_the_activity_wrongly_is_refused(fields: dict[str, Any], match: str):
    with pytest.raises(InvalidRequest, match=match):
        pubsub_attributes(**fields)
    if "action" not in fields:
        with pytest.raises(InvalidRequest, match=match):
            s3_metadata(**fields)


def test_s3_metadata_uses_the_s3_function_keys():
    assert s3_metadata(workflow_id="wf", activity_id="a", action="fail") == {
        "workflow-id": "wf",
        "activity-id": "a",
        "action": "fail",
    }


def test_token_is_not_taken_outside_an_activity():
    with pytest.raises(RuntimeError, match="inside a Temporal activity"):
        temporal_task_token()


# --- approval links ---------------------------------------------------------------------


def test_approval_links_open_to_the_preset_completions():
    links = approval_links(
        "https://fn.example/complete", secret=SECRET, task_token=TOKEN, ttl_seconds=600, now=1000
    )
    assert links.expires_at == 1600
    assert TOKEN not in links.approve
    assert TOKEN not in links.reject
    approve = open_link(_query(links.approve)["link"], secret=SECRET, choice="approve", now=1001)
    reject = open_link(_query(links.reject)["link"], secret=SECRET, choice="reject", now=1001)
    assert approve.request.action is Action.COMPLETE
    assert approve.request.result == {"approved": True}
    assert reject.request.action is Action.FAIL
    assert reject.request.error is not None
    assert reject.request.error.model_dump(exclude_none=True) == DEFAULT_REJECT_ERROR
    assert reject.request.task_token == TOKEN


def test_approval_links_with_ids_and_custom_outcomes():
    links = approval_links(
        "https://fn.example/",
        secret=SECRET,
        workflow_id="wf",
        activity_id="a",
        run_id="run-1",
        approve_result={"level": 2},
        reject_error={"message": "too expensive"},
    )
    reject = open_link(_query(links.reject)["link"], secret=SECRET)
    assert (reject.request.workflow_id, reject.request.activity_id) == ("wf", "a")
    assert reject.request.run_id == "run-1"
    assert reject.request.error is not None
    assert reject.request.error.message == "too expensive"
    assert open_link(_query(links.approve)["link"], secret=SECRET).request.result == {"level": 2}


def test_approval_links_refuse_a_short_secret_and_a_bad_preset():
    with pytest.raises(ValueError, match="32 characters"):
        approval_links("https://fn/", secret="short", task_token=TOKEN)
    with pytest.raises(InvalidRequest):
        approval_links("https://fn/", secret=SECRET, task_token=TOKEN, reject_error={"type": "X"})


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


# --- presigned uploads against moto in server mode --------------------------------------

BUCKET = "completer-uploads"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def s3(moto_endpoint: str) -> Any:
    client = s3_client(moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.mark.moto
def test_presigned_upload_carries_the_token_and_keeps_it_out_of_the_url(s3: Any):
    key = f"partner/{uuid.uuid4()}.json"
    upload = presigned_upload(
        s3, bucket=BUCKET, key=key, task_token=TOKEN, content_type="application/json"
    )
    assert upload.method == "PUT"
    assert upload.headers == {
        "x-amz-meta-task-token": TOKEN,
        "Content-Type": "application/json",
    }
    assert TOKEN not in upload.url
    signed = _query(upload.url)["X-Amz-SignedHeaders"].split(";")
    # These are what real S3 enforces: a missing or different header is SignatureDoesNotMatch.
    assert {"x-amz-meta-task-token", "content-type", "host"} <= set(signed)

    response = requests.put(upload.url, data=b'{"invoice": 42}', headers=upload.headers, timeout=10)
    assert response.status_code == 200, response.text
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"] == {"task-token": TOKEN}
    assert head["ContentType"] == "application/json"
    assert decode_token(head["Metadata"]["task-token"]) == decode_token(TOKEN)


@pytest.mark.moto
def test_the_printed_curl_line_uploads(s3: Any, tmp_path):
    key = f"partner/{uuid.uuid4()}.json"
    upload = presigned_upload(
        s3, bucket=BUCKET, key=key, workflow_id="wf-1", activity_id="act-1", action="complete"
    )
    payload = tmp_path / "result.json"
    payload.write_text('{"rows": 3}')
    line = upload.curl(str(payload))
    assert line.startswith("curl --fail-with-body -X PUT --upload-file ")
    subprocess.run(["/bin/sh", "-c", line], check=True, capture_output=True, timeout=30)
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"] == {"workflow-id": "wf-1", "activity-id": "act-1", "action": "complete"}
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b'{"rows": 3}'


@pytest.mark.moto
def test_upload_without_the_header_on_moto(s3: Any):
    key = f"partner/{uuid.uuid4()}.json"
    upload = presigned_upload(s3, bucket=BUCKET, key=key, task_token=TOKEN)
    response = requests.put(upload.url, data=b"{}", timeout=10)
    # moto 5 does not verify presigned signatures (it accepts this PUT); real S3 answers
    # 403 SignatureDoesNotMatch because x-amz-meta-task-token is a signed header (asserted
    # above). Either way no object ever lands carrying a token the partner did not send.
    if response.status_code == 200:
        assert s3.head_object(Bucket=BUCKET, Key=key)["Metadata"] == {}
    else:
        assert response.status_code == 403
        assert "SignatureDoesNotMatch" in response.text


@pytest.mark.moto
def test_a_sigv2_client_is_refused(moto_endpoint: str):
    # botocore presigns S3 with SigV2 unless told s3v4: metadata would ride in the query.
    legacy = s3_client(moto_endpoint, signature_version="s3")
    with pytest.raises(ValueError, match="SigV4"):
        presigned_upload(legacy, bucket=BUCKET, key="k.json", task_token=TOKEN)


@pytest.mark.moto
def test_expiry_bounds(moto_endpoint: str):
    client = s3_client(moto_endpoint)
    with pytest.raises(ValueError, match="7 days"):
        presigned_upload(client, bucket=BUCKET, key="k", task_token=TOKEN, expires_in=8 * 86400)


# --- inside a real Temporal activity ----------------------------------------------------

_HANDED_OUT: dict[str, dict[str, Any]] = {}


@activity.defn
async def hand_out_token() -> Any:
    """What a user's activity does: take its own token implicitly, hand it out, go pending."""
    info = activity.info()
    assert info.workflow_id is not None
    _HANDED_OUT[info.workflow_id] = {
        "attributes": pubsub_attributes(),
        "token": temporal_task_token(),
        "raw": info.task_token,
        "links": approval_links("https://fn.example/", secret=SECRET),
    }
    activity.raise_complete_async()


@workflow.defn
class HandOutWorkflow:
    @workflow.run
    async def run(self) -> Any:
        return await workflow.execute_activity(
            hand_out_token,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


@pytest.mark.temporal
async def test_inside_an_activity_the_token_is_its_own(temporal_client: Client, settings: Settings):
    queue = f"tq-{uuid.uuid4()}"
    workflow_id = f"wf-{uuid.uuid4()}"
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[HandOutWorkflow],
        activities=[hand_out_token],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await temporal_client.start_workflow(
            HandOutWorkflow.run, id=workflow_id, task_queue=queue
        )
        handed = await _wait_for(workflow_id)
        assert decode_token(handed["token"]) == handed["raw"]
        assert handed["attributes"] == {"task_token": handed["token"]}
        link = open_link(_query(handed["links"].approve)["link"], secret=SECRET)
        async with CompletionClient.create(settings) as client:
            # The Pub/Sub function's attribute form: attributes name it, data is the result.
            await client.execute(
                CompletionRequest.build({**handed["attributes"], "result": {"via": "pubsub"}})
            )
            assert await handle.result() == {"via": "pubsub"}
            assert link.request.task_token == handed["token"]


async def _wait_for(workflow_id: str) -> dict[str, Any]:
    import asyncio

    for _ in range(500):
        if workflow_id in _HANDED_OUT:
            return _HANDED_OUT.pop(workflow_id)
        await asyncio.sleep(0.02)
    raise TimeoutError(f"the activity of {workflow_id} did not start")
