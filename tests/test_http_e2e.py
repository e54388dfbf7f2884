"""The HTTP function as a real ``functions-framework`` process over real HTTP.

functions-framework sees the async function and serves it with gunicorn's uvicorn worker:
gunicorn imports the function and then forks its worker, so these tests also prove that the
worker makes and uses its own engine client on its own loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from standardwebhooks.webhooks import Webhook
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError as TemporalActivityError
from temporalio.exceptions import ApplicationError

from tests.support.http_app import SOURCE, token_forms
from tests.support.services import free_port, running, venv_tool, wait_for_port
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
def function_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("http-function") / "function.log"


@pytest.fixture(scope="module")
def function_url(temporal_server: TemporalServer, function_log: Path) -> Iterator[str]:
    binary = venv_tool("functions-framework")
    assert binary is not None
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMPLETER_")},
        "TEMPORAL_ADDRESS": temporal_server.address,
        "COMPLETER_RPC_TIMEOUT_SECONDS": "5",
        "COMPLETER_ALLOW_UNSIGNED": "true",
    }
    argv = [binary, "--source", SOURCE, "--target", "complete", "--host", "127.0.0.1"]
    with running([*argv, "--port", str(port)], env=env, log_path=function_log) as process:
        wait_for_port(port, timeout=60, process=process)
        yield f"http://127.0.0.1:{port}/"


def post(url: str, body: Any) -> requests.Response:
    return requests.post(url, json=body, timeout=30)


async def apost(url: str, body: Any) -> requests.Response:
    return await asyncio.to_thread(post, url, body)


async def test_complete_fail_and_heartbeat_over_http(
    function_url: str, new_waiting: Any, function_log: Path
):
    done, failed, beating = await new_waiting(), await new_waiting(), await new_waiting()
    response = await apost(function_url, {"task_token": done.token_b64, "result": {"ok": 1}})
    assert (response.status_code, response.json()) == (200, {"status": "completed"})
    assert await done.handle.result() == {"ok": 1}

    error = {"message": "no", "type": "Rejected", "non_retryable": True}
    response = await apost(function_url, {"task_token": failed.token_urlsafe, "error": error})
    assert (response.status_code, response.json()) == (200, {"status": "failed"})
    with pytest.raises(WorkflowFailureError) as info:
        await failed.handle.result()
    assert isinstance(info.value.cause, TemporalActivityError)
    assert isinstance(info.value.cause.cause, ApplicationError)
    assert info.value.cause.cause.type == "Rejected"

    body = {"task_token": beating.token_b64, "action": "heartbeat", "details": {"pct": 70}}
    response = await apost(function_url, body)
    assert response.json() == {"status": "heartbeat_recorded", "cancel_requested": False}
    pending = await beating.pending_activity()
    assert pending.heartbeat_details.payloads[0].data == b'{"pct":70}'

    # The function's ledger (in memory while COMPLETER_LEDGER is unset) knows this activity
    # was completed: a different request for it is a conflict, an identical one a replay.
    response = await apost(function_url, {"task_token": done.token_b64, "result": 2})
    assert response.status_code == 409
    response = await apost(function_url, {"task_token": done.token_b64, "result": {"ok": 1}})
    assert response.json() == {"status": "completed", "replayed": True}
    response = await asyncio.to_thread(requests.get, function_url, timeout=30)
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")
    assert_logs_clean(function_log, done, failed, beating)


async def test_concurrent_duplicates_over_http_complete_once(
    function_url: str, waiting: WaitingActivity, function_log: Path
):
    barrier = threading.Barrier(8)

    def send(i: int) -> tuple[int, int]:
        barrier.wait(timeout=10)
        return i, post(function_url, {"task_token": waiting.token_b64, "result": i}).status_code

    def send_all() -> list[tuple[int, int]]:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(send, range(8)))

    answers = await asyncio.to_thread(send_all)
    winners = [i for i, status in answers if status == 200]
    # One engine call; the ledger answers the seven others (different results) as conflicts.
    assert sorted(status for _, status in answers) == [200] + [409] * 7
    assert await waiting.handle.result() == winners[0]
    assert_logs_clean(function_log, waiting)


async def test_bad_requests_over_http(function_url: str, waiting: WaitingActivity):
    for body, content_type, status in [
        (b"{", "application/json", 400),
        (b"\xff", "application/json", 400),
        (b"{}", "text/plain", 415),
        (b'{"task_token": "%%%"}', "application/json", 400),
    ]:
        response = await asyncio.to_thread(
            requests.post,
            function_url,
            data=body,
            headers={"Content-Type": content_type},
            timeout=30,
        )
        assert response.status_code == status
        assert set(response.json()["error"]) == {"code", "message"}
    assert await waiting.pending_activity() is not None


async def test_chunked_body_over_the_limit_is_413_over_http(function_url: str):
    def chunks() -> Iterator[bytes]:
        # No Content-Length: the function must stop reading at its limit (3 MiB by default).
        for _ in range(64):
            yield b" " * (64 * 1024)

    response = await asyncio.to_thread(
        requests.post,
        function_url,
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def assert_logs_clean(log: Path, *activities: WaitingActivity) -> None:
    text = log.read_text(errors="replace")
    assert "completion request answered" in text
    for activity in activities:
        leaked = [form for form in token_forms(activity.task_token) if form in text]
        assert not leaked


def test_wrong_configuration_stops_the_process_with_one_sentence(
    temporal_server: TemporalServer, tmp_path: Path
):
    binary = venv_tool("functions-framework")
    assert binary is not None
    secret = "whsec_" + base64.b64encode(os.urandom(3)).decode()[:1]
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_server.address,
        "COMPLETER_SIGNING_SECRETS": secret,
    }
    argv = [binary, "--source", SOURCE, "--target", "complete", "--port", str(free_port())]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "activity-completer: COMPLETER_SIGNING_SECRETS is invalid" in done.stderr
    assert "Traceback" not in done.stderr
    assert secret not in done.stderr + done.stdout


# --- what guards it (docs/security.md), on a real process ----------------------------------


def test_unguarded_function_refuses_to_start_with_one_sentence(
    temporal_server: TemporalServer, tmp_path: Path
):
    binary = venv_tool("functions-framework")
    assert binary is not None
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMPLETER_")},
        "TEMPORAL_ADDRESS": temporal_server.address,
    }
    argv = [binary, "--source", SOURCE, "--target", "complete", "--port", str(free_port())]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    refusal = [line for line in done.stderr.splitlines() if line.startswith("activity-completer:")]
    assert refusal == [
        "activity-completer: The HTTP function refuses to start unguarded: set "
        "COMPLETER_SIGNING_SECRETS (signed requests), COMPLETER_LINK_SECRET (completion links), "
        "or COMPLETER_ALLOW_UNSIGNED=true when the platform's IAM already guards the endpoint."
    ]
    assert "Traceback" not in done.stderr


SIGNING_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="module")
def signed_url(
    temporal_server: TemporalServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A function that takes signed JSON only, with a 1 s body read deadline."""
    binary = venv_tool("functions-framework")
    assert binary is not None
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMPLETER_")},
        "TEMPORAL_ADDRESS": temporal_server.address,
        "COMPLETER_RPC_TIMEOUT_SECONDS": "1",
        "COMPLETER_SIGNING_SECRETS": SIGNING_SECRET,
    }
    log = tmp_path_factory.mktemp("signed-function") / "function.log"
    argv = [binary, "--source", SOURCE, "--target", "complete", "--host", "127.0.0.1"]
    with running([*argv, "--port", str(port)], env=env, log_path=log) as process:
        wait_for_port(port, timeout=60, process=process)
        yield f"http://127.0.0.1:{port}/"
    assert SIGNING_SECRET.removeprefix("whsec_") not in log.read_text(errors="replace")


def signed_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = int(time.time())
    signature = Webhook(SIGNING_SECRET).sign(
        msg_id, datetime.fromtimestamp(now, tz=UTC), body.decode()
    )
    sent = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
        **(headers or {}),
    }
    return requests.post(url, data=body, headers=sent, timeout=30)


async def test_signed_only_process_refuses_unsigned_and_answers_replays(
    signed_url: str, waiting: WaitingActivity
):
    body = json.dumps({"task_token": waiting.token_b64, "result": "signed"}).encode()
    unsigned = await asyncio.to_thread(
        requests.post,
        signed_url,
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "unauthorized"
    assert await waiting.pending_activity() is not None

    first = await asyncio.to_thread(signed_post, signed_url, body)
    sent = first.request.headers
    replay_headers = {k: sent[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    again = await asyncio.to_thread(
        requests.post,
        signed_url,
        data=body,
        headers={"Content-Type": "application/json", **replay_headers},
        timeout=30,
    )
    assert (first.status_code, first.json()) == (200, {"status": "completed"})
    assert (again.status_code, again.json()) == (200, {"status": "completed", "replayed": True})
    for answer in (unsigned, first, again):
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert await waiting.handle.result() == "signed"


def trickle(url: str) -> tuple[float, bytes]:
    """Declare 1000 bytes, send 1, and wait for the answer on a raw socket."""
    parts = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return time.monotonic() - started, answer


async def test_slow_body_is_answered_400_at_the_read_deadline(signed_url: str):
    elapsed, answer = await asyncio.to_thread(trickle, signed_url)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b'"invalid_request"' in answer
    assert b"did not arrive within 1 s" in answer
    assert elapsed < 10
    # Not stuck: the worker answers the next request at once.
    again = await asyncio.to_thread(signed_post, signed_url, b"{}")
    assert again.status_code == 400
