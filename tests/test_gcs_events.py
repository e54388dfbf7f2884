"""Cloud Storage finalized events -> completion requests: completer.events.gcs (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import CloudEvent, from_http

from completer.errors import InvalidRequest, PayloadTooLarge
from completer.events.gcs import GcsObject, build_request, finalized_object, read_limit
from completer.models import Action

GOLDEN = Path(__file__).parent / "events" / "gcs"
TOKEN = "Z29sZGVuLXRhc2stdG9rZW4tAAECLW5vdC1hLXJlYWwtb25l"  # the golden files' token
INLINE = 1024
PAYLOAD = 4096


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


def structured_event(body: dict[str, Any]) -> CloudEvent:
    return from_http({"Content-Type": "application/cloudevents+json"}, json.dumps(body))


def binary_event(headers: dict[str, str], body: Any) -> CloudEvent:
    return from_http(headers, json.dumps(body))


def event_for(data: dict[str, Any], *, type_: str = "google.cloud.storage.object.v1.finalized"):
    return structured_event(
        {
            "specversion": "1.0",
            "type": type_,
            "source": "//storage.googleapis.com/projects/_/buckets/b",
            "id": "1",
            "data": data,
        }
    )


def obj(
    *,
    name: str = "inbox/a.json",
    size: int = 10,
    content_type: str | None = "application/json",
    metadata: dict[str, str] | None = None,
) -> GcsObject:
    return GcsObject(
        bucket="b",
        name=name,
        generation="1764321011123456",
        size=size,
        etag="CNHZkbuF/ugCEAE=",
        content_type=content_type,
        metadata={"task-token": TOKEN} if metadata is None else metadata,
    )


def request(o: GcsObject, content: bytes | None) -> Any:
    return build_request(o, content, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD)


def test_binary_golden_event():
    raw = golden("finalized_binary.json")
    found = finalized_object(binary_event(raw["headers"], raw["body"]))
    assert found == GcsObject(
        bucket="partner-drop",
        name="orders/42.json",
        generation="1764321011123456",
        size=17,
        etag="CNHZkbuF/ugCEAE=",
        content_type="application/json",
        metadata={"task-token": TOKEN, "action": "complete"},
        md5_hash="kF8MuJ5+CTJxvyhHS1xzRg==",
    )
    assert found.source == "gs://partner-drop/orders/42.json#1764321011123456"


def test_structured_golden_event_with_numbers_for_int64():
    found = finalized_object(structured_event(golden("finalized_structured.json")))
    assert found is not None
    assert (found.generation, found.size) == ("1764321012654321", 48213)
    assert found.metadata["workflow-id"] == "order-42"
    assert read_limit(found, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD) is None
    req = request(found, None)
    assert req.workflow_id == "order-42"
    assert req.run_id == "0b7c2f1e-6d2a-4c8e-9a57-3f1f2a9c0d11"
    assert req.result == {
        "uri": "gs://partner-drop/inbox/report.pdf",
        "bucket": "partner-drop",
        "key": "inbox/report.pdf",
        "generation": "1764321012654321",
        "size": 48213,
        "etag": "COu8mb3Dn+kCEAE=",
        "content_type": "application/pdf",
    }


def test_other_event_types_are_ignored():
    assert finalized_object(structured_event(golden("archived_structured.json"))) is None


def test_binary_event_without_json_content_type_is_still_read():
    raw = golden("finalized_binary.json")
    headers = {k: v for k, v in raw["headers"].items() if k != "Content-Type"}
    found = finalized_object(binary_event(headers, raw["body"]))
    assert found is not None
    assert found.name == "orders/42.json"


def test_metadata_names_are_compared_without_case():
    found = finalized_object(
        event_for(
            {"bucket": "b", "name": "n", "generation": "1", "metadata": {"Task-Token": TOKEN}}
        )
    )
    assert found is not None
    assert found.metadata == {"task-token": TOKEN}


@pytest.mark.parametrize(
    "data",
    [
        {"name": "n", "generation": "1"},
        {"bucket": "b", "generation": "1"},
        {"bucket": "b", "name": "n"},
        {"bucket": "b", "name": "", "generation": "1"},
        {"bucket": "b", "name": "n", "generation": "-1"},
        {"bucket": "b", "name": "n", "generation": "1" * 400},
        {"bucket": "b", "name": "n", "generation": "²"},
        {"bucket": "b", "name": "n", "generation": True},
        {"bucket": "b", "name": "n", "generation": "1", "size": 1.5},
        {"bucket": "b", "name": "n", "generation": "1", "metadata": {"task-token": 5}},
        {"bucket": "b", "name": "n", "generation": "1", "metadata": ["x"]},
    ],
)
def test_malformed_data_is_invalid(data: dict[str, Any]):
    with pytest.raises(InvalidRequest):
        finalized_object(event_for(data))


def test_data_that_is_not_an_object_is_invalid():
    event = from_http(
        {
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-source": "s",
            "ce-id": "1",
            "Content-Type": "text/plain",
        },
        b"\xff\xfe not json",
    )
    with pytest.raises(InvalidRequest):
        finalized_object(event)


def test_inline_json_up_to_the_limit_and_a_reference_above():
    at = obj(size=INLINE)
    assert read_limit(at, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD) == INLINE
    content = b'"' + b"x" * (INLINE - 2) + b'"'
    assert request(at, content).result == "x" * (INLINE - 2)
    # The object grew between the event and the read: the extra byte shows, reference.
    assert request(at, content + b" ").result["uri"] == "gs://b/inbox/a.json"
    above = obj(size=INLINE + 1)
    assert read_limit(above, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD) is None
    assert request(above, None).result["size"] == INLINE + 1


def test_json_by_name_or_suffix_and_not_json_is_a_reference():
    assert read_limit(obj(content_type=None), inline_max_bytes=INLINE, payload_max_bytes=1)
    assert read_limit(
        obj(name="a", content_type="application/vnd.x+json"),
        inline_max_bytes=INLINE,
        payload_max_bytes=1,
    )
    plain = obj(name="a.txt", content_type="text/plain")
    assert read_limit(plain, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD) is None


def test_bad_json_is_invalid():
    with pytest.raises(InvalidRequest):
        request(obj(), b"{nope")


def test_missing_metadata_names_the_goog_headers():
    with pytest.raises(InvalidRequest, match="x-goog-meta-task-token"):
        request(obj(metadata={}), b"{}")


def test_fail_heartbeat_cancel_by_ids():
    ids = {"workflow-id": "w", "activity-id": "a"}
    failed = request(obj(metadata={**ids, "action": "fail"}), b'{"message": "no"}')
    assert failed.action is Action.FAIL
    assert failed.error is not None
    assert failed.error.message == "no"
    beat = request(obj(metadata={**ids, "action": "Heartbeat"}), b'{"p": 1}')
    assert (beat.action, beat.details) == (Action.HEARTBEAT, {"p": 1})
    cancel = request(obj(metadata={**ids, "action": "cancel"}), b"")
    assert (cancel.action, cancel.details) == (Action.CANCEL, None)


def test_fail_needs_an_object_and_payload_limit_holds():
    failing = obj(metadata={"task-token": TOKEN, "action": "fail"})
    with pytest.raises(InvalidRequest):
        request(failing, b'"just text"')
    with pytest.raises(PayloadTooLarge):
        request(failing, b" " * (PAYLOAD + 1))


def test_unknown_action_is_invalid():
    with pytest.raises(InvalidRequest, match="action"):
        read_limit(
            obj(metadata={"task-token": TOKEN, "action": "approve"}),
            inline_max_bytes=INLINE,
            payload_max_bytes=PAYLOAD,
        )
