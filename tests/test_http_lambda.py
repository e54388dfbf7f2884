"""The HTTP function on AWS Lambda (``functions/http_lambda/main.py``) in a fresh process.

Each test starts a new Python process that loads the function file as Lambda does and hands
its ``handler`` a series of events, all built from AWS's documented payload format 2.0
examples (tests/events/http_lambda/: a Function URL request and an HTTP API request) with
only the method, headers, query string and body changed. The process keeps one event loop
across those invocations, as a warm Lambda does. Engines: the Temporal dev server and Step
Functions on moto in server mode.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from standardwebhooks.webhooks import Webhook

from completer.activity import approval_links
from tests.support.stepfunctions import MotoStepFunctions, aws_env, moto_stepfunctions
from tests.support.temporal import TemporalServer

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "tests" / "events" / "http_lambda"
SIGNING_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
LINK_SECRET = base64.urlsafe_b64encode(os.urandom(30)).decode()
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

# Loads the function file as Lambda's bootstrap does (module "main"), then invokes it once
# per event, on the one loop the module made.
RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main", "functions/http_lambda/main.py")
main = importlib.util.module_from_spec(spec)
spec.loader.exec_module(main)
with open(sys.argv[1]) as f:
    events = json.load(f)
print("RESULT " + json.dumps([main.handler(event, None) for event in events]))
"""


def golden(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def event(
    kind: str,
    method: str,
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
    body: bytes | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """AWS's example event of ``kind`` ("function_url" / "http_api_v2") carrying this request."""
    shaped = golden(f"{kind}.json")
    shaped["requestContext"]["http"]["method"] = method
    shaped["headers"] = {**shaped["headers"], **{k.lower(): v for k, v in (headers or {}).items()}}
    shaped["rawQueryString"] = query
    shaped.pop("queryStringParameters", None)
    if query:
        shaped["queryStringParameters"] = {k: ",".join(v) for k, v in parse_qs(query).items()}
    shaped.pop("body", None)
    shaped["isBase64Encoded"] = base64_body
    if body is not None:
        shaped["body"] = base64.b64encode(body).decode() if base64_body else body.decode()
    return shaped


def signed_json(body: bytes) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = int(time.time())
    signature = Webhook(SIGNING_SECRET).sign(
        msg_id, datetime.fromtimestamp(now, tz=UTC), body.decode()
    )
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
    }


def invoke(events: list[dict[str, Any]], env: dict[str, str], tmp: Path) -> list[dict[str, Any]]:
    """Run the handler over ``events`` in a fresh process; its answers in order."""
    (tmp / "events.json").write_text(json.dumps(events))
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(tmp / "events.json")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert SIGNING_SECRET not in done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    answers: list[dict[str, Any]] = json.loads(lines[-1].removeprefix("RESULT "))
    return answers


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "TEMPORAL_"))}
    env.update(COMPLETER_RPC_TIMEOUT_SECONDS="5", **extra)
    return env


def body_of(answer: dict[str, Any]) -> Any:
    assert answer["isBase64Encoded"] is False
    return json.loads(answer["body"])


def assert_json_answer(answer: dict[str, Any], status: int) -> Any:
    assert answer["statusCode"] == status, answer
    assert answer["headers"]["Content-Type"] == "application/json"
    for name, value in JSON_HEADERS.items():
        assert answer["headers"][name] == value
    return body_of(answer)


@pytest.mark.temporal
async def test_function_url_and_http_api_events_on_temporal(
    temporal_server: TemporalServer, new_waiting: Any, tmp_path: Path
):
    by_url, by_api, by_link, untouched = [await new_waiting() for _ in range(4)]
    first = json.dumps({"task_token": by_url.token_b64, "result": {"via": "function url"}})
    first_body = first.encode()
    first_headers = signed_json(first_body)
    second_body = json.dumps({"task_token": by_api.token_b64, "result": "via http api"}).encode()
    unsigned_body = json.dumps({"task_token": untouched.token_b64, "result": 1}).encode()
    large = json.dumps({"task_token": untouched.token_b64, "result": "x" * 5000}).encode()
    links = approval_links("https://fn.example/", secret=LINK_SECRET, task_token=by_link.token_b64)
    link_query = urlsplit(links.approve).query
    sealed = parse_qs(link_query)["link"][0]
    form = f"link={sealed}".encode()
    events = [
        event("function_url", "POST", headers=first_headers, body=first_body),
        event(
            "http_api_v2",
            "POST",
            headers=signed_json(second_body),
            body=second_body,
            base64_body=True,
        ),
        event(
            "function_url", "POST", headers={"content-type": "application/json"}, body=unsigned_body
        ),
        event("http_api_v2", "POST", headers=signed_json(large), body=large),
        event("function_url", "GET", query=link_query),
        # The golden browser request says cross-site; the page's own form posts same-origin.
        event(
            "function_url",
            "POST",
            query=link_query,
            body=form,
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "sec-fetch-site": "same-origin",
            },
        ),
        event("function_url", "POST", headers=first_headers, body=first_body),  # a replay
        event("http_api_v2", "PUT", headers={"content-type": "application/json"}, body=b"{}"),
        {
            **event("http_api_v2", "POST", headers=signed_json(b"{}")),
            "isBase64Encoded": True,
            "body": "%%% not base64",
        },
    ]
    env = base_env(
        TEMPORAL_ADDRESS=temporal_server.address,
        COMPLETER_SIGNING_SECRETS=SIGNING_SECRET,
        COMPLETER_LINK_SECRET=LINK_SECRET,
        COMPLETER_MAX_BODY_BYTES="4096",
    )
    answers = await asyncio.to_thread(invoke, events, env, tmp_path)

    assert assert_json_answer(answers[0], 200) == {"status": "completed"}
    assert assert_json_answer(answers[1], 200) == {"status": "completed"}
    assert assert_json_answer(answers[2], 401)["error"]["code"] == "unauthorized"
    assert assert_json_answer(answers[3], 413)["error"]["code"] == "payload_too_large"
    page, posted = answers[4], answers[5]
    assert page["statusCode"] == 200
    assert page["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert "<form" in page["body"]
    # Post/Redirect/Get: the choice answers 303 to its receipt (docs/approval-pages.md).
    assert posted["statusCode"] == 303, posted["body"][:500]
    assert "receipt=" in posted["headers"]["Location"]
    assert assert_json_answer(answers[6], 200) == {"status": "completed", "replayed": True}
    refused = assert_json_answer(answers[7], 405)
    assert refused["error"]["code"] == "method_not_allowed"
    assert answers[7]["headers"]["Allow"] == "POST"
    assert assert_json_answer(answers[8], 400)["error"]["code"] == "invalid_request"

    assert await by_url.handle.result() == {"via": "function url"}
    assert await by_api.handle.result() == "via http api"
    assert await by_link.handle.result() == {"approved": True}
    assert (await untouched.pending_activity()) is not None
    await untouched.handle.terminate()


@pytest.fixture(scope="module")
def sfn() -> Iterator[MotoStepFunctions]:
    yield from moto_stepfunctions()


@pytest.mark.moto
async def test_function_url_completes_a_waiting_step_functions_task(
    sfn: MotoStepFunctions, tmp_path: Path
):
    task, other = sfn.start_waiting(), sfn.start_waiting()
    body = json.dumps({"taskToken": task.task_token, "result": {"approved": True}}).encode()
    unsigned = json.dumps({"taskToken": other.task_token, "result": 1}).encode()
    env = base_env(
        COMPLETER_BACKEND="stepfunctions",
        COMPLETER_SIGNING_SECRETS=SIGNING_SECRET,
        AWS_REGION="us-east-1",
        **aws_env(sfn.endpoint),
    )
    events = [
        event("function_url", "POST", headers=signed_json(body), body=body),
        event("function_url", "POST", headers={"content-type": "application/json"}, body=unsigned),
    ]
    answers = await asyncio.to_thread(invoke, events, env, tmp_path)
    assert assert_json_answer(answers[0], 200) == {"status": "completed"}
    assert assert_json_answer(answers[1], 401)["error"]["code"] == "unauthorized"
    finished = await task.finished()
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == {"approved": True}
    assert other.describe()["status"] == "RUNNING"


def test_unguarded_lambda_refuses_to_start_with_one_sentence(tmp_path: Path):
    (tmp_path / "events.json").write_text("[]")
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(tmp_path / "events.json")],
        env=base_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("activity-completer: The HTTP function refuses to start unguarded")
    assert "Traceback" not in done.stderr


@pytest.mark.moto
async def test_function_url_serves_callback_urls_and_keys_on_step_functions(
    sfn: MotoStepFunctions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """On Lambda too: a partner's own payload through a callback URL, and a request by key
    kept until the activity side registers the key; the ledger on DynamoDB (moto)."""
    from completer.activity import callback_url, register_async
    from completer.ledger.dynamodb import create_table
    from completer.settings import Settings

    table = f"ledger-{uuid.uuid4().hex[:8]}"
    aws = {
        **aws_env(sfn.endpoint),
        "AWS_ENDPOINT_URL_DYNAMODB": sfn.endpoint,
        "AWS_REGION": aws_env(sfn.endpoint)["AWS_DEFAULT_REGION"],
    }
    for name, value in aws.items():  # this process registers the key, as an activity would
        monkeypatch.setenv(name, value)
    assert create_table(table) is True
    paid, by_key = sfn.start_waiting(), sfn.start_waiting()
    url = callback_url(
        "https://fn.example/",
        secret=LINK_SECRET,
        task_token=paid.task_token,
        select="data.object",
        fail_when="type == 'payment_intent.payment_failed'",
    )
    query = urlsplit(url).query
    sealed = parse_qs(query)["callback"][0]
    tampered = "callback=" + sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    succeeded = json.dumps(
        {"type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1", "amount": 12000}}}
    ).encode()
    other = json.dumps({"type": "payment_intent.succeeded", "data": {"object": {}}}).encode()
    key = f"ORDER-{uuid.uuid4().hex[:6]}"
    by_key_body = json.dumps({"correlation_key": key, "result": {"rows": 3}}).encode()
    plain = {"content-type": "application/json"}
    events = [
        event("function_url", "POST", query=query, headers=plain, body=succeeded),
        event("function_url", "POST", query=query, headers=plain, body=succeeded),  # a retry
        event("http_api_v2", "POST", query=query, headers=plain, body=other),
        event("function_url", "POST", query=tampered, headers=plain, body=succeeded),
        # By key, before anyone registered it: kept (202) when signed, refused unsigned.
        event("function_url", "POST", headers=signed_json(by_key_body), body=by_key_body),
        event("function_url", "POST", headers=plain, body=by_key_body),
    ]
    env = base_env(
        COMPLETER_BACKEND="stepfunctions",
        COMPLETER_LINK_SECRET=LINK_SECRET,
        COMPLETER_SIGNING_SECRETS=SIGNING_SECRET,
        COMPLETER_LEDGER=f"dynamodb://{table}",
        **aws,
    )
    answers = await asyncio.to_thread(invoke, events, env, tmp_path)
    assert assert_json_answer(answers[0], 200) == {"status": "completed"}
    assert assert_json_answer(answers[1], 200) == {"status": "completed", "replayed": True}
    assert assert_json_answer(answers[2], 409)["error"]["code"] == "conflict"
    assert assert_json_answer(answers[3], 401)["error"]["code"] == "unauthorized"
    assert assert_json_answer(answers[4], 202) == {"status": "buffered"}
    assert assert_json_answer(answers[5], 401)["error"]["code"] == "unauthorized"
    finished = await paid.finished()
    assert json.loads(finished["output"]) == {"id": "pi_1", "amount": 12000}
    assert by_key.describe()["status"] == "RUNNING"
    # The activity side registers the key: the kept request is carried out at once.
    settings = Settings(
        COMPLETER_BACKEND="stepfunctions",
        COMPLETER_RPC_TIMEOUT_SECONDS=5,
        COMPLETER_LEDGER=f"dynamodb://{table}",
    )
    outcome = await register_async(key, task_token=by_key.task_token, settings=settings)
    assert outcome is not None
    assert outcome.status == "completed"
    finished = await by_key.finished()
    assert json.loads(finished["output"]) == {"rows": 3}
