"""The Pub/Sub function as a real functions-framework process, fed by the real Pub/Sub
emulator through push subscriptions, completing activities on the Temporal dev server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from google.pubsub_v1.types import ReceivedMessage
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError as TemporalActivityError
from temporalio.exceptions import ApplicationError, CancelledError

from completer.deadletter import ATTR_ERROR_CODE, ATTR_ERROR_MESSAGE, ATTR_SOURCE_MESSAGE_ID
from tests.support.proxy import TcpProxy
from tests.support.pubsub import PROJECT, PubSubEmulator, pubsub_emulator
from tests.support.services import free_port, running, venv_tool, wait_for_port
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = [pytest.mark.pubsub, pytest.mark.temporal]

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "functions" / "pubsub" / "main.py"
GOLDEN = Path(__file__).parent / "events" / "pubsub"

# Every token this module sends, checked against the function logs at the end.
SENT_TOKENS: set[str] = set()


@dataclass
class FunctionProcess:
    """A running Pub/Sub function and its log (JSON lines on stderr)."""

    url: str
    log_path: Path
    dead_letters: dict[str, ReceivedMessage] = field(default_factory=dict)

    def entries(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and "severity" in entry:
                    found.append(entry)
        return found

    def about(self, message_id: str) -> list[dict[str, Any]]:
        """The function's log entries about one message (one per delivery)."""
        return [e for e in self.entries() if e.get("message_id") == message_id]

    async def wait_for(
        self, message_id: str, *, count: int = 1, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until the function logged ``count`` deliveries of a message."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found := self.about(message_id)) < count:
            if asyncio.get_running_loop().time() > deadline:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{count} deliveries of {message_id} not seen; log:\n{tail}")
            await asyncio.sleep(0.1)
        return found


@contextlib.contextmanager
def function_process(
    log_path: Path, *, temporal_address: str, emulator_host: str, dead_letter_topic: str
) -> Iterator[FunctionProcess]:
    framework = venv_tool("functions-framework")
    assert framework is not None, "functions-framework is a dependency of the project"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "TEMPORAL_"))}
    env.update(
        TEMPORAL_ADDRESS=temporal_address,
        PUBSUB_EMULATOR_HOST=emulator_host,
        COMPLETER_DEAD_LETTER_TOPIC=dead_letter_topic,
        COMPLETER_RPC_TIMEOUT_SECONDS="3",
    )
    argv = [framework, "--source", str(MAIN), "--target", "complete"]
    argv += ["--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)]
    with running(argv, env=env, log_path=log_path, cwd=ROOT) as process:
        wait_for_port(port, timeout=60, process=process)
        yield FunctionProcess(url=f"http://127.0.0.1:{port}/", log_path=log_path)
    # The engine client must shut down cleanly, or the process can abort at exit.
    assert process.returncode == 0, log_path.read_text()[-2000:]
    assert "Fatal Python error" not in log_path.read_text()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    with pubsub_emulator(tmp_path_factory.mktemp("pubsub")) as running_emulator:
        yield running_emulator


@pytest.fixture(scope="module")
def dead_letter_topic(emulator: PubSubEmulator) -> str:
    return emulator.topic("dead-letters")


@pytest.fixture(scope="module")
def dead_letter_subscription(emulator: PubSubEmulator, dead_letter_topic: str) -> str:
    return emulator.pull_subscription(dead_letter_topic)


@pytest.fixture(scope="module")
def function(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_server: TemporalServer,
    emulator: PubSubEmulator,
    dead_letter_topic: str,
    dead_letter_subscription: str,
) -> Iterator[FunctionProcess]:
    log_path = tmp_path_factory.mktemp("pubsub-function") / "function.log"
    with function_process(
        log_path,
        temporal_address=temporal_server.address,
        emulator_host=emulator.host,
        dead_letter_topic=dead_letter_topic,
    ) as process:
        yield process


@pytest.fixture
def topic(emulator: PubSubEmulator, function: FunctionProcess) -> str:
    """A fresh topic pushed to the function."""
    name = emulator.topic()
    emulator.push_subscription(name, function.url)
    return name


def publish(emulator: PubSubEmulator, topic: str, data: Any = None, **attributes: str) -> str:
    for name in ("task_token", "taskToken"):
        if name in attributes:
            SENT_TOKENS.add(attributes[name])
    raw = data if isinstance(data, bytes) else b"" if data is None else json.dumps(data).encode()
    return emulator.publish(topic, raw, **attributes)


async def dead_letter(
    emulator: PubSubEmulator, subscription: str, cache: dict[str, ReceivedMessage], source: str
) -> ReceivedMessage:
    """The dead letter of one source message, pulled from the dead-letter topic."""
    for _ in range(10):
        if source in cache:
            return cache.pop(source)
        for received in await asyncio.to_thread(emulator.pull, subscription, wait=2):
            cache[received.message.attributes[ATTR_SOURCE_MESSAGE_ID]] = received
    raise AssertionError(f"no dead letter for message {source}")


async def no_more_deliveries(function: FunctionProcess, message_id: str, seconds: float) -> None:
    """Wait past the redelivery backoff and check the message was delivered exactly once."""
    await asyncio.sleep(seconds)
    assert len(function.about(message_id)) == 1, function.about(message_id)


def ids_of(waiting: WaitingActivity) -> dict[str, str]:
    return {
        "workflow_id": waiting.workflow_id,
        "activity_id": waiting.activity_id,
        "run_id": waiting.run_id,
    }


def naming(waiting: WaitingActivity, by: str) -> dict[str, str]:
    return {"task_token": waiting.token_b64} if by == "token" else ids_of(waiting)


async def wait_cancel_requested(waiting: WaitingActivity) -> None:
    await waiting.handle.cancel()
    for _ in range(200):
        pending = await waiting.pending_activity()
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the activity was never asked to cancel")


async def heartbeat_details(waiting: WaitingActivity) -> bytes | None:
    for _ in range(100):
        pending = await waiting.pending_activity()
        if pending.heartbeat_details.payloads:
            return bytes(pending.heartbeat_details.payloads[0].data)
        await asyncio.sleep(0.1)
    return None


# --- each action, named by token and by IDs -----------------------------------------------------


@pytest.mark.parametrize("by", ["token", "ids"])
async def test_complete(emulator, function, topic, waiting: WaitingActivity, by: str):
    result = {"approved": True, "by": "ana", "tags": ["ü"]}
    message_id = publish(emulator, topic, result, action="complete", **naming(waiting, by))
    assert await asyncio.wait_for(waiting.handle.result(), 30) == result
    [entry] = await function.wait_for(message_id)
    assert (entry["outcome"], entry["form"], entry["action"]) == (
        "completed",
        "attribute",
        "complete",
    )


@pytest.mark.parametrize("by", ["token", "ids"])
async def test_fail(emulator, function, topic, waiting: WaitingActivity, by: str):
    error: dict[str, Any] = {"message": "rejected", "type": "Rejected", "details": {"by": "bo"}}
    error["nonRetryable"] = True  # camelCase inside the error object
    message_id = publish(emulator, topic, error, action="fail", **naming(waiting, by))
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(waiting.handle.result(), 30)
    assert isinstance(info.value.cause, TemporalActivityError)
    cause = info.value.cause.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.message, cause.type, cause.non_retryable) == ("rejected", "Rejected", True)
    assert cause.details == ({"by": "bo"},)
    [entry] = await function.wait_for(message_id)
    assert entry["outcome"] == "failed"


@pytest.mark.parametrize("by", ["token", "ids"])
async def test_heartbeat(emulator, function, topic, waiting: WaitingActivity, by: str):
    message_id = publish(
        emulator, topic, {"progress": 40}, action="heartbeat", **naming(waiting, by)
    )
    [entry] = await function.wait_for(message_id)
    assert entry["outcome"] == "heartbeat_recorded"
    assert await heartbeat_details(waiting) == b'{"progress":40}'
    assert (await waiting.pending_activity()) is not None  # still waiting


@pytest.mark.parametrize("by", ["token", "ids"])
async def test_cancel_after_the_workflow_asked(
    emulator, function, topic, waiting: WaitingActivity, by: str
):
    await wait_cancel_requested(waiting)
    message_id = publish(emulator, topic, {"why": "asked"}, action="cancel", **naming(waiting, by))
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(waiting.handle.result(), 30)
    assert isinstance(info.value.cause, CancelledError)
    [entry] = await function.wait_for(message_id)
    assert entry["outcome"] == "cancelled"


async def test_empty_data_completes_with_null(emulator, function, topic, waiting: WaitingActivity):
    publish(emulator, topic, None, task_token=waiting.token_urlsafe)
    assert await asyncio.wait_for(waiting.handle.result(), 30) is None


async def test_envelope_form(emulator, function, topic, waiting: WaitingActivity):
    envelope = {"taskToken": waiting.token_b64, "result": {"invoice": 42}}
    SENT_TOKENS.add(waiting.token_b64)
    message_id = publish(emulator, topic, envelope, origin="billing")
    assert await asyncio.wait_for(waiting.handle.result(), 30) == {"invoice": 42}
    [entry] = await function.wait_for(message_id)
    assert (entry["form"], entry["outcome"]) == ("envelope", "completed")


@pytest.mark.parametrize("mode", ["structured", "binary"])
async def test_eventarc_cloudevents_over_http(function, waiting: WaitingActivity, mode: str):
    """Eventarc delivers CloudEvents in either content mode; both reach the activity."""
    SENT_TOKENS.add(waiting.token_b64)
    if mode == "structured":
        body = json.loads((GOLDEN / "cloudevent_structured.json").read_text())
        message = body["data"]["message"]
        headers = {"Content-Type": "application/cloudevents+json"}
    else:
        golden = json.loads((GOLDEN / "cloudevent_binary.json").read_text())
        body, headers = golden["body"], golden["headers"]
        message = body["message"]
    message["attributes"]["task_token"] = waiting.token_b64
    message["data"] = base64.b64encode(f'"{mode}"'.encode()).decode()
    # Each message its own ID: the ledger acknowledges a message ID it has seen on the topic.
    message_id = str(uuid.uuid4().int)[:16]
    message["messageId"] = message["message_id"] = message_id
    if mode == "structured":
        body["id"] = message_id
    else:
        headers = {**headers, "ce-id": message_id}
    response = await asyncio.to_thread(
        requests.post, function.url, data=json.dumps(body), headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    assert await asyncio.wait_for(waiting.handle.result(), 30) == mode


# --- poison messages ----------------------------------------------------------------------------

GARBAGE_TOKEN = base64.b64encode(b"not a task token at all").decode()


@pytest.mark.parametrize(
    ("case", "data", "attributes"),
    [
        ("bad JSON", b'{"approved": tru', {"action": "complete"}),
        ("unknown field", b'{"reslt": true}', {}),
        ("token not base64", b"true", {"task_token": "%%%not-base64%%%"}),
        ("engine refuses token", b"true", {"task_token": GARBAGE_TOKEN}),
    ],
)
async def test_poison_message_is_acknowledged_once_and_dead_lettered(
    emulator,
    function,
    topic,
    dead_letter_subscription,
    waiting: WaitingActivity,
    case: str,
    data: bytes,
    attributes: dict[str, str],
):
    attributes = {"origin": "scanner", **attributes}
    if case == "bad JSON":
        attributes["task_token"] = waiting.token_b64  # a real activity, which must stay waiting
    if case == "unknown field":
        data = json.dumps({"task_token": waiting.token_b64, "reslt": True}).encode()
        SENT_TOKENS.add(waiting.token_b64)
    message_id = publish(emulator, topic, data, **attributes)
    [entry] = await function.wait_for(message_id)
    assert (entry["severity"], entry["outcome"]) == ("WARNING", "invalid_request")
    letter = await dead_letter(
        emulator, dead_letter_subscription, function.dead_letters, message_id
    )
    assert letter.message.data == data
    assert dict(letter.message.attributes) == {
        **attributes,
        ATTR_ERROR_CODE: "invalid_request",
        ATTR_ERROR_MESSAGE: entry["reason"],
        ATTR_SOURCE_MESSAGE_ID: message_id,
    }
    assert entry["dead_letter_message_id"] == letter.message.message_id
    await no_more_deliveries(function, message_id, seconds=3)
    assert (await waiting.pending_activity()) is not None


# --- duplicates ---------------------------------------------------------------------------------


async def test_same_completion_published_twice_completes_once(
    emulator, function, topic, dead_letter_subscription, waiting: WaitingActivity
):
    first = publish(emulator, topic, {"n": 1}, task_token=waiting.token_b64)
    assert await asyncio.wait_for(waiting.handle.result(), 30) == {"n": 1}
    second = publish(emulator, topic, {"n": 1}, task_token=waiting.token_b64)
    [done] = await function.wait_for(first)
    [duplicate] = await function.wait_for(second)
    assert done["outcome"] == "completed"
    # The ledger answers the republished completion with its first outcome.
    assert (duplicate["outcome"], duplicate["replayed"]) == ("completed", True)
    assert "dead_letter_message_id" not in duplicate
    await no_more_deliveries(function, first, seconds=0)
    await no_more_deliveries(function, second, seconds=3)
    assert await waiting.handle.result() == {"n": 1}
    # Nothing reached the dead-letter topic for either message.
    for received in await asyncio.to_thread(emulator.pull, dead_letter_subscription, wait=1):
        source = received.message.attributes[ATTR_SOURCE_MESSAGE_ID]
        function.dead_letters[source] = received
    assert first not in function.dead_letters
    assert second not in function.dead_letters


async def test_same_completion_delivered_concurrently_completes_once(
    emulator, function, topic, waiting: WaitingActivity
):
    ids = [publish(emulator, topic, "same", task_token=waiting.token_b64) for _ in range(3)]
    assert await asyncio.wait_for(waiting.handle.result(), 30) == "same"
    entries = [(await function.wait_for(i))[0] for i in ids]
    # One engine call; the ledger answers the other two with its outcome (replayed).
    assert [e["outcome"] for e in entries] == ["completed"] * 3
    assert sorted(bool(e.get("replayed")) for e in entries) == [False, True, True]


async def test_a_different_completion_of_a_finished_activity_is_dead_lettered(
    emulator, function, topic, dead_letter_subscription, waiting: WaitingActivity
):
    publish(emulator, topic, "first", task_token=waiting.token_b64)
    assert await asyncio.wait_for(waiting.handle.result(), 30) == "first"
    late = publish(emulator, topic, "second", task_token=waiting.token_b64)
    [entry] = await function.wait_for(late)
    # The ledger knows the first completion: a different one is a conflict, dead-lettered.
    assert entry["outcome"] == "conflict"
    assert "already completed" in entry["reason"]
    letter = await dead_letter(emulator, dead_letter_subscription, function.dead_letters, late)
    assert letter.message.attributes[ATTR_ERROR_CODE] == "conflict"
    assert await waiting.handle.result() == "first"


# --- engine outage ------------------------------------------------------------------------------


async def test_engine_outage_redelivers_and_nothing_is_lost(
    tmp_path, temporal_server, emulator, dead_letter_topic, waiting: WaitingActivity
):
    # The function's engine address has nothing behind it until a proxy starts there.
    engine_port = free_port()
    with function_process(
        tmp_path / "outage.log",
        temporal_address=f"127.0.0.1:{engine_port}",
        emulator_host=emulator.host,
        dead_letter_topic=dead_letter_topic,
    ) as outage_function:
        topic = emulator.topic()
        emulator.push_subscription(topic, outage_function.url)
        message_id = publish(emulator, topic, {"paid": 99}, task_token=waiting.token_b64)
        entries = await outage_function.wait_for(message_id, count=2, timeout=60)
        assert {e["outcome"] for e in entries} == {"engine_unavailable"}
        assert (await waiting.pending_activity()) is not None
        assert "dead_letter_message_id" not in entries[0]

        proxy = TcpProxy(temporal_server.port)
        proxy.port = engine_port  # the engine comes back at the address the function knows
        with proxy:
            assert await asyncio.wait_for(waiting.handle.result(), 60) == {"paid": 99}
            found = await outage_function.wait_for(message_id, count=len(entries) + 1)
            assert found[-1]["outcome"] == "completed"
            assert all(e["outcome"] == "engine_unavailable" for e in found[:-1])
        log_text = outage_function.log_path.read_text()
    assert waiting.token_b64 not in log_text


async def test_failed_dead_letter_is_redelivered_not_lost(
    tmp_path, temporal_server, emulator, waiting: WaitingActivity
):
    # The dead-letter topic does not exist yet: dead-lettering fails, so the message must stay.
    missing_topic = f"projects/{PROJECT}/topics/dead-letters-later-{waiting.activity_id}"
    with function_process(
        tmp_path / "no-dlq.log",
        temporal_address=temporal_server.address,
        emulator_host=emulator.host,
        dead_letter_topic=missing_topic,
    ) as no_dlq_function:
        topic = emulator.topic()
        emulator.push_subscription(topic, no_dlq_function.url)
        message_id = publish(emulator, topic, b"{oops", task_token=waiting.token_b64)
        failed = await no_dlq_function.wait_for(message_id, count=2, timeout=60)
        assert {e["message"] for e in failed} == {"dead letter failed"}

        emulator.publisher.create_topic(name=missing_topic)
        subscription = emulator.pull_subscription(missing_topic)
        letters = await asyncio.to_thread(emulator.pull, subscription, wait=30)
        assert [m.message.attributes[ATTR_SOURCE_MESSAGE_ID] for m in letters] == [message_id]
        assert letters[0].message.data == b"{oops"
        for _ in range(100):
            outcomes = [e["message"] for e in no_dlq_function.about(message_id)]
            if "message rejected" in outcomes:
                break
            await asyncio.sleep(0.1)
        assert outcomes[-1] == "message rejected"
        assert set(outcomes[:-1]) == {"dead letter failed"}
    assert (await waiting.pending_activity()) is not None


# --- log hygiene (keep last: it checks what every test above sent) ------------------------------


async def test_no_raw_token_in_the_function_log(emulator, function, topic, new_waiting):
    waiting = await new_waiting()
    message_id = publish(emulator, topic, "done", task_token=waiting.token_b64)
    await function.wait_for(message_id)
    poison = publish(emulator, topic, b"{", task_token=waiting.token_urlsafe)
    await function.wait_for(poison)
    log_text = function.log_path.read_text()
    assert SENT_TOKENS
    leaked = [token for token in SENT_TOKENS if token in log_text]
    assert not leaked, f"{len(leaked)} raw tokens in the function log"
    assert "token:" in log_text  # fingerprints are logged instead
