"""S3 events -> notifications -> requests (completer.events.s3, pure), and S3 error translation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from completer.errors import InvalidRequest, PayloadTooLarge, TransientError
from completer.events.objects import is_json_object
from completer.events.s3 import (
    ObjectNotification,
    StoredObject,
    build_request,
    is_sqs_event,
    message_notifications,
    object_notifications,
    read_limit,
)
from completer.handlers.s3 import (
    ObjectAccessDenied,
    ObjectUnreadable,
    StorageUnavailable,
    translate_s3_error,
)
from completer.models import Action

EVENTS = Path(__file__).parent / "events" / "s3"
TOKEN = "CiRhYmMtdG9rZW4tYnl0ZXM"  # any base64 text: nothing here calls an engine
INLINE = 1024
PAYLOAD = 4096


def load_event(name: str) -> dict[str, Any]:
    """A golden event from tests/events/s3."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return event


def stored(
    key: str = "incoming/approval.json",
    *,
    metadata: dict[str, str] | None = None,
    size: int = 10,
    content_type: str | None = "application/json",
    version_id: str | None = None,
) -> StoredObject:
    return StoredObject(
        bucket="example-bucket",
        key=key,
        version_id=version_id,
        metadata={"task-token": TOKEN} if metadata is None else metadata,
        size=size,
        etag="d41d8cd98f00b204e9800998ecf8427e",
        content_type=content_type,
    )


def build(obj: StoredObject, content: bytes | None) -> Any:
    return build_request(obj, content, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD)


# --- events -> notifications ----------------------------------------------------------------


def test_direct_notification():
    assert object_notifications(load_event("s3_put")) == [
        ObjectNotification(
            bucket="example-bucket",
            key="incoming/approval.json",
            sequencer="0055AED6DCD90281E5",
            event_name="ObjectCreated:Put",
        )
    ]


def test_every_record_is_read_not_just_the_first():
    notifications = object_notifications(load_event("s3_put_two_records"))
    assert [(n.key, n.event_name) for n in notifications] == [
        ("incoming/first.json", "ObjectCreated:Put"),
        ("incoming/second.bin", "ObjectCreated:CompleteMultipartUpload"),
    ]


def test_keys_are_url_decoded():
    (notification,) = object_notifications(load_event("s3_put_encoded_key"))
    assert notification.key == "incoming/réponse final+v2 (1).json"
    assert notification.uri == "s3://example-bucket/incoming/réponse final+v2 (1).json"


def test_versioned_record_keeps_version_and_sequencer():
    (notification,) = object_notifications(load_event("s3_put_versioned"))
    assert (
        notification.version_id
        == "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"
    )
    assert notification.sequencer == "0055AED6DCD90281E7"


@pytest.mark.parametrize("name", ["s3_removed", "eventbridge_object_deleted"])
def test_non_create_events_are_ignored(name: str):
    assert object_notifications(load_event(name)) == []


def test_records_from_other_sources_are_ignored():
    event = load_event("s3_put_two_records")
    event["Records"][0]["eventSource"] = "aws:dynamodb"
    assert [n.key for n in object_notifications(event)] == ["incoming/second.bin"]


def test_eventbridge_object_created():
    assert object_notifications(load_event("eventbridge_object_created")) == [
        ObjectNotification(
            bucket="example-bucket",
            key="incoming/approval.json",
            version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            sequencer="617f08299329d189",
            event_name="Object Created",
        )
    ]


def test_eventbridge_key_is_url_decoded_and_version_optional():
    event = load_event("eventbridge_object_created")
    event["detail"]["object"]["key"] = "a+b%2Bc/%C3%BC.json"
    del event["detail"]["object"]["version-id"]
    (notification,) = object_notifications(event)
    assert (notification.key, notification.version_id) == ("a b+c/ü.json", None)


def test_eventbridge_from_another_source_is_ignored():
    event = load_event("eventbridge_object_created")
    event["source"] = "my.app"
    assert object_notifications(event) == []


@pytest.mark.parametrize(
    "event",
    [{}, {"hello": "world"}, {"Records": [{"eventSource": "aws:s3"}]}, {"detail-type": "x"}],
    ids=["empty", "unknown", "record-without-s3", "eventbridge-without-detail"],
)
def test_unknown_or_malformed_events_are_invalid(event: dict[str, Any]):
    with pytest.raises(InvalidRequest):
        object_notifications(event)


def test_sqs_event_detection():
    assert is_sqs_event(load_event("sqs_s3_put"))
    assert not is_sqs_event(load_event("s3_put"))
    assert not is_sqs_event({"Records": []})
    assert not is_sqs_event(load_event("eventbridge_object_created"))


def test_sqs_body_with_s3_notification():
    (record,) = load_event("sqs_s3_put")["Records"]
    assert [n.key for n in message_notifications(record["body"])] == ["incoming/approval.json"]


def test_s3_test_event_body_is_ignored():
    (record,) = load_event("sqs_test_event")["Records"]
    assert message_notifications(record["body"]) == []


def test_eventbridge_event_delivered_through_sqs():
    body = json.dumps(load_event("eventbridge_object_created"))
    assert [n.version_id for n in message_notifications(body)] == [
        "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
    ]


def test_s3_notification_inside_an_sns_envelope():
    inner = json.dumps(load_event("s3_put_encoded_key"))
    body = json.dumps({"Type": "Notification", "MessageId": "m-1", "Message": inner})
    assert [n.key for n in message_notifications(body)] == ["incoming/réponse final+v2 (1).json"]


@pytest.mark.parametrize("body", ["", "not json", "[1, 2]", '{"some": "thing"}', '"s3"'])
def test_other_sqs_bodies_are_invalid(body: str):
    with pytest.raises(InvalidRequest):
        message_notifications(body)


# --- object -> request ----------------------------------------------------------------------


def test_json_object_is_the_result():
    request = build(stored(), b'{"approved": true, "by": "ana"}')
    assert (request.action, request.task_token, request.result) == (
        Action.COMPLETE,
        TOKEN,
        {"approved": True, "by": "ana"},
    )


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("in/a.json", None),
        ("in/A.JSON", "binary/octet-stream"),
        ("in/a", "application/json; charset=utf-8"),
        ("in/a", "Application/JSON"),
        ("in/a", "application/vnd.partner+json"),
    ],
)
def test_what_counts_as_json(key: str, content_type: str | None):
    assert is_json_object(content_type, key)


@pytest.mark.parametrize(("key", "content_type"), [("in/a.txt", "text/plain"), ("in/a", None)])
def test_what_does_not_count_as_json(key: str, content_type: str | None):
    assert not is_json_object(content_type, key)


def test_non_json_object_is_a_reference_and_is_not_read():
    obj = stored("incoming/scan.png", content_type="image/png", size=5000, version_id="v1")
    assert read_limit(obj, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD) is None
    assert build(obj, None).result == {
        "uri": "s3://example-bucket/incoming/scan.png",
        "bucket": "example-bucket",
        "key": "incoming/scan.png",
        "version_id": "v1",
        "size": 5000,
        "etag": "d41d8cd98f00b204e9800998ecf8427e",
        "content_type": "image/png",
    }


def test_json_up_to_the_inline_limit_is_read_over_it_is_a_reference():
    at_limit = stored(size=INLINE)
    assert read_limit(at_limit, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD) == INLINE
    over = stored(size=INLINE + 1)
    assert read_limit(over, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD) is None
    assert build(over, None).result["size"] == INLINE + 1
    # Content that grew past the cap between HeadObject and GetObject is a reference too.
    assert build(at_limit, b" " * (INLINE + 1)).result["uri"].startswith("s3://")


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b'{"a": NaN}'])
def test_invalid_json_in_a_json_object_is_invalid_request(content: bytes):
    with pytest.raises(InvalidRequest, match=r"s3://example-bucket/incoming/approval\.json"):
        build(stored(), content)


def test_by_ids():
    metadata = {"workflow-id": "wf-1", "activity-id": "act-1", "run-id": "run-1"}
    request = build(stored(metadata=metadata), b"42")
    assert (request.workflow_id, request.activity_id, request.run_id, request.result) == (
        "wf-1",
        "act-1",
        "run-1",
        42,
    )


def test_fail_takes_the_object_as_the_error():
    metadata = {"task-token": TOKEN, "action": "fail"}
    content = json.dumps({"message": "rejected", "type": "Rejected", "details": {"r": 1}})
    request = build(
        stored("in/error.txt", metadata=metadata, content_type="text/plain"), content.encode()
    )
    assert request.action is Action.FAIL
    assert request.error is not None
    assert (request.error.message, request.error.type, request.error.details) == (
        "rejected",
        "Rejected",
        {"r": 1},
    )


@pytest.mark.parametrize("content", [b"[]", b'"no"', b'{"type": "NoMessage"}', b""])
def test_fail_needs_an_error_object(content: bytes):
    with pytest.raises(InvalidRequest):
        build(stored(metadata={"task-token": TOKEN, "action": "fail"}), content)


@pytest.mark.parametrize(
    ("action", "expected"), [("heartbeat", Action.HEARTBEAT), ("CANCEL", Action.CANCEL)]
)
def test_heartbeat_and_cancel_take_details_empty_is_null(action: str, expected: Action):
    obj = stored(metadata={"task-token": TOKEN, "action": action}, content_type=None)
    assert build(obj, b"").details is None
    request = build(obj, b'{"progress": 0.5}')
    assert (request.action, request.details) == (expected, {"progress": 0.5})


def test_action_reads_at_most_the_payload_limit_and_refuses_more():
    obj = stored(metadata={"task-token": TOKEN, "action": "heartbeat"}, size=PAYLOAD + 10)
    assert read_limit(obj, inline_max_bytes=INLINE, payload_max_bytes=PAYLOAD) == PAYLOAD
    with pytest.raises(PayloadTooLarge):
        build(obj, b" " * (PAYLOAD + 1))


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"uploaded-by": "partner"},
        {"task-token": TOKEN, "workflow-id": "wf"},
        {"workflow-id": "wf"},
        {"task-token": "  "},
        {"task-token": TOKEN, "action": "approve"},
    ],
    ids=["none", "unrelated", "token-and-ids", "ids-half", "blank-token", "unknown-action"],
)
def test_metadata_that_does_not_name_one_activity_is_invalid(metadata: dict[str, str]):
    with pytest.raises(InvalidRequest):
        build(stored(metadata=metadata), b"{}")


def test_missing_metadata_message_says_what_to_set():
    with pytest.raises(InvalidRequest, match="x-amz-meta-task-token"):
        build(stored(metadata={}), b"{}")


# --- S3 errors ------------------------------------------------------------------------------


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("NoSuchKey", 404),
        ("404", 404),
        ("NoSuchVersion", 404),
        ("NoSuchBucket", 404),
        ("MethodNotAllowed", 405),
        ("PreconditionFailed", 412),
        ("InvalidArgument", 400),
    ],
)
def test_s3_errors_that_are_permanent(code: str, status: int):
    error = translate_s3_error(client_error(code, status), "s3://b/k")
    assert isinstance(error, ObjectUnreadable)
    assert not error.transient
    assert error.code == "invalid_request"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
        ("SlowDown", 503),
        ("RequestTimeout", 400),
    ],
)
def test_s3_errors_that_are_transient(code: str, status: int):
    error = translate_s3_error(client_error(code, status), "s3://b/k")
    assert isinstance(error, StorageUnavailable)
    assert error.transient


@pytest.mark.parametrize(("code", "status"), [("AccessDenied", 403), ("Forbidden", 403)])
def test_access_denied_is_transient_the_operators_to_fix(code: str, status: int):
    error = translate_s3_error(client_error(code, status), "s3://b/k")
    assert isinstance(error, ObjectAccessDenied)
    assert error.transient
    assert "s3:GetObject" in error.message


def test_s3_unreachable_is_transient():
    for exc in (
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ):
        assert isinstance(translate_s3_error(exc, "s3://b/k"), TransientError)
