"""completer.dev.gcs_events: a finished upload in the emulator -> the CloudEvent Eventarc sends."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cloudevents.http import from_http

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
