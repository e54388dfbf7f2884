"""The Cloud Storage function as a real functions-framework process: CloudEvents (binary and
structured) for objects in gcp-storage-emulator, completing activities on the Temporal dev
server, permanent failures dead-lettered on the real Pub/Sub emulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.cloud.storage import Bucket
from google.pubsub_v1.types import ReceivedMessage
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError as TemporalActivityError
from temporalio.exceptions import ApplicationError, CancelledError

from completer.deadletter import ATTR_ERROR_CODE, ATTR_ERROR_MESSAGE, ATTR_SOURCE_MESSAGE_ID
from completer.dev.gcs_events import deliver, finalized_event
from tests.support.gcs import GcsEmulator, gcs_emulator
from tests.support.proxy import TcpProxy
from tests.support.pubsub import PubSubEmulator, pubsub_emulator
from tests.support.services import free_port, running, venv_tool, wait_for_port
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = [pytest.mark.pubsub, pytest.mark.temporal]

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "functions" / "gcs" / "main.py"
INLINE = 64  # COMPLETER_GCS_INLINE_MAX_BYTES of the function under test


@dataclass
class FunctionProcess:
    """A running Cloud Storage function and its log (JSON lines)."""

    url: str
    log_path: Path
    dead_letters: dict[str, ReceivedMessage] = field(default_factory=dict)

    def entries(self, event_id: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("event_id") == event_id:
                    found.append(entry)
        return found

    def last(self, event_id: str) -> dict[str, Any]:
        entries = self.entries(event_id)
        assert entries, self.log_path.read_text()[-3000:]
        return entries[-1]


@contextlib.contextmanager
def function_process(
    log_path: Path, *, temporal_address: str, gcs: GcsEmulator, pubsub_host: str, topic: str
) -> Iterator[FunctionProcess]:
    framework = venv_tool("functions-framework")
    assert framework is not None, "functions-framework is a dependency of the project"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "TEMPORAL_"))}
    env.update(
        gcs.env(),
        TEMPORAL_ADDRESS=temporal_address,
        PUBSUB_EMULATOR_HOST=pubsub_host,
        COMPLETER_DEAD_LETTER_TOPIC=topic,
        COMPLETER_RPC_TIMEOUT_SECONDS="3",
        COMPLETER_GCS_INLINE_MAX_BYTES=str(INLINE),
    )
    argv = [framework, "--source", str(MAIN), "--target", "complete"]
    argv += ["--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)]
    with running(argv, env=env, log_path=log_path, cwd=ROOT) as process:
        wait_for_port(port, timeout=60, process=process)
        yield FunctionProcess(url=f"http://127.0.0.1:{port}/", log_path=log_path)
    assert process.returncode == 0, log_path.read_text()[-2000:]
    assert "Fatal Python error" not in log_path.read_text()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    with pubsub_emulator(tmp_path_factory.mktemp("pubsub")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def dead_letter_topic(pubsub: PubSubEmulator) -> str:
    return pubsub.topic("gcs-dead-letters")


@pytest.fixture(scope="module")
def dead_letter_subscription(pubsub: PubSubEmulator, dead_letter_topic: str) -> str:
    return pubsub.pull_subscription(dead_letter_topic)


@pytest.fixture(scope="module")
def bucket(gcs: GcsEmulator) -> Bucket:
    return gcs.bucket()


@pytest.fixture(scope="module")
def function(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_server: TemporalServer,
    gcs: GcsEmulator,
    pubsub: PubSubEmulator,
    dead_letter_topic: str,
    dead_letter_subscription: str,
) -> Iterator[FunctionProcess]:
    with function_process(
        tmp_path_factory.mktemp("gcs-function") / "function.log",
        temporal_address=temporal_server.address,
        gcs=gcs,
        pubsub_host=pubsub.host,
        topic=dead_letter_topic,
    ) as process:
        yield process


def upload(
    bucket: Bucket,
    name: str,
    content: bytes,
    metadata: dict[str, str],
    *,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """Upload an object to the emulator; returns the event Eventarc would send for it."""
    blob = bucket.blob(name)
    blob.metadata = metadata
    blob.upload_from_string(content, content_type=content_type)
    return finalized_event(blob._properties)


async def send(function: FunctionProcess, event: dict[str, Any], mode: str = "binary") -> int:
    return await asyncio.to_thread(deliver, function.url, event, mode=mode)  # type: ignore[arg-type]


def naming(waiting: WaitingActivity, by: str) -> dict[str, str]:
    if by == "token":
        return {"task-token": waiting.token_b64}
    return {
        "workflow-id": waiting.workflow_id,
        "activity-id": waiting.activity_id,
        "run-id": waiting.run_id,
    }


async def dead_letter(
    pubsub: PubSubEmulator, subscription: str, cache: dict[str, ReceivedMessage], event_id: str
) -> ReceivedMessage:
    for _ in range(10):
        if event_id in cache:
            return cache.pop(event_id)
        for received in await asyncio.to_thread(pubsub.pull, subscription, wait=2):
            cache[received.message.attributes[ATTR_SOURCE_MESSAGE_ID]] = received
    raise AssertionError(f"no dead letter for event {event_id}")


# --- each action, by token and by IDs, in both content modes -----------------------------------


@pytest.mark.parametrize(("by", "mode"), [("token", "binary"), ("ids", "structured")])
async def test_complete(function, bucket, waiting: WaitingActivity, by: str, mode: str):
    event = upload(
        bucket, f"{by}/done.json", b'{"approved": true, "by": "\xc3\xbc"}', naming(waiting, by)
    )
    assert await send(function, event, mode) == 200
    assert await asyncio.wait_for(waiting.handle.result(), 30) == {"approved": True, "by": "ü"}
    entry = function.last(event["id"])
    assert (entry["outcome"], entry["action"]) == ("completed", "complete")
    assert entry["source"] == f"gs://{bucket.name}/{by}/done.json#{event['data']['generation']}"


@pytest.mark.parametrize("by", ["token", "ids"])
async def test_fail(function, bucket, waiting: WaitingActivity, by: str):
    error = {"message": "rejected", "type": "Rejected", "non_retryable": True}
    meta = {**naming(waiting, by), "action": "fail"}
    event = upload(bucket, f"{by}/error.json", json.dumps(error).encode(), meta)
    assert await send(function, event, "structured") == 200
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(waiting.handle.result(), 30)
    assert isinstance(info.value.cause, TemporalActivityError)
    cause = info.value.cause.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.message, cause.type, cause.non_retryable) == ("rejected", "Rejected", True)


@pytest.mark.parametrize("by", ["token", "ids"])
async def test_heartbeat(function, bucket, waiting: WaitingActivity, by: str):
    meta = {**naming(waiting, by), "action": "heartbeat"}
    event = upload(bucket, f"{by}/beat.json", b'{"progress": 40}', meta)
    assert await send(function, event) == 200
    assert function.last(event["id"])["outcome"] == "heartbeat_recorded"
    pending = await waiting.pending_activity()
    assert bytes(pending.heartbeat_details.payloads[0].data) == b'{"progress":40}'


@pytest.mark.parametrize("by", ["token", "ids"])
async def test_cancel_after_the_workflow_asked(function, bucket, waiting: WaitingActivity, by: str):
    await waiting.handle.cancel()
    for _ in range(200):
        pending = await waiting.pending_activity()
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED:
            break
        await asyncio.sleep(0.05)
    meta = {**naming(waiting, by), "action": "cancel"}
    event = upload(bucket, f"{by}/cancel.json", b"", meta)
    assert await send(function, event) == 200
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(waiting.handle.result(), 30)
    assert isinstance(info.value.cause, CancelledError)


# --- content rules at the inline limit ---------------------------------------------------------


async def test_json_at_the_limit_is_inline(function, bucket, waiting: WaitingActivity):
    content = json.dumps("x" * (INLINE - 2)).encode()
    assert len(content) == INLINE
    event = upload(bucket, "limit/at.json", content, naming(waiting, "token"))
    assert await send(function, event) == 200
    assert await asyncio.wait_for(waiting.handle.result(), 30) == "x" * (INLINE - 2)


async def test_json_one_byte_over_the_limit_is_a_reference(
    function, bucket, waiting: WaitingActivity
):
    content = json.dumps("x" * (INLINE - 1)).encode()
    event = upload(bucket, "limit/over.json", content, naming(waiting, "token"))
    assert await send(function, event) == 200
    assert await asyncio.wait_for(waiting.handle.result(), 30) == {
        "uri": f"gs://{bucket.name}/limit/over.json",
        "bucket": bucket.name,
        "key": "limit/over.json",
        "generation": event["data"]["generation"],
        "size": INLINE + 1,
        "etag": event["data"]["etag"],
        "content_type": "application/json",
    }


async def test_json_one_byte_under_the_limit_is_inline(function, bucket, waiting: WaitingActivity):
    content = json.dumps("x" * (INLINE - 3)).encode()
    event = upload(bucket, "limit/under.json", content, naming(waiting, "ids"))
    assert await send(function, event) == 200
    assert await asyncio.wait_for(waiting.handle.result(), 30) == "x" * (INLINE - 3)


async def test_not_json_is_a_reference(function, bucket, waiting: WaitingActivity):
    event = upload(
        bucket, "inbox/scan.pdf", b"%PDF", naming(waiting, "token"), content_type="application/pdf"
    )
    assert await send(function, event) == 200
    result = await asyncio.wait_for(waiting.handle.result(), 30)
    assert (result["uri"], result["size"]) == (f"gs://{bucket.name}/inbox/scan.pdf", 4)


# --- permanent problems: acknowledged (2xx) and dead-lettered ----------------------------------


@pytest.mark.parametrize(
    "case", ["generation gone", "missing metadata", "bad JSON", "unknown activity"]
)
async def test_permanent_problem_is_acknowledged_and_dead_lettered(
    function, bucket, pubsub, dead_letter_subscription, waiting: WaitingActivity, case: str
):
    meta = naming(waiting, "token")
    content = b'{"ok": true}'
    if case == "missing metadata":
        meta = {"origin": "scanner"}
    elif case == "bad JSON":
        content = b'{"approved": tru'
    elif case == "unknown activity":
        meta = {"workflow-id": "no-such-workflow", "activity-id": "nothing"}
    name = f"poison/{case.replace(' ', '-')}.json"
    event = upload(bucket, name, content, meta)
    if case == "generation gone":
        bucket.blob(name).delete()
    assert await send(function, event) == 200
    entry = function.last(event["id"])
    code = "activity_not_found" if case == "unknown activity" else "invalid_request"
    assert (entry["severity"], entry["outcome"]) == ("WARNING", code)
    letter = await dead_letter(pubsub, dead_letter_subscription, function.dead_letters, event["id"])
    assert json.loads(letter.message.data) == event["data"]
    assert dict(letter.message.attributes) == {
        "source": f"gs://{bucket.name}/{name}#{event['data']['generation']}",
        ATTR_ERROR_CODE: code,
        ATTR_ERROR_MESSAGE: entry["reason"],
        ATTR_SOURCE_MESSAGE_ID: event["id"],
    }
    assert (await waiting.pending_activity()) is not None  # the real activity still waits


async def test_other_event_types_are_acknowledged_and_ignored(function, bucket):
    event = {**finalized_event({"bucket": bucket.name, "name": "x", "generation": "1"})}
    event["type"] = "google.cloud.storage.object.v1.deleted"
    assert await send(function, event) == 200
    assert function.last(event["id"])["outcome"] == "ignored"


async def test_a_duplicate_event_completes_once(function, bucket, waiting: WaitingActivity):
    event = upload(bucket, "dup/once.json", b'"once"', naming(waiting, "token"))
    assert await send(function, event) == 200
    assert await send(function, event) == 200
    assert await asyncio.wait_for(waiting.handle.result(), 30) == "once"
    first, second = function.entries(event["id"])
    # The redelivered event gets the ledger's first outcome, not activity_not_found.
    assert (first["outcome"], second["outcome"], second["replayed"]) == ("completed",) * 2 + (True,)
    assert "dead_letter_message_id" not in second


# --- engine outage ----------------------------------------------------------------------------


async def test_engine_down_raises_then_completes_after_recovery(
    tmp_path, temporal_server, gcs, bucket, pubsub, dead_letter_topic, waiting: WaitingActivity
):
    engine_port = free_port()
    with function_process(
        tmp_path / "outage.log",
        temporal_address=f"127.0.0.1:{engine_port}",
        gcs=gcs,
        pubsub_host=pubsub.host,
        topic=dead_letter_topic,
    ) as outage:
        event = upload(bucket, "outage/paid.json", b'{"paid": 99}', naming(waiting, "token"))
        status = await send(outage, event)
        assert status >= 500  # Eventarc retries
        assert outage.last(event["id"])["outcome"] == "engine_unavailable"
        assert "dead_letter_message_id" not in outage.last(event["id"])
        proxy = TcpProxy(temporal_server.port)
        proxy.port = engine_port  # the engine comes back where the function looks for it
        with proxy:
            # Eventarc retries the same event; the breaker answers 503 at once until its probe
            # (every 0.5 s) has seen the engine back.
            deadline = asyncio.get_running_loop().time() + 5
            while (status := await send(outage, event)) != 200:
                assert status >= 500  # raised: the breaker still says engine_unavailable
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.2)
            assert await asyncio.wait_for(waiting.handle.result(), 30) == {"paid": 99}
        log_text = outage.log_path.read_text()
    assert waiting.token_b64 not in log_text
    # One log line per delivery, and no framework stack trace for a retried event.
    assert "Traceback" not in log_text
    assert all(entry["disposition"] == "retry" for entry in outage.entries(event["id"])[:-1])
