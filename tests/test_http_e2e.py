"""The HTTP function as a real ``functions-framework`` process over real HTTP.

functions-framework sees the async function and serves it with gunicorn's uvicorn worker:
gunicorn imports the function and then forks its worker, so these tests also prove that the
worker makes and uses its own engine client on its own loop.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
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

    # A different completion of a completed activity: the ledger kept the first (409).
    response = await apost(function_url, {"task_token": done.token_b64, "result": 2})
    assert response.status_code == 409
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
    assert sorted(status for _, status in answers) == [200] + [409] * 7  # the ledger's conflict
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
