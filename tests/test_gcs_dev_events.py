"""completer.dev.gcs_events: a finished upload in the emulator -> the CloudEvent Eventarc sends."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest
from cloudevents.http import from_http

from completer.dev import gcs_events
from completer.dev.gcs_events import binary_request, finalized_event, new_finalized_events
from completer.events.gcs import FINALIZED_EVENT_TYPE, GcsObject, finalized_object
from tests.support.gcs import GcsEmulator, gcs_emulator


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


def test_new_generations_become_finalized_events_once(gcs: GcsEmulator):
    bucket = gcs.bucket()
    blob = bucket.blob("inbox/a b.json")
    blob.metadata = {"task-token": "dG9rZW4", "action": "complete"}
    blob.upload_from_string(b'{"ok": true}', content_type="application/json")
    seen: set[tuple[str, str]] = set()
    [event] = new_finalized_events(gcs.client, bucket.name, seen)
    assert new_finalized_events(gcs.client, bucket.name, seen) == []
    assert (event["type"], event["subject"], event["bucket"]) == (
        FINALIZED_EVENT_TYPE,
        "objects/inbox/a b.json",
        bucket.name,
    )
    assert event["source"] == f"//storage.googleapis.com/projects/_/buckets/{bucket.name}"
    assert event == finalized_event(blob._properties)  # stable id: a retry is the same event
    expected = GcsObject(
        bucket=bucket.name,
        name="inbox/a b.json",
        generation=str(blob.generation),
        size=12,
        etag=blob.etag,
        content_type="application/json",
        metadata={"task-token": "dG9rZW4", "action": "complete"},
        md5_hash=blob.md5_hash,
    )
    # Both content modes, as functions-framework parses them, give the same object.
    structured = from_http(
        {"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode()
    )
    assert finalized_object(structured) == expected
    headers, body = binary_request(event)
    assert headers["ce-type"] == FINALIZED_EVENT_TYPE
    assert finalized_object(from_http(headers, body)) == expected
    # A new upload to the same name is a new generation, so a new event.
    blob.upload_from_string(b'{"ok": false}', content_type="application/json")
    [again] = new_finalized_events(gcs.client, bucket.name, seen)
    assert again["id"] != event["id"]


def test_the_poller_retries_a_failed_delivery_like_eventarc(
    gcs: GcsEmulator, monkeypatch: pytest.MonkeyPatch
):
    """A function answering 503 gets the same event again after the backoff; 2xx ends it."""
    answers = iter([503, 200])
    received: list[dict[str, str]] = []

    class Function(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"id": self.headers["ce-id"], "type": self.headers["ce-type"]})
            self.send_response(next(answers))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Function)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(gcs_events, "RETRY_BACKOFF_SECONDS", (0.2,))
    bucket = gcs.bucket()
    bucket.blob("in/a.json").upload_from_string(b"{}", content_type="application/json")
    stop, said = threading.Event(), []

    def say(text: str) -> None:
        said.append(text)
        if "delivered" in text:
            stop.set()

    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        poller = threading.Thread(
            target=gcs_events.poll,
            args=(gcs.client, bucket.name, url),
            kwargs={"stop": stop, "interval": 0.05, "say": say},
        )
        poller.start()
        poller.join(timeout=30)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    assert len(received) == 2
    assert received[0] == received[1]  # the same event (same id), as Eventarc retries
    assert received[0]["type"] == FINALIZED_EVENT_TYPE
    assert "will retry" in said[0]
    assert said[-1].endswith("delivered")
