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

from completer.dev.gcs_events import finalized_event
from tests.support.cadence import Activity, FakeFrontend, fake_frontend
from tests.support.services import free_port, running, venv_tool, wait_for_port
from tests.support.stepfunctions import REGION, MotoStepFunctions, aws_env, moto_stepfunctions

ROOT = Path(__file__).resolve().parents[1]
WRONG_DOMAIN_SENTENCE = "CADENCE_DOMAIN is 'ordres', a domain the Cadence cluster at"
DOMAIN = "orders"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "CADENCE_"))}
    env.update({"COMPLETER_RPC_TIMEOUT_SECONDS": "5", "COMPLETER_ALLOW_UNSIGNED": "true", **extra})
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


def closed_with(activity: Activity) -> tuple[str, Any]:
    """How the model's activity closed, with its payload decoded."""
    assert activity.closed is not None, "the activity is still pending"
    status, payload, *_ = activity.closed
    return status, json.loads(payload)


async def test_http_function_with_cadence(frontend: FakeFrontend, cadence_env, tmp_path: Path):
    frontend.api.reset()
    activity = frontend.api.schedule_activity("approve", domain=DOMAIN)
    token = base64.b64encode(activity.task_token).decode()
    body = {"task_token": token, "result": {"approved": True}}
    with function_process("functions/http/main.py", cadence_env, tmp_path / "log") as url:
        ok = await asyncio.to_thread(requests.post, url, json=body, timeout=30)
        assert (ok.status_code, ok.json()) == (200, {"status": "completed"})
        assert closed_with(activity) == ("completed", {"approved": True})
        call = frontend.only_call
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
    activity = frontend.api.schedule_activity("review")
    with function_process(
        "functions/pubsub/main.py", cadence_env, tmp_path / "log", cloudevent=True
    ) as url:
        naming = {"workflow_id": activity.workflow_id, "activity_id": activity.activity_id}
        event = pubsub_push({"reviewer": "ana"}, naming)
        answer = await asyncio.to_thread(post_cloudevent, url, event)
        assert answer.status_code == 200, answer.text
    assert closed_with(activity) == ("completed", {"reviewer": "ana"})
    call = frontend.only_call
    assert call.method == "RespondActivityTaskCompletedByID"
    assert call.request.domain == DOMAIN


@pytest.mark.parametrize("function", ["http", "pubsub", "gcs"])
async def test_gcp_function_with_a_wrong_domain_answers_500_with_one_sentence(
    frontend: FakeFrontend, tmp_path: Path, function: str
):
    # functions-framework's ASGI app has no start-up hook: the worker connects on its first
    # request, which answers 500 (retried) with the one sentence in the log.
    frontend.api.reset()
    env = base_env(
        COMPLETER_BACKEND="cadence",
        CADENCE_ADDRESS=frontend.address,
        CADENCE_DOMAIN="ordres",
        COMPLETER_ALLOW_UNSIGNED="true",
    )
    log = tmp_path / "log"
    source = f"functions/{function}/main.py"
    with function_process(source, env, log, cloudevent=function != "http") as url:
        if function == "http":
            answer = await asyncio.to_thread(
                requests.post, url, json={"workflow_id": "wf", "activity_id": "a"}, timeout=30
            )
            assert answer.json()["error"]["code"] == "internal"
        elif function == "pubsub":
            event = pubsub_push(1, {"workflow_id": "wf", "activity_id": "a"})
            answer = await asyncio.to_thread(post_cloudevent, url, event)
        else:
            # Not JSON: its reference is the result, so nothing is read before the engine.
            data = {"bucket": "b", "name": "in/a.pdf", "generation": "1", "size": "4"}
            data["contentType"] = "application/pdf"
            event = finalized_event({**data, "metadata": {"workflow-id": "wf", "activity-id": "a"}})
            answer = await asyncio.to_thread(post_cloudevent, url, event)
        assert answer.status_code == 500, answer.text
    text = log.read_text()
    assert WRONG_DOMAIN_SENTENCE in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert [call.method for call in frontend.api.calls] == ["DescribeDomain"]


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


# --- S3: the Lambda handler in a fresh process, as Lambda loads it -------------------------

S3_HANDLER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main", "functions/s3/main.py")
main = importlib.util.module_from_spec(spec)
spec.loader.exec_module(main)
print(json.dumps(main.handler(json.loads(sys.argv[1]), None)))
if sys.argv[2] != "cadence":
    assert "temporalio" not in sys.modules and "grpc" not in sys.modules
"""


def s3_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_REGION": REGION, **aws_env(endpoint)}


def put_upload(endpoint: str, body: bytes, metadata: dict[str, str]) -> dict[str, Any]:
    """Upload ``incoming/scan result.json`` to a new bucket; returns its S3 notification."""
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"uploads-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    key = "incoming/scan result.json"
    s3.put_object(
        Bucket=bucket, Key=key, Body=body, ContentType="application/json", Metadata=metadata
    )
    return {
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


async def run_s3_handler(
    event: dict[str, Any], env: dict[str, str], *, backend: str
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", S3_HANDLER, json.dumps(event), backend],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_s3_function_with_stepfunctions(sfn: MotoStepFunctions, sfn_env):
    task = sfn.start_waiting()
    event = put_upload(sfn.endpoint, b'{"clean": true}', {"task-token": task.task_token})
    proc = await run_s3_handler(event, sfn_env, backend="stepfunctions")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is None, proc.stderr
    assert '"outcome": "completed"' in proc.stderr, proc.stderr
    finished = await task.finished()
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == {"clean": True}


async def test_s3_function_with_cadence(
    frontend: FakeFrontend, sfn: MotoStepFunctions, cadence_env: dict[str, str]
):
    frontend.api.reset()
    activity = frontend.api.schedule_activity("scan")
    token = base64.b64encode(activity.task_token).decode()
    event = put_upload(sfn.endpoint, b'{"clean": true}', {"task-token": token})
    proc = await run_s3_handler(event, {**cadence_env, **s3_env(sfn.endpoint)}, backend="cadence")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is None, proc.stderr
    assert '"outcome": "completed"' in proc.stderr, proc.stderr
    assert closed_with(activity) == ("completed", {"clean": True})
    # Connected during init (DescribeDomain), then one completion over that connection.
    assert [call.method for call in frontend.api.calls] == [
        "DescribeDomain",
        "RespondActivityTaskCompleted",
    ]
    assert token not in proc.stderr


async def test_s3_function_with_a_wrong_domain_fails_its_start_with_one_sentence(
    frontend: FakeFrontend, sfn: MotoStepFunctions
):
    env = base_env(
        COMPLETER_BACKEND="cadence",
        CADENCE_ADDRESS=frontend.address,
        CADENCE_DOMAIN="ordres",
        **s3_env(sfn.endpoint),
    )
    proc = await run_s3_handler({"Records": []}, env, backend="cadence")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().startswith(f"activity-completer: {WRONG_DOMAIN_SENTENCE}")
    assert "Traceback" not in proc.stderr


async def test_s3_function_starts_while_cadence_is_down_and_connects_later(
    sfn: MotoStepFunctions,
):
    # An unreachable engine is not a configuration error: the cold start goes on.
    env = base_env(
        COMPLETER_BACKEND="cadence",
        CADENCE_ADDRESS=f"127.0.0.1:{free_port()}",
        CADENCE_DOMAIN=DOMAIN,
        **s3_env(sfn.endpoint),
    )
    proc = await run_s3_handler({"Records": []}, env, backend="cadence")
    assert proc.returncode == 0, proc.stderr
    assert "engine not connected at start" in proc.stderr
