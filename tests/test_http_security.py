"""What guards the HTTP function (docs/security.md), through functions-framework's real app.

Apps are built by ``functions_framework.create_app`` from ``functions/http/main.py`` with their
settings in the environment (tests/support/http_app.py) and driven in-process, against the
real Temporal dev server: who may send JSON, refusal to start unguarded, replays of a
``webhook-id``, signing-secret scopes, the headers of JSON answers and slow bodies.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.client import WorkflowFailureError

from tests.support.asgi import AsgiResponse, CountingBody, call
from tests.support.http_app import FunctionApps, scanned_logs, token_forms
from tests.support.services import free_port
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = pytest.mark.temporal

JSON = "application/json"
JSON_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
LINK_SECRET = base64.urlsafe_b64encode(os.urandom(30)).decode()
SENSITIVE: set[str] = set()


def new_secret() -> str:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    SENSITIVE.update({secret, secret.removeprefix("whsec_")})
    return secret


def signed(secret: str, body: bytes, msg_id: str | None = None) -> dict[str, str]:
    """Standard Webhooks headers made by the reference library."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = int(time.time())
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}


@dataclass
class App:
    asgi: Any

    async def post(
        self, body: bytes | CountingBody, *, headers: dict[str, str] | None = None
    ) -> AsgiResponse:
        sent = {"Content-Type": JSON, **(headers or {})}
        return await call(self.asgi, "POST", body=body, headers=sent)


def error_of(response: AsgiResponse) -> tuple[int, str]:
    return response.status_code, response.get_json()["error"]["code"]


def assert_json_headers(response: AsgiResponse) -> None:
    assert response.mimetype == JSON
    for name, value in JSON_HEADERS.items():
        assert response.headers.get(name) == value, (response.status_code, name)


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    SENSITIVE.clear()
    SENSITIVE.add(LINK_SECRET)
    with scanned_logs(caplog, SENSITIVE) as lines:
        yield lines


@pytest.fixture
async def make_app(
    temporal_server: TemporalServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., App]]:
    apps = FunctionApps(monkeypatch, temporal_server.address)

    def make(**env: str) -> App:
        return App(apps.build(**env)[0])

    yield make
    await apps.close()


@pytest.fixture
def activity(waiting: WaitingActivity) -> WaitingActivity:
    SENSITIVE.update(token_forms(waiting.task_token))
    return waiting


async def still_waiting(activity: WaitingActivity) -> bool:
    return (await activity.pending_activity()) is not None


def complete_body(activity: WaitingActivity, result: Any = "yes") -> bytes:
    return json.dumps({"task_token": activity.token_b64, "result": result}).encode()


# --- who may send JSON ----------------------------------------------------------------------


def test_unguarded_function_refuses_to_start_with_one_sentence(make_app: Callable[..., App]):
    with pytest.raises(SystemExit) as info:
        make_app(COMPLETER_ALLOW_UNSIGNED="")
    message = str(info.value.code)
    assert message.startswith("activity-completer: The HTTP function refuses to start unguarded")
    assert "\n" not in message
    for variable in ("COMPLETER_SIGNING_SECRETS", "COMPLETER_LINK_SECRET"):
        assert variable in message
    assert "COMPLETER_ALLOW_UNSIGNED=true" in message


async def test_links_only_json_is_401_and_links_still_work(
    make_app: Callable[..., App], activity: WaitingActivity
):
    from completer.activity import approval_links

    app = make_app(COMPLETER_ALLOW_UNSIGNED="", COMPLETER_LINK_SECRET=LINK_SECRET)
    response = await app.post(complete_body(activity))
    assert error_of(response) == (401, "unauthorized")
    assert "signed requests only" in response.get_json()["error"]["message"]
    assert_json_headers(response)
    assert await still_waiting(activity)

    links = approval_links("https://fn.example/", secret=LINK_SECRET, task_token=activity.token_b64)
    SENSITIVE.update({urlsplit(links.approve).query})
    query = urlsplit(links.approve).query
    page = await call(app.asgi, "GET", query=query)
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    done = await call(app.asgi, "POST", query=query)
    assert done.status_code == 303  # to the receipt (docs/approval-pages.md)
    assert await activity.handle.result() == {"approved": True}


async def test_allow_unsigned_takes_unsigned_json(
    make_app: Callable[..., App], activity: WaitingActivity
):
    app = make_app(COMPLETER_ALLOW_UNSIGNED="true")
    response = await app.post(complete_body(activity, "behind IAM"))
    assert (response.status_code, response.get_json()) == (200, {"status": "completed"})
    assert_json_headers(response)
    assert await activity.handle.result() == "behind IAM"


async def test_with_secrets_unsigned_json_is_401_whatever_allow_unsigned_says(
    make_app: Callable[..., App], activity: WaitingActivity
):
    app = make_app(COMPLETER_SIGNING_SECRETS=new_secret(), COMPLETER_ALLOW_UNSIGNED="true")
    response = await app.post(complete_body(activity))
    assert error_of(response) == (401, "unauthorized")
    assert await still_waiting(activity)


# --- replays ---------------------------------------------------------------------------------


async def test_replayed_signed_complete_answers_the_first_answer_replayed(
    make_app: Callable[..., App], activity: WaitingActivity, no_secrets_in_logs: io.StringIO
):
    secret = new_secret()
    app = make_app(COMPLETER_SIGNING_SECRETS=secret)
    body = complete_body(activity, {"n": 1})
    headers = signed(secret, body)
    first, again = await app.post(body, headers=headers), await app.post(body, headers=headers)
    assert (first.status_code, first.get_json()) == (200, {"status": "completed"})
    assert (again.status_code, again.get_json()) == (200, {"status": "completed", "replayed": True})
    assert_json_headers(again)
    assert await activity.handle.result() == {"n": 1}
    # A new webhook-id for the same body is a new request: the function's ledger answers it
    # with the first outcome, without the engine.
    third = await app.post(body, headers=signed(secret, body))
    assert (third.status_code, third.get_json()) == (200, {"status": "completed", "replayed": True})
    lines = [json.loads(line) for line in no_secrets_in_logs.getvalue().splitlines()]
    assert [line["message"] for line in lines].count("signed request replayed") == 1


async def test_replayed_signed_fail_by_ids_fails_the_activity_once(
    make_app: Callable[..., App], activity: WaitingActivity
):
    secret = new_secret()
    app = make_app(COMPLETER_SIGNING_SECRETS=secret)
    body = json.dumps(
        {
            "workflow_id": activity.workflow_id,
            "activity_id": activity.activity_id,
            "error": {"message": "declined", "type": "Declined", "non_retryable": False},
        }
    ).encode()
    headers = signed(secret, body)
    answers = [await app.post(body, headers=headers) for _ in range(3)]
    assert [a.get_json() for a in answers] == [
        {"status": "failed"},
        {"status": "failed", "replayed": True},
        {"status": "failed", "replayed": True},
    ]
    with pytest.raises(WorkflowFailureError):
        await activity.handle.result()
    history = [event async for event in activity.handle.fetch_history_events()]
    failures = [e for e in history if e.HasField("activity_task_failed_event_attributes")]
    assert len(failures) == 1


async def test_webhook_id_reused_for_another_body_is_409(
    make_app: Callable[..., App], activity: WaitingActivity
):
    secret = new_secret()
    app = make_app(COMPLETER_SIGNING_SECRETS=secret)
    first = json.dumps({"task_token": "dG9rZW4", "result": 1}).encode()
    headers = signed(secret, first, "msg_same")
    assert error_of(await app.post(first, headers=headers)) == (400, "invalid_request")
    other = complete_body(activity)
    response = await app.post(other, headers=signed(secret, other, "msg_same"))
    assert error_of(response) == (409, "conflict")
    assert await still_waiting(activity)


async def test_transient_answer_is_not_kept_the_retry_is_carried_out(
    make_app: Callable[..., App], activity: WaitingActivity
):
    secret = new_secret()
    down = make_app(COMPLETER_SIGNING_SECRETS=secret, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    body = complete_body(activity, "retried")
    headers = signed(secret, body)
    refused = await down.post(body, headers=headers)
    assert error_of(refused) == (503, "engine_unavailable")
    assert "retry-after" in refused.headers
    assert_json_headers(refused)
    again = await down.post(body, headers=headers)
    assert "replayed" not in again.get_json()
    assert await still_waiting(activity)


# --- scopes ----------------------------------------------------------------------------------


async def test_scope_violation_is_403_and_completes_nothing(
    make_app: Callable[..., App], activity: WaitingActivity
):
    acme, beta = new_secret(), new_secret()
    app = make_app(
        COMPLETER_SIGNING_SECRETS=f"acme={acme} beta={beta}",
        COMPLETER_SIGNING_SCOPES=json.dumps(
            {"beta": {"workflow_id_prefixes": ["beta-"]}, "acme": {"actions": ["heartbeat"]}}
        ),
    )
    by_ids = json.dumps(
        {"workflow_id": activity.workflow_id, "activity_id": activity.activity_id, "result": 1}
    ).encode()
    by_token = complete_body(activity)
    for secret, body in ((beta, by_ids), (beta, by_token), (acme, by_ids), (acme, by_token)):
        response = await app.post(body, headers=signed(secret, body))
        assert error_of(response) == (403, "forbidden")
        assert_json_headers(response)
    assert await still_waiting(activity)
    beat = json.dumps({"task_token": activity.token_b64, "action": "heartbeat"}).encode()
    response = await app.post(beat, headers=signed(acme, beat))
    assert response.get_json() == {"status": "heartbeat_recorded", "cancel_requested": False}


# --- answers ---------------------------------------------------------------------------------


async def test_every_json_answer_carries_no_store_and_nosniff(
    make_app: Callable[..., App], activity: WaitingActivity
):
    app = make_app(COMPLETER_MAX_BODY_BYTES="2000")
    answers = [
        await app.post(complete_body(activity)),  # 200
        await app.post(complete_body(activity, "other")),  # 409: the ledger's conflict
        await app.post(b"{not json"),  # 400
        await app.post(b"x" * 3000),  # 413
        await call(app.asgi, "GET"),  # 405
        await call(app.asgi, "POST", body=b"a=1", headers={"Content-Type": "text/plain"}),  # 415
    ]
    assert [a.status_code for a in answers] == [200, 409, 400, 413, 405, 415]
    for answer in answers:
        assert_json_headers(answer)


@dataclass
class TrickleBody(CountingBody):
    """A sender that declared a body and sends one byte, then nothing."""

    async def chunks(self) -> AsyncIterator[bytes]:
        self.bytes_read += 1
        yield self.data[:1]
        await asyncio.sleep(3600)
        yield self.data[1:]


async def test_slow_body_is_400_within_the_read_deadline(
    make_app: Callable[..., App], activity: WaitingActivity
):
    app = make_app(COMPLETER_RPC_TIMEOUT_SECONDS="1")
    body = complete_body(activity).ljust(1000)
    started = time.monotonic()
    response = await app.post(TrickleBody(body), headers={"Content-Length": str(len(body))})
    assert time.monotonic() - started < 5
    assert error_of(response) == (400, "invalid_request")
    assert "did not arrive within 1 s" in response.get_json()["error"]["message"]
    assert_json_headers(response)
    assert await still_waiting(activity)
