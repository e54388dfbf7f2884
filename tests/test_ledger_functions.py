"""The completion ledger through the functions: real functions-framework processes sharing
one ledger (the Firestore emulator, DynamoDB on moto's server), completing activities on the
Temporal dev server. One test body per behaviour, parametrised over the two stores."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from completer.errors import Conflict
from tests.conftest import LEDGER_COLLECTION, LEDGER_TABLE
from tests.support.moto_server import FAKE_CREDENTIALS, REGION
from tests.support.pubsub import PubSubEmulator, pubsub_emulator
from tests.support.services import free_port, running, venv_tool, wait_for_port
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = pytest.mark.temporal

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["firestore", "dynamodb"]


def ledger_env(kind: str, service: str) -> dict[str, str]:
    """What a function needs to reach the shared ledger of ``kind`` at ``service``.

    The HTTP functions here take unsigned JSON, as behind IAM (COMPLETER_ALLOW_UNSIGNED).
    """
    return {"COMPLETER_ALLOW_UNSIGNED": "true", **_store_env(kind, service)}


def _store_env(kind: str, service: str) -> dict[str, str]:
    if kind == "firestore":
        return {
            "COMPLETER_LEDGER": f"firestore://(default)/{LEDGER_COLLECTION}",
            "FIRESTORE_EMULATOR_HOST": service,
            "GOOGLE_CLOUD_PROJECT": "completer-test",
        }
    return {
        "COMPLETER_LEDGER": f"dynamodb://{LEDGER_TABLE}",
        "AWS_ENDPOINT_URL_DYNAMODB": service,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }


def ledger_service(request: pytest.FixtureRequest, kind: str) -> str:
    fixture = "firestore_host" if kind == "firestore" else "dynamodb_endpoint"
    return str(request.getfixturevalue(fixture))


def dead_service(kind: str) -> str:
    """An address where nothing listens."""
    port = free_port()
    return f"127.0.0.1:{port}" if kind == "firestore" else f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def function(source: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """One functions-framework process of ``source``; yields its URL."""
    binary = venv_tool("functions-framework")
    assert binary is not None
    port = free_port()
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMPLETER_", "TEMPORAL_", "FIRESTORE_", "AWS_ENDPOINT"))
    }
    argv = [binary, "--source", source, "--target", "complete", "--host", "127.0.0.1"]
    argv += ["--port", str(port)]
    with running(argv, env={**base, **env}, log_path=log, cwd=ROOT) as process:
        wait_for_port(port, timeout=60, process=process)
        yield f"http://127.0.0.1:{port}/"
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-3000:]


def post(url: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(url, json=body, headers=headers, timeout=60)


async def apost(url: str, body: Any) -> requests.Response:
    return await asyncio.to_thread(post, url, body)


@dataclass
class Pair:
    """Two instances of one function sharing one ledger."""

    kind: str
    urls: tuple[str, str]


@pytest.fixture
def ledger_url(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> str:
    """The pair's ``COMPLETER_LEDGER``, as this process reaches it (as the functions do)."""
    for name, value in _store_env(pair.kind, "").items():
        if value and not name.startswith(("AWS_ENDPOINT", "FIRESTORE_")):
            monkeypatch.setenv(name, value)
    return _store_env(pair.kind, "")["COMPLETER_LEDGER"]


@pytest.fixture(scope="module", params=KINDS)
def pair(
    request: pytest.FixtureRequest,
    temporal_server: TemporalServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pair]:
    kind = request.param
    env = {
        "TEMPORAL_ADDRESS": temporal_server.address,
        "COMPLETER_RPC_TIMEOUT_SECONDS": "5",
        **ledger_env(kind, ledger_service(request, kind)),
    }
    logs = tmp_path_factory.mktemp(f"pair-{kind}")
    source = "functions/http/main.py"
    with function(source, env, logs / "a.log") as a, function(source, env, logs / "b.log") as b:
        yield Pair(kind=kind, urls=(a, b))


# --- HTTP ----------------------------------------------------------------------------------------


async def test_the_same_request_on_the_other_instance_is_replayed_and_another_conflicts(
    pair: Pair, waiting: WaitingActivity
):
    first, second = pair.urls
    body = {"task_token": waiting.token_b64, "result": {"approved": True}}
    done = await apost(first, body)
    assert (done.status_code, done.json()) == (200, {"status": "completed"})
    again = await apost(second, body)
    assert (again.status_code, again.json()) == (200, {"status": "completed", "replayed": True})
    # The same activity named by its other token form is the same request.
    same = await apost(first, {**body, "task_token": waiting.token_urlsafe})
    assert same.json() == {"status": "completed", "replayed": True}
    other = await apost(second, {"task_token": waiting.token_b64, "result": {"approved": False}})
    assert other.status_code == 409
    error = other.json()["error"]
    assert error["code"] == "conflict"
    assert "already completed" in error["message"]
    assert "through http" in error["message"]
    assert waiting.token_b64 not in other.text
    assert await asyncio.wait_for(waiting.handle.result(), 30) == {"approved": True}


async def test_sixteen_identical_requests_across_both_instances_complete_once(
    pair: Pair, waiting: WaitingActivity
):
    body = {"task_token": waiting.token_b64, "result": {"n": 16}}
    answers = await asyncio.gather(*(apost(pair.urls[i % 2], body) for i in range(16)))
    assert [a.status_code for a in answers] == [200] * 16, [a.text for a in answers]
    firsts = [a.json() for a in answers if not a.json().get("replayed")]
    assert firsts == [{"status": "completed"}]
    assert await asyncio.wait_for(waiting.handle.result(), 30) == {"n": 16}


async def test_heartbeats_are_not_recorded(pair: Pair, waiting: WaitingActivity):
    body = {"task_token": waiting.token_b64, "action": "heartbeat", "details": {"pct": 1}}
    for url in pair.urls:
        beat = await apost(url, body)
        assert beat.json() == {"status": "heartbeat_recorded", "cancel_requested": False}
    # Nothing was kept for the activity: its completion is the first one.
    done = await apost(pair.urls[1], {"task_token": waiting.token_b64, "result": 1})
    assert done.json() == {"status": "completed"}


async def test_correlation_keys_across_two_instances(pair: Pair, ledger_url: str, new_waiting: Any):
    """A key named on one instance, registered from the activity side, seen by the other."""
    from completer.activity import register_async
    from completer.settings import Settings

    settings = Settings(COMPLETER_LEDGER=ledger_url)
    first, second = pair.urls
    early, late = await new_waiting(), await new_waiting()
    # Complete, then register: the request is kept on one instance, a retry on the other
    # gets the same answer, and the registration carries it out.
    key = f"ORDER-{uuid.uuid4().hex[:8]}"
    body = {"correlation_key": key, "result": {"paid": True}}
    kept = await apost(first, body)
    assert (kept.status_code, kept.json()) == (202, {"status": "buffered"})
    retry = await apost(second, body)
    assert (retry.status_code, retry.json()) == (202, {"status": "buffered"})
    other = await apost(second, {"correlation_key": key, "result": {"paid": False}})
    assert (other.status_code, other.json()["error"]["code"]) == (409, "conflict")
    outcome = await register_async(key, task_token=early.token_b64, settings=settings)
    assert outcome is not None
    assert outcome.status == "completed"
    assert await asyncio.wait_for(early.handle.result(), 30) == {"paid": True}
    # The sender retries once more: the first answer, from the ledger.
    replay = await apost(first, body)
    assert (replay.status_code, replay.json()) == (200, {"status": "completed", "replayed": True})
    # Register, then complete: the other instance completes it; a second key for it is fine,
    # the same key for another activity is refused while it waits.
    key = f"ORDER-{uuid.uuid4().hex[:8]}"
    ids = {"workflow_id": late.workflow_id, "activity_id": late.activity_id}
    assert await register_async(key, **ids, settings=settings) is None
    with pytest.raises(Conflict):
        await register_async(key, task_token=early.token_b64, settings=settings)
    done = await apost(second, {"correlation_key": key, "result": "late"})
    assert (done.status_code, done.json()) == (200, {"status": "completed"})
    assert await asyncio.wait_for(late.handle.result(), 30) == "late"
    again = await apost(first, {"correlation_key": key, "result": "late"})
    assert again.json() == {"status": "completed", "replayed": True}


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unreachable_ledger_is_503_and_nothing_is_completed(
    kind: str, temporal_server: TemporalServer, waiting: WaitingActivity, tmp_path: Path
):
    env = {
        "TEMPORAL_ADDRESS": temporal_server.address,
        "COMPLETER_RPC_TIMEOUT_SECONDS": "2",
        **ledger_env(kind, dead_service(kind)),
    }
    with function("functions/http/main.py", env, tmp_path / "down.log") as url:
        started = time.monotonic()
        down = await apost(url, {"task_token": waiting.token_b64, "result": 1})
        assert time.monotonic() - started < 15
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "engine_unavailable"
    assert "ledger" in down.json()["error"]["message"]
    assert down.headers["Retry-After"].isdigit()
    assert await waiting.pending_activity() is not None  # nothing was carried out


@pytest.mark.parametrize("kind", KINDS)
async def test_records_expire_after_the_ledger_ttl(
    request: pytest.FixtureRequest,
    kind: str,
    temporal_server: TemporalServer,
    waiting: WaitingActivity,
    tmp_path: Path,
):
    env = {
        "TEMPORAL_ADDRESS": temporal_server.address,
        "COMPLETER_LEDGER_TTL_SECONDS": "2",
        **ledger_env(kind, ledger_service(request, kind)),
    }
    body = {"task_token": waiting.token_b64, "result": "once"}
    with function("functions/http/main.py", env, tmp_path / "ttl.log") as url:
        assert (await apost(url, body)).json() == {"status": "completed"}
        await asyncio.sleep(3)
        # The record is gone: the engine answers, and the activity is no longer waiting.
        gone = await apost(url, body)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "activity_not_found"


# --- Pub/Sub -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    with pubsub_emulator(tmp_path_factory.mktemp("pubsub")) as running_emulator:
        yield running_emulator


def push(data: Any, attributes: dict[str, str], *, message_id: str) -> dict[str, Any]:
    """A raw Pub/Sub push request body carrying one message."""
    return {
        "message": {
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
            "attributes": attributes,
            "messageId": message_id,
            "message_id": message_id,
        },
        "subscription": "projects/completer-test/subscriptions/completions-push",
    }


def log_entries(log: Path, message_id: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("message_id") == message_id:
                found.append(entry)
    return found


@pytest.mark.pubsub
async def test_the_same_pubsub_message_on_two_instances_completes_once(
    request: pytest.FixtureRequest,
    temporal_server: TemporalServer,
    emulator: PubSubEmulator,
    new_waiting: Any,
    tmp_path: Path,
):
    dead_letter_topic = emulator.topic("dead-letters")
    dead_letters = emulator.pull_subscription(dead_letter_topic)
    env = {
        "TEMPORAL_ADDRESS": temporal_server.address,
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "COMPLETER_DEAD_LETTER_TOPIC": dead_letter_topic,
        **ledger_env("firestore", ledger_service(request, "firestore")),
    }
    source = "functions/pubsub/main.py"
    waiting, republished = await new_waiting(), await new_waiting()
    message_id = str(uuid.uuid4().int)[:16]
    with (
        function(source, env, tmp_path / "a.log") as a,
        function(source, env, tmp_path / "b.log") as b,
    ):
        body = push({"n": 1}, {"task_token": waiting.token_b64}, message_id=message_id)
        answers = await asyncio.gather(*(asyncio.to_thread(post, url, body) for url in (a, b)))
        assert [answer.status_code for answer in answers] == [200, 200]
        assert await asyncio.wait_for(waiting.handle.result(), 30) == {"n": 1}
        # A redelivery later, to either instance: acknowledged, not handled again.
        assert (await asyncio.to_thread(post, b, body)).status_code == 200
        # The same completion republished (a new message ID): the ledger's first answer.
        completion = {"task_token": republished.token_b64}
        for n, url in enumerate((a, b)):
            again = push({"n": 2}, completion, message_id=f"{message_id}{n}")
            assert (await asyncio.to_thread(post, url, again)).status_code == 200
    entries = log_entries(tmp_path / "a.log", message_id) + log_entries(
        tmp_path / "b.log", message_id
    )
    assert sorted(e["outcome"] for e in entries) == ["acknowledged", "acknowledged", "completed"]
    assert sum(bool(e.get("duplicate")) for e in entries) == 2
    second = log_entries(tmp_path / "b.log", f"{message_id}1")
    assert [(e["outcome"], e.get("replayed")) for e in second] == [("completed", True)]
    assert all(e.get("disposition") != "dead_letter" for e in entries + second)
    assert await asyncio.to_thread(emulator.pull, dead_letters, wait=1) == []
