"""The HTTP function through functions-framework's real app, against a real Temporal dev server.

Every app here is built by ``functions_framework.create_app`` from ``functions/http/main.py``
with its settings in the environment, exactly as the function starts in production: an ASGI
app (the function is async), driven in-process on the test's loop, where its engine client
lives as it lives on the serving worker's loop. Every test also checks that no token or
secret it used reached a log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowFailureError
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.exceptions import ActivityError as TemporalActivityError
from temporalio.exceptions import ApplicationError

from completer.handlers.worker import WorkerClient
from completer.tokens import MAX_TOKEN_BYTES
from tests.support.asgi import AsgiResponse, CountingBody, call
from tests.support.http_app import FunctionApps, scanned_logs, token_forms
from tests.support.proxy import TcpProxy
from tests.support.services import free_port
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = pytest.mark.temporal

JSON = "application/json"

# Every token and secret a test hands the function; the autouse guard scans the logs for them.
SENSITIVE: set[str] = set()


def new_secret() -> str:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    SENSITIVE.update({secret, secret.removeprefix("whsec_")})
    return secret


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """A Standard Webhooks v1 signature, computed here without the library."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, body: bytes, *, at: float | None = None) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time() if at is None else at)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@dataclass
class App:
    """A function app built by functions-framework, and the engine client it created."""

    asgi: Any
    engine: WorkerClient

    async def post(
        self, body: Any, *, content_type: str = JSON, headers: dict[str, str] | None = None
    ) -> AsgiResponse:
        sent = {"Content-Type": content_type} if content_type else {}
        return await call(self.asgi, "POST", body=encode(body), headers={**sent, **(headers or {})})

    async def open(
        self, method: str, *, data: bytes = b"", content_type: str = JSON
    ) -> AsgiResponse:
        return await call(self.asgi, method, body=data, headers={"Content-Type": content_type})


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Capture every log record and fail if a token or secret is in it."""
    SENSITIVE.clear()
    with scanned_logs(caplog, SENSITIVE) as lines:
        yield lines


@pytest.fixture
async def make_app(
    temporal_server: TemporalServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., App]]:
    """Build the function as functions-framework does, with these environment variables."""
    apps = FunctionApps(monkeypatch, temporal_server.address)

    def make(**env: str) -> App:
        app, engine = apps.build(**env)
        return App(app, engine)

    yield make
    await apps.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


@pytest.fixture
def unreachable_app(make_app: Callable[..., App]) -> App:
    """An app whose engine address refuses connections: any engine call would be a 503."""
    return make_app(TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")


@pytest.fixture
def activity(waiting: WaitingActivity) -> WaitingActivity:
    SENSITIVE.update(token_forms(waiting.task_token))
    return waiting


@pytest.fixture
def new_activity(new_waiting: Any) -> Callable[[], Any]:
    async def make() -> WaitingActivity:
        waiting: WaitingActivity = await new_waiting()
        SENSITIVE.update(token_forms(waiting.task_token))
        return waiting

    return make


def error_of(response: AsgiResponse) -> tuple[int, str]:
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return response.status_code, body["error"]["code"]


async def still_waiting(activity: WaitingActivity) -> bool:
    return await activity.pending_activity() is not None


# --- success --------------------------------------------------------------------------------


async def test_complete_by_token(app: App, activity: WaitingActivity):
    result = {"approved": True, "by": "ana", "note": "ü"}
    response = await app.post({"task_token": activity.token_b64, "result": result})
    assert response.status_code == 200
    assert response.mimetype == JSON
    assert response.get_json() == {"status": "completed"}
    assert await activity.handle.result() == result


async def test_complete_by_ids_with_charset(app: App, activity: WaitingActivity):
    body = {"workflowId": activity.workflow_id, "activityId": activity.activity_id, "result": 3}
    response = await app.post(body, content_type="application/json; charset=UTF-8")
    assert response.status_code == 200
    assert await activity.handle.result() == 3


async def test_fail_reaches_the_workflow(app: App, activity: WaitingActivity):
    error = {"message": "rejected", "type": "Rejected", "details": {"by": "bo"}}
    response = await app.post({"task_token": activity.token_urlsafe, "error": error})
    assert (response.status_code, response.get_json()) == (200, {"status": "failed"})
    with pytest.raises(WorkflowFailureError) as info:
        await activity.handle.result()
    assert isinstance(info.value.cause, TemporalActivityError)
    cause = info.value.cause.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.message, cause.type, cause.details) == ("rejected", "Rejected", ({"by": "bo"},))


async def test_heartbeat_answers_cancel_requested(app: App, activity: WaitingActivity):
    body = {"task_token": activity.token_b64, "action": "heartbeat", "details": {"pct": 40}}
    response = await app.post(body)
    assert response.status_code == 200
    assert response.get_json() == {"status": "heartbeat_recorded", "cancel_requested": False}
    pending = await activity.pending_activity()
    assert pending.heartbeat_details.payloads[0].data == b'{"pct":40}'


async def test_engine_connection_made_at_start_and_reused(
    make_app: Callable[..., App], temporal_server: TemporalServer, new_activity: Any
):
    with TcpProxy(temporal_server.port) as proxy:
        app = make_app(TEMPORAL_ADDRESS=proxy.address)
        await app.engine.client.ensure_connected()
        connected_at_start = proxy.connections
        assert connected_at_start >= 1
        for i in range(4):
            activity = await new_activity()
            assert (
                await app.post({"task_token": activity.token_b64, "result": i})
            ).status_code == 200
            assert await activity.handle.result() == i
        assert proxy.connections == connected_at_start


# --- 400: refused before the engine is called ------------------------------------------------

TOKEN_PLACEHOLDER = "<token>"

BAD_BODIES: dict[str, Any] = {
    "malformed JSON": b'{"task_token": "<token>", "result": ',
    "empty body": b"",
    "only whitespace": b"  \n ",
    "non-UTF-8 bytes": b'{"task_token": "<token>", "result": "\xff\xfe"}',
    "deeply nested JSON": b'{"task_token": "<token>", "result": ' + b"[" * 500 + b"]" * 500 + b"}",
    "not an object": b'["<token>"]',
    "missing token and IDs": {"result": 1},
    "token and IDs both": {"task_token": TOKEN_PLACEHOLDER, "workflow_id": "w", "activity_id": "a"},
    "workflow_id without activity_id": {"workflow_id": "w", "result": 1},
    "token not base64": {"task_token": "not base64 at all!", "result": 1},
    "empty token": {"task_token": "", "result": 1},
    "token over 8 KiB": {
        "task_token": base64.b64encode(b"x" * (MAX_TOKEN_BYTES + 1)).decode(),
        "result": 1,
    },
    "unknown field": {"task_token": TOKEN_PLACEHOLDER, "reslt": 1},
    "complete with an error": {
        "task_token": TOKEN_PLACEHOLDER,
        "action": "complete",
        "error": {"message": "x"},
    },
    "fail without an error": {"task_token": TOKEN_PLACEHOLDER, "action": "fail"},
    "unknown action": {"task_token": TOKEN_PLACEHOLDER, "action": "approve"},
}


def with_token(body: Any, token: str) -> bytes:
    return encode(body).replace(TOKEN_PLACEHOLDER.encode(), token.encode())


@pytest.mark.parametrize("case", BAD_BODIES)
async def test_bad_request_is_400_and_activity_keeps_waiting(
    app: App, activity: WaitingActivity, case: str
):
    response = await app.post(with_token(BAD_BODIES[case], activity.token_b64))
    assert error_of(response) == (400, "invalid_request")
    assert activity.token_b64 not in response.get_data(as_text=True)
    assert await still_waiting(activity)


async def test_bad_requests_never_reach_the_engine(unreachable_app: App):
    # Any engine call would answer 503 here: a 400 proves validation came first.
    token = base64.b64encode(b"a well-formed token").decode()
    for case, body in BAD_BODIES.items():
        response = await unreachable_app.post(with_token(body, token))
        assert error_of(response) == (400, "invalid_request"), case


# --- 405, 415, 413 -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_not_post_is_405(unreachable_app: App, method: str):
    response = await unreachable_app.open(method, data=b"{}", content_type=JSON)
    assert error_of(response) == (405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", "text/json", ""],
)
async def test_not_json_is_415(unreachable_app: App, content_type: str):
    response = await unreachable_app.post({"task_token": "AAAA"}, content_type=content_type)
    assert error_of(response) == (415, "unsupported_media_type")


async def test_body_over_limit_by_content_length_is_413_unread(make_app: Callable[..., App]):
    app = make_app(COMPLETER_MAX_BODY_BYTES="100", TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    body = CountingBody(b'{"result": "' + b"x" * 10_000 + b'"}')
    headers = {"Content-Type": JSON, "Content-Length": "10014"}
    response = await call(app.asgi, "POST", body=body, headers=headers)
    assert error_of(response) == (413, "payload_too_large")
    # Refused on the declared length: not one byte of the body was pulled from the server.
    assert body.bytes_read == 0


async def test_streamed_body_over_limit_is_413_after_limit_plus_one(make_app: Callable[..., App]):
    app = make_app(COMPLETER_MAX_BODY_BYTES="100", TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    # A chunked body (no Content-Length), arriving one byte at a time.
    body = CountingBody(b'{"result": "' + b"x" * 10_000 + b'"}')
    response = await call(app.asgi, "POST", body=body, headers={"Content-Type": JSON})
    assert error_of(response) == (413, "payload_too_large")
    assert body.bytes_read == 101


async def test_body_at_limit_is_read(make_app: Callable[..., App], activity: WaitingActivity):
    body = json.dumps({"task_token": activity.token_b64, "result": "ok"}).encode()
    app = make_app(COMPLETER_MAX_BODY_BYTES=str(len(body)))
    assert (await app.post(body)).status_code == 200
    assert await activity.handle.result() == "ok"
    assert error_of(await app.post(body + b" ")) == (413, "payload_too_large")


async def test_result_over_payload_limit_is_413_then_completing_works(
    make_app: Callable[..., App], activity: WaitingActivity
):
    app = make_app(COMPLETER_MAX_PAYLOAD_BYTES="2000")
    response = await app.post({"task_token": activity.token_b64, "result": "x" * 5000})
    assert error_of(response) == (413, "payload_too_large")
    assert await still_waiting(activity)
    response = await app.post({"task_token": activity.token_b64, "result": {"uri": "s3://b/k"}})
    assert response.status_code == 200
    assert await activity.handle.result() == {"uri": "s3://b/k"}


# --- 404, 409 -----------------------------------------------------------------------------------


async def test_unknown_activity_is_404(app: App):
    body = {"workflow_id": f"no-such-{uuid.uuid4()}", "activity_id": "1", "result": 1}
    assert error_of(await app.post(body)) == (404, "activity_not_found")


async def test_a_repeat_is_replayed_and_a_different_completion_is_409(
    app: App, activity: WaitingActivity
):
    first = {"task_token": activity.token_b64, "result": "first"}
    assert (await app.post(first)).status_code == 200
    # The ledger (in-process without COMPLETER_LEDGER) answers the first outcome again.
    again = await app.post(first)
    assert (again.status_code, again.get_json()) == (
        200,
        {"status": "completed", "replayed": True},
    )
    late = await app.post({"task_token": activity.token_b64, "result": "second"})
    assert error_of(late) == (409, "conflict")
    assert await activity.handle.result() == "first"


async def test_cancel_before_requested_is_409_then_works(app: App, activity: WaitingActivity):
    cancel = {"task_token": activity.token_b64, "action": "cancel"}
    assert error_of(await app.post(cancel)) == (409, "conflict")
    await activity.handle.cancel()
    for _ in range(100):
        beat = await app.post({"task_token": activity.token_b64, "action": "heartbeat"})
        if beat.get_json()["cancel_requested"]:
            break
        await asyncio.sleep(0.05)
    assert beat.get_json() == {"status": "heartbeat_recorded", "cancel_requested": True}
    assert (await app.post(cancel)).get_json() == {"status": "cancelled"}


async def test_concurrent_duplicates_complete_once(app: App, activity: WaitingActivity):
    # Eight requests at once on the worker's one loop, over its one engine connection.
    answers = await asyncio.gather(
        *(app.post({"task_token": activity.token_b64, "result": i}) for i in range(8))
    )
    statuses = [answer.status_code for answer in answers]
    winners = [i for i, status in enumerate(statuses) if status == 200]
    assert len(winners) == 1
    # One engine call; the ledger answers the seven different results as conflicts.
    assert sorted(statuses) == [200] + [409] * 7
    assert await activity.handle.result() == winners[0]


# --- 5xx ----------------------------------------------------------------------------------------


async def test_engine_down_is_503_with_retry_after(unreachable_app: App):
    token = base64.b64encode(b"a well-formed token").decode()
    response = await unreachable_app.post({"task_token": token, "result": 1})
    assert error_of(response) == (503, "engine_unavailable")
    assert int(response.headers["Retry-After"]) > 0


async def test_engine_slower_than_deadline_is_504(
    make_app: Callable[..., App], temporal_server: TemporalServer, activity: WaitingActivity
):
    with TcpProxy(temporal_server.port) as proxy:
        app = make_app(TEMPORAL_ADDRESS=proxy.address, COMPLETER_RPC_TIMEOUT_SECONDS="1")
        await app.engine.client.ensure_connected()
        proxy.stalled = True
        started = time.monotonic()
        response = await app.post({"task_token": activity.token_b64, "result": 1})
        elapsed = time.monotonic() - started
        proxy.stalled = False
    assert error_of(response) == (504, "engine_timeout")
    assert elapsed < 1 + 3


class BrokenCodec(PayloadCodec):
    """A payload codec whose key service is down: encoding raises."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        raise RuntimeError("key service unreachable")

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


BROKEN_CONVERTER = replace(DataConverter.default, payload_codec=BrokenCodec())


async def test_unexpected_failure_is_500_internal(
    make_app: Callable[..., App], activity: WaitingActivity
):
    app = make_app(COMPLETER_DATA_CONVERTER=f"{__name__}:BROKEN_CONVERTER")
    response = await app.post({"task_token": activity.token_b64, "result": 1})
    assert error_of(response) == (500, "internal")
    assert await still_waiting(activity)


# --- signatures ---------------------------------------------------------------------------------


@pytest.fixture
def secrets() -> tuple[str, str]:
    return new_secret(), new_secret()


@pytest.fixture
def signed_app(make_app: Callable[..., App], secrets: tuple[str, str]) -> App:
    return make_app(COMPLETER_SIGNING_SECRETS=" ".join(secrets))


async def test_signed_with_rotated_second_secret_is_200(
    signed_app: App, secrets: tuple[str, str], activity: WaitingActivity
):
    body = encode({"task_token": activity.token_b64, "result": "signed"})
    response = await signed_app.post(body, headers=signed_headers(secrets[1], body))
    assert response.status_code == 200
    assert await activity.handle.result() == "signed"


async def test_several_signatures_one_matching_is_200(
    signed_app: App, secrets: tuple[str, str], activity: WaitingActivity
):
    body = encode({"task_token": activity.token_b64, "result": 1})
    headers = signed_headers(secrets[0], body)
    stale = sign(new_secret(), headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    headers["webhook-signature"] = f"{stale} {headers['webhook-signature']}"
    assert (await signed_app.post(body, headers=headers)).status_code == 200


async def test_timestamp_within_tolerance_both_ways_is_200(
    signed_app: App, secrets: tuple[str, str], new_activity: Any
):
    for offset in (-290, 290):
        activity = await new_activity()
        body = encode({"task_token": activity.token_b64, "result": offset})
        headers = signed_headers(secrets[0], body, at=time.time() + offset)
        assert (await signed_app.post(body, headers=headers)).status_code == 200
        assert await activity.handle.result() == offset


async def test_configured_tolerance_beyond_five_minutes(
    make_app: Callable[..., App], activity: WaitingActivity
):
    secret = new_secret()
    app = make_app(COMPLETER_SIGNING_SECRETS=secret, COMPLETER_SIGNATURE_TOLERANCE_SECONDS="900")
    body = encode({"task_token": activity.token_b64, "result": "late"})
    headers = signed_headers(secret, body, at=time.time() - 600)
    assert (await app.post(body, headers=headers)).status_code == 200
    assert await activity.handle.result() == "late"


def unsigned(secret: str, body: bytes) -> dict[str, str]:
    return {}


def wrong_secret(secret: str, body: bytes) -> dict[str, str]:
    return signed_headers(new_secret(), body)


def tampered_body(secret: str, body: bytes) -> dict[str, str]:
    return signed_headers(secret, body.replace(b'"result": 1', b'"result": 2'))


def old_by_301_s(secret: str, body: bytes) -> dict[str, str]:
    return signed_headers(secret, body, at=time.time() - 301)


def ahead_by_301_s(secret: str, body: bytes) -> dict[str, str]:
    return signed_headers(secret, body, at=time.time() + 301)


def missing_id(secret: str, body: bytes) -> dict[str, str]:
    headers = signed_headers(secret, body)
    del headers["webhook-id"]
    return headers


def fractional_timestamp(secret: str, body: bytes) -> dict[str, str]:
    headers = signed_headers(secret, body)
    headers["webhook-timestamp"] += ".5"
    return headers


def malformed_signature(secret: str, body: bytes) -> dict[str, str]:
    headers = signed_headers(secret, body)
    headers["webhook-signature"] = "v1,%%%not-base64 garbage v1"
    return headers


def unknown_version(secret: str, body: bytes) -> dict[str, str]:
    headers = signed_headers(secret, body)
    headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    return headers


@pytest.mark.parametrize(
    "forge",
    [
        unsigned,
        wrong_secret,
        tampered_body,
        old_by_301_s,
        ahead_by_301_s,
        missing_id,
        fractional_timestamp,
        malformed_signature,
        unknown_version,
    ],
)
async def test_bad_signature_is_401_and_activity_keeps_waiting(
    signed_app: App,
    secrets: tuple[str, str],
    activity: WaitingActivity,
    forge: Callable[[str, bytes], dict[str, str]],
):
    body = encode({"task_token": activity.token_b64, "result": 1})
    response = await signed_app.post(body, headers=forge(secrets[0], body))
    assert error_of(response) == (401, "unauthorized")
    assert await still_waiting(activity)


async def test_signature_checked_before_parsing(signed_app: App, secrets: tuple[str, str]):
    for body in (b"{not json", b"\xff\xfe", b""):
        forged = signed_headers(new_secret(), body)
        assert error_of(await signed_app.post(body, headers=forged)) == (401, "unauthorized")
    # Correctly signed but malformed: now it is parsed, and refused as such.
    body = b"{not json"
    response = await signed_app.post(body, headers=signed_headers(secrets[1], body))
    assert error_of(response) == (400, "invalid_request")


# --- start-up, tracing, logs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COMPLETER_RPC_TIMEOUT_SECONDS", "soon"),
        ("COMPLETER_MAX_BODY_BYTES", "0"),
        ("COMPLETER_SIGNING_SECRETS", "whsec_a"),
        ("COMPLETER_SIGNING_SECRETS", "not-a-webhook-secret"),
        ("COMPLETER_BACKEND", "kafka"),
    ],
)
def test_wrong_configuration_fails_at_start_with_one_sentence(
    make_app: Callable[..., App], variable: str, value: str
):
    if "SECRET" in variable:
        SENSITIVE.add(value)
    with pytest.raises(SystemExit) as info:
        make_app(**{variable: value})
    message = str(info.value.code)
    assert message.startswith("activity-completer: ")
    assert variable in message
    assert "\n" not in message
    if "SECRET" in variable:
        assert value not in message


async def test_log_line_carries_trace_id_outcome_and_fingerprint(
    app: App, activity: WaitingActivity, no_secrets_in_logs: io.StringIO
):
    trace = "105445aa7843bc8bf206b12000100000"
    body = {"task_token": activity.token_b64, "result": 1}
    await app.post(body, headers={"X-Cloud-Trace-Context": f"{trace}/1;o=1"})
    parent = "4bf92f3577b34da6a3ce929d0e0e4736"
    await app.post(body, headers={"traceparent": f"00-{parent}-00f067aa0ba902b7-01"})
    await app.post(body)
    lines = [json.loads(line) for line in no_secrets_in_logs.getvalue().splitlines()]
    answered = [line for line in lines if line["message"] == "completion request answered"]
    assert [line["request_id"] for line in answered[:2]] == [trace, parent]
    assert len(answered[2]["request_id"]) == 32
    first = answered[0]
    assert first["severity"] == "INFO"
    assert first["outcome"] == "completed"
    assert first["status"] == 200
    assert first["activity"].startswith("token:")
    assert len(first["activity"]) == len("token:") + 12
    assert first["engine_ms"] >= 0
    assert [(line["outcome"], line.get("replayed")) for line in answered[1:]] == [
        ("completed", True)
    ] * 2


async def test_no_token_or_secret_in_logs_on_any_path(
    make_app: Callable[..., App],
    new_activity: Any,
    no_secrets_in_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
):
    secret = new_secret()
    app = make_app(COMPLETER_SIGNING_SECRETS=secret, COMPLETER_MAX_PAYLOAD_BYTES="2000")
    activity = await new_activity()
    token = activity.token_b64

    async def send(target: App, body: Any, *, sign_with: str | None = secret) -> int:
        raw = with_token(body, token)
        headers = signed_headers(sign_with, raw) if sign_with else {}
        return (await target.post(raw, headers=headers)).status_code

    statuses = [
        await send(app, {"task_token": TOKEN_PLACEHOLDER, "result": 1}, sign_with=None),
        await send(app, {"task_token": TOKEN_PLACEHOLDER, "result": 1}, sign_with=new_secret()),
        await send(app, b'{"task_token": "<token>", "result": '),
        await send(app, {"task_token": TOKEN_PLACEHOLDER, "reslt": 1}),
        await send(app, {"task_token": TOKEN_PLACEHOLDER + "!", "result": 1}),
        await send(app, {"task_token": TOKEN_PLACEHOLDER, "result": "x" * 5000}),
        await send(app, {"task_token": TOKEN_PLACEHOLDER, "action": "cancel"}),
        await send(app, {"task_token": TOKEN_PLACEHOLDER, "action": "heartbeat"}),
        await send(app, {"task_token": TOKEN_PLACEHOLDER, "result": 1}),
        await send(app, {"task_token": TOKEN_PLACEHOLDER, "result": 1}),
        await send(app, {"task_token": TOKEN_PLACEHOLDER, "result": 2}),
    ]
    # One engine client per process: the unreachable-engine "process" comes after.
    down = make_app(TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    statuses.append(
        await send(down, {"task_token": TOKEN_PLACEHOLDER, "result": 1}, sign_with=None)
    )
    assert statuses == [401, 401, 400, 400, 400, 413, 409, 200, 200, 200, 409, 503]
    logged = no_secrets_in_logs.getvalue()
    assert logged.count("completion request answered") == len(statuses)
    # The guard fixture scans all of it; make sure it has every form to look for.
    assert {token, secret} <= SENSITIVE
    assert token not in logged
    assert secret.removeprefix("whsec_") not in logged
