"""Every trigger works with every backend unchanged: configuration alone selects the engine.

The HTTP and Pub/Sub functions run as real functions-framework processes and the S3
handler in a fresh Python process, each with ``COMPLETER_BACKEND=cadence`` (against the
in-process Cadence frontend of tests/support/cadence.py) or ``stepfunctions`` (against moto
in server mode, where a state machine really waits for its task token).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests.support.cadence import FakeFrontend, fake_frontend
from tests.support.services import free_port, running, venv_tool, wait_for_port
from tests.support.stepfunctions import REGION, MotoStepFunctions, aws_env, moto_stepfunctions

ROOT = Path(__file__).resolve().parents[1]
CADENCE_TOKEN = b"\x00\x01cadence-token-through-a-trigger\xff"
DOMAIN = "orders"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "CADENCE_"))}
    env.update(COMPLETER_RPC_TIMEOUT_SECONDS="5", **extra)
    return env


@contextmanager
def function_process(
    source: str, env: dict[str, str], log: Path, *, cloudevent: bool = False
) -> Iterator[str]:
    binary = venv_tool("functions-framework")
    assert binary is not None
    port = free_port()
    argv = [
        binary,
        "--source",
        source,
        "--target",
        "complete",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if cloudevent:
        argv += ["--signature-type", "cloudevent"]
    with running(argv, env=env, log_path=log, cwd=ROOT) as process:
        wait_for_port(port, timeout=60, process=process)
        yield f"http://127.0.0.1:{port}/"


def pubsub_push(data: Any, attributes: dict[str, str]) -> dict[str, Any]:
    """A structured Eventarc CloudEvent carrying one Pub/Sub message."""
    message_id = str(uuid.uuid4().int)[:16]
    return {
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/completions",
        "id": message_id,
        "datacontenttype": "application/json",
        "data": {
            "message": {
                "data": base64.b64encode(json.dumps(data).encode()).decode(),
                "attributes": attributes,
                "messageId": message_id,
            },
            "subscription": "projects/p/subscriptions/completions-push",
        },
    }


def post_cloudevent(url: str, event: dict[str, Any]) -> requests.Response:
    return requests.post(
        url,
        data=json.dumps(event),
        headers={"Content-Type": "application/cloudevents+json"},
        timeout=30,
    )


# --- Cadence -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def frontend() -> AsyncIterator[FakeFrontend]:
    async with fake_frontend() as frontend:
        yield frontend


@pytest.fixture(scope="module")
def cadence_env(frontend: FakeFrontend) -> dict[str, str]:
    return base_env(
        COMPLETER_BACKEND="cadence", CADENCE_ADDRESS=frontend.address, CADENCE_DOMAIN=DOMAIN
    )


async def test_http_function_with_cadence(frontend: FakeFrontend, cadence_env, tmp_path: Path):
    frontend.api.reset()
    activity = frontend.api.schedule_activity("approve", domain=DOMAIN)
    token = base64.b64encode(activity.task_token).decode()
    body = {"task_token": token, "result": {"approved": True}}
    with function_process("functions/http/main.py", cadence_env, tmp_path / "log") as url:
        ok = await asyncio.to_thread(requests.post, url, json=body, timeout=30)
        assert (ok.status_code, ok.json()) == (200, {"status": "completed"})
        call = frontend.api.calls[-1]
        assert call.method == "RespondActivityTaskCompleted"
        assert call.request.task_token == activity.task_token
        assert json.loads(call.request.result.data) == {"approved": True}
        assert call.metadata["rpc-service"] == "cadence-frontend"
        assert activity.closed == ("completed", b'{"approved":true}')
        calls = len(frontend.api.calls)

        # The ledger answers a repeat, and refuses a different result, without the engine.
        again = await asyncio.to_thread(requests.post, url, json=body, timeout=30)
        assert again.json() == {"status": "completed", "replayed": True}
        other = {"task_token": token, "result": 1}
        refused = await asyncio.to_thread(requests.post, url, json=other, timeout=30)
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "conflict")
        assert len(frontend.api.calls) == calls


async def test_pubsub_function_with_cadence(frontend: FakeFrontend, cadence_env, tmp_path: Path):
    frontend.api.reset()
    with function_process(
        "functions/pubsub/main.py", cadence_env, tmp_path / "log", cloudevent=True
    ) as url:
        event = pubsub_push({"reviewer": "ana"}, {"workflow_id": "wf-1", "activity_id": "act-1"})
        answer = await asyncio.to_thread(post_cloudevent, url, event)
        assert answer.status_code == 200, answer.text
    call = frontend.api.calls[-1]
    assert call.method == "RespondActivityTaskCompletedByID"
    assert (call.request.workflow_execution.workflow_id, call.request.activity_id) == (
        "wf-1",
        "act-1",
    )
    assert call.request.domain == DOMAIN
    assert json.loads(call.request.result.data) == {"reviewer": "ana"}


# --- Step Functions ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sfn() -> Iterator[MotoStepFunctions]:
    yield from moto_stepfunctions()


@pytest.fixture(scope="module")
def sfn_env(sfn: MotoStepFunctions) -> dict[str, str]:
    return base_env(
        COMPLETER_BACKEND="stepfunctions",
        AWS_ENDPOINT_URL_S3=sfn.endpoint,
        AWS_REGION=REGION,
        **aws_env(sfn.endpoint),
    )


async def test_http_function_with_stepfunctions(sfn: MotoStepFunctions, sfn_env, tmp_path: Path):
    from completer.ledger.dynamodb import create_table

    # The AWS functions' ledger: a DynamoDB table (here on the same moto server).
    table = f"ledger-{uuid.uuid4().hex[:8]}"
    dynamodb = boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=sfn.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    create_table(table, client=dynamodb)
    env = {**sfn_env, "COMPLETER_LEDGER": f"dynamodb://{table}"}
    env["AWS_ENDPOINT_URL_DYNAMODB"] = sfn.endpoint
    done, cancelled = sfn.start_waiting(), sfn.start_waiting()
    body = {"taskToken": done.task_token, "result": {"n": 1}}
    with function_process("functions/http/main.py", env, tmp_path / "log") as url:
        ok = await asyncio.to_thread(requests.post, url, json=body, timeout=30)
        assert (ok.status_code, ok.json()) == (200, {"status": "completed"})
        again = await asyncio.to_thread(requests.post, url, json=body, timeout=30)
        assert (again.status_code, again.json()) == (200, {"status": "completed", "replayed": True})
        other = {"taskToken": done.task_token, "result": {"n": 2}}
        conflict = await asyncio.to_thread(requests.post, url, json=other, timeout=30)
        assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "conflict")
        refused = await asyncio.to_thread(
            requests.post,
            url,
            json={"task_token": cancelled.task_token, "action": "cancel"},
            timeout=30,
        )
        assert refused.status_code == 400
        assert "cancel" in refused.json()["error"]["message"]
    finished = await done.finished()
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == {"n": 1}
    assert cancelled.describe()["status"] == "RUNNING"


async def test_pubsub_function_with_stepfunctions(sfn: MotoStepFunctions, sfn_env, tmp_path: Path):
    task = sfn.start_waiting()
    with function_process(
        "functions/pubsub/main.py", sfn_env, tmp_path / "log", cloudevent=True
    ) as url:
        event = pubsub_push(
            {"message": "scan found malware", "type": "Infected"},
            {"task_token": task.task_token, "action": "fail"},
        )
        answer = await asyncio.to_thread(post_cloudevent, url, event)
        assert answer.status_code == 200, answer.text
    finished = await task.finished()
    assert finished["status"] == "FAILED"
    assert finished.get("error") == "Infected"


S3_HANDLER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main", "functions/s3/main.py")
main = importlib.util.module_from_spec(spec)
spec.loader.exec_module(main)
print(json.dumps(main.handler(json.loads(sys.argv[1]), None)))
assert "temporalio" not in sys.modules and "grpc" not in sys.modules
"""


async def test_s3_function_with_stepfunctions(sfn: MotoStepFunctions, sfn_env):
    task = sfn.start_waiting()
    s3 = boto3.client(
        "s3",
        endpoint_url=sfn.endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"uploads-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    key = "incoming/scan result.json"
    body = json.dumps({"clean": True}).encode()
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType="application/json",
        Metadata={"task-token": task.task_token},
    )
    event = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": "incoming/scan+result.json", "size": len(body)},
                },
            }
        ]
    }
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", S3_HANDLER, json.dumps(event)],
        env=sfn_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is None, proc.stderr
    assert '"outcome": "completed"' in proc.stderr, proc.stderr
    finished = await task.finished()
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == {"clean": True}
