"""Pub/Sub message parsing (completer.events.pubsub) on golden CloudEvent and push payloads."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import flask
import pytest
from cloudevents.http import CloudEvent, from_http
from functions_framework import event_conversion

from completer.deadletter import MAX_ATTRIBUTE_VALUE_BYTES, _truncate
from completer.errors import InvalidRequest
from completer.events.pubsub import (
    MESSAGE_PUBLISHED,
    PubSubMessage,
    read_message,
)
from completer.handlers.pubsub import RecentCompletions
from completer.models import Action, CompletionRequest
from completer.tokens import token_fingerprint
from tests.support.services import venv_tool

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "events" / "pubsub"
TOKEN = "Z29sZGVuLXRhc2stdG9rZW4tAAECLW5vdC1hLXJlYWwtb25l"  # the golden files' token
MAIN = ROOT / "functions" / "pubsub" / "main.py"


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def structured_event(body: dict[str, Any]) -> CloudEvent:
    return from_http({"Content-Type": "application/cloudevents+json"}, json.dumps(body))


def binary_event(headers: dict[str, str], body: Any) -> CloudEvent:
    return from_http(headers, json.dumps(body))


def pushed_event(body: dict[str, Any], path: str = "/") -> CloudEvent:
    """What functions-framework hands the function for a raw push request."""
    app = flask.Flask(__name__)
    with app.test_request_context(path, method="POST", json=body):
        return event_conversion.background_event_to_cloud_event(flask.request)


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def message_event(
    attributes: dict[str, str] | None = None, data: bytes | str = b"", message_id: str = "m-1"
) -> CloudEvent:
    """A structured messagePublished CloudEvent around one message."""
    body = golden("cloudevent_structured.json")
    body["data"]["message"] = {
        "attributes": attributes or {},
        "data": b64(data),
        "messageId": message_id,
        "publishTime": "2026-11-28T09:10:11.123Z",
    }
    return structured_event(body)


def request_of(attributes: dict[str, str] | None = None, data: bytes | str = b"") -> Any:
    return read_message(message_event(attributes, data)).completion_request()


# --- the three ways a message arrives --------------------------------------------------------


def test_structured_cloudevent_golden():
    message = read_message(structured_event(golden("cloudevent_structured.json")))
    assert message == PubSubMessage(
        message_id="2070443601311540",
        attributes={"task_token": TOKEN, "action": "complete"},
        data=b'{"approved": true}',
        # Message IDs are unique per topic: the ledger keeps them as <topic>/<id>.
        channel="//pubsub.googleapis.com/projects/my-project/topics/completions",
    )
    request = message.completion_request()
    assert (request.task_token, request.action, request.result) == (
        TOKEN,
        Action.COMPLETE,
        {"approved": True},
    )


def test_binary_cloudevent_golden():
    payload = golden("cloudevent_binary.json")
    message = read_message(binary_event(payload["headers"], payload["body"]))
    assert message.message_id == "2070443601311540"
    assert message.completion_request().result == {"approved": True}


def test_binary_cloudevent_without_json_content_type_is_still_read():
    payload = golden("cloudevent_binary.json")
    headers = {**payload["headers"], "Content-Type": "application/octet-stream"}
    event = from_http(headers, json.dumps(payload["body"]).encode(), lambda raw: raw)
    assert isinstance(event.data, bytes)
    assert read_message(event).completion_request().result == {"approved": True}


def test_raw_push_request_golden_as_functions_framework_converts_it():
    event = pushed_event(golden("push_request.json"), "/projects/my-project/topics/completions")
    assert event["type"] == MESSAGE_PUBLISHED
    message = read_message(event)
    assert message.message_id == "2070443601311540"
    assert message.attributes == {"task_token": TOKEN, "action": "complete"}
    assert message.completion_request().result == {"approved": True}


def test_raw_push_request_with_empty_data_is_a_null_result():
    body = golden("push_request.json")
    body["message"]["data"] = ""
    request = read_message(pushed_event(body)).completion_request()
    assert request.action is Action.COMPLETE
    assert request.result is None


# --- the attribute form ----------------------------------------------------------------------

ERROR = {"message": "rejected by reviewer", "type": "Rejected", "details": {"by": "ana"}}
PAYLOADS: dict[str, tuple[Any, str, Any]] = {
    # action -> (data sent, request field, value expected there)
    "complete": ({"approved": True}, "result", {"approved": True}),
    "fail": (ERROR, "error", ERROR),
    "heartbeat": ({"progress": 40}, "details", {"progress": 40}),
    "cancel": ({"why": "user left"}, "details", {"why": "user left"}),
}


def _field(request: CompletionRequest, name: str) -> Any:
    value = getattr(request, name)
    return value.model_dump(exclude_defaults=True) if name == "error" else value


@pytest.mark.parametrize("action", list(PAYLOADS))
def test_attribute_form_by_token_each_action(action: str):
    data, field, expected = PAYLOADS[action]
    request = request_of({"task_token": TOKEN, "action": action}, json.dumps(data))
    assert request.action is Action(action)
    assert request.task_token == TOKEN
    assert _field(request, field) == expected


@pytest.mark.parametrize("action", list(PAYLOADS))
def test_attribute_form_by_ids_each_action(action: str):
    data, field, expected = PAYLOADS[action]
    attributes = {"workflow_id": "wf-1", "activity_id": "a-1", "run_id": "r-1", "action": action}
    request = request_of(attributes, json.dumps(data))
    assert (request.workflow_id, request.activity_id, request.run_id) == ("wf-1", "a-1", "r-1")
    assert request.task_token is None
    assert _field(request, field) == expected


def test_attribute_form_without_action_completes_with_the_data():
    request = request_of({"task_token": TOKEN}, "[1, 2, 3]")
    assert (request.action, request.result) == (Action.COMPLETE, [1, 2, 3])


def test_attribute_form_json_scalars_are_results():
    assert request_of({"task_token": TOKEN}, '"yes"').result == "yes"
    assert request_of({"task_token": TOKEN}, "null").result is None
    assert request_of({"task_token": TOKEN}, "0").result == 0


@pytest.mark.parametrize("action", ["complete", "heartbeat", "cancel"])
def test_empty_data_is_null(action: str):
    request = request_of({"task_token": TOKEN, "action": action}, b"")
    assert request.payload() is None
    assert request.action is Action(action)


def test_blank_data_is_null_too():
    assert request_of({"task_token": TOKEN}, b"  \n").result is None


def test_fail_needs_an_error_object():
    with pytest.raises(InvalidRequest, match="error object"):
        request_of({"task_token": TOKEN, "action": "fail"}, b"")
    with pytest.raises(InvalidRequest, match="error"):
        request_of({"task_token": TOKEN, "action": "fail"}, '"just text"')


def test_fail_error_object_with_unknown_field_is_refused():
    with pytest.raises(InvalidRequest, match=r"unknown field 'error\.reason'"):
        request_of({"task_token": TOKEN, "action": "fail"}, '{"message": "x", "reason": "y"}')


def test_fail_error_object_camel_case():
    request = request_of(
        {"taskToken": TOKEN, "action": "fail"}, '{"message": "x", "nonRetryable": true}'
    )
    assert request.error is not None
    assert request.error.non_retryable is True


def test_camel_case_attributes():
    request = request_of({"workflowId": "wf", "activityId": "act", "runId": "run"}, "1")
    assert (request.workflow_id, request.activity_id, request.run_id) == ("wf", "act", "run")
    assert request_of({"taskToken": TOKEN}, "1").task_token == TOKEN


def test_attribute_spelled_twice_is_refused():
    with pytest.raises(InvalidRequest, match="given twice"):
        request_of({"task_token": TOKEN, "taskToken": TOKEN}, "1")


def test_token_and_ids_together_are_refused():
    with pytest.raises(InvalidRequest, match="not both"):
        request_of({"task_token": TOKEN, "workflow_id": "wf", "activity_id": "a"}, "1")


def test_workflow_id_without_activity_id_is_refused():
    with pytest.raises(InvalidRequest, match="together"):
        request_of({"workflow_id": "wf"}, "1")


def test_unknown_action_is_refused():
    with pytest.raises(InvalidRequest, match="'action' must be one of"):
        request_of({"task_token": TOKEN, "action": "approve"}, "1")


def test_other_attributes_are_ignored():
    # Publishers add their own attributes; a replayed dead letter carries completer_* ones.
    attributes = {
        "task_token": TOKEN,
        "source": "scanner",
        "googclient_schemaencoding": "JSON",
        "completer_error_code": "engine_unavailable",
    }
    assert request_of(attributes, "1").result == 1


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"{not json", "the message data is not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100 + b"]" * 100, "nested deeper"),
    ],
)
def test_bad_json_data_is_invalid(data: bytes, match: str):
    with pytest.raises(InvalidRequest, match=match):
        request_of({"task_token": TOKEN}, data)


# --- the envelope form -----------------------------------------------------------------------


def test_envelope_form_is_a_whole_request():
    envelope = {"task_token": TOKEN, "action": "fail", "error": {"message": "no"}}
    message = read_message(message_event({"origin": "billing"}, json.dumps(envelope)))
    assert message.form == "envelope"
    request = message.completion_request()
    assert request.action is Action.FAIL
    assert request.error is not None
    assert request.error.message == "no"


def test_envelope_form_by_ids_camel_case():
    envelope = {"workflowId": "wf", "activityId": "act", "action": "heartbeat", "details": 5}
    request = request_of({}, json.dumps(envelope))
    assert (request.workflow_id, request.activity_id, request.details) == ("wf", "act", 5)


def test_envelope_with_unknown_field_is_refused():
    with pytest.raises(InvalidRequest, match="unknown field 'reslt'"):
        request_of({}, json.dumps({"task_token": TOKEN, "reslt": 1}))


def test_envelope_that_is_just_a_result_is_refused():
    # A result published without naming attributes must not complete anything.
    with pytest.raises(InvalidRequest, match="unknown field 'approved'"):
        request_of({}, '{"approved": true}')


@pytest.mark.parametrize(("data", "match"), [(b"", "empty"), (b"[1]", "JSON object")])
def test_envelope_empty_or_not_an_object_is_refused(data: bytes, match: str):
    with pytest.raises(InvalidRequest, match=match):
        request_of({}, data)


# --- events that are not usable messages -------------------------------------------------------


def test_bad_base64_is_invalid_and_the_raw_data_is_kept():
    body = golden("cloudevent_structured.json")
    body["data"]["message"]["data"] = "not base64!!"
    message = read_message(structured_event(body))
    assert message.data == b"not base64!!"
    assert message.attributes["task_token"] == TOKEN
    with pytest.raises(InvalidRequest, match="not valid base64"):
        message.completion_request()


def test_data_that_is_not_a_string_is_invalid():
    body = golden("cloudevent_structured.json")
    body["data"]["message"]["data"] = {"approved": True}
    with pytest.raises(InvalidRequest, match="base64 string"):
        read_message(structured_event(body)).completion_request()


def test_other_event_type_is_invalid():
    body = golden("cloudevent_structured.json")
    body["type"] = "google.cloud.storage.object.v1.finalized"
    message = read_message(structured_event(body))
    assert message.message_id == "2070443601311540"
    with pytest.raises(InvalidRequest, match="event type"):
        message.completion_request()


@pytest.mark.parametrize("data", [{"subscription": "s"}, {"message": "x"}, [1], "plain text"])
def test_event_without_a_message_is_invalid(data: Any):
    body = golden("cloudevent_structured.json")
    body["data"] = data
    message = read_message(structured_event(body))
    with pytest.raises(InvalidRequest, match="message"):
        message.completion_request()
    assert message.message_id == "2070443601311540"


def test_attributes_must_be_strings():
    body = golden("cloudevent_structured.json")
    body["data"]["message"]["attributes"] = {"task_token": 5}
    with pytest.raises(InvalidRequest, match="strings"):
        read_message(structured_event(body)).completion_request()


def test_message_id_falls_back_to_the_event_id():
    body = golden("cloudevent_structured.json")
    del body["data"]["message"]["messageId"]
    del body["data"]["message"]["message_id"]
    assert read_message(structured_event(body)).message_id == "2070443601311540"


# --- log safety and duplicates -----------------------------------------------------------------


def test_describe_activity_never_shows_the_token():
    message = read_message(structured_event(golden("cloudevent_structured.json")))
    described = message.describe_activity()
    assert TOKEN not in described
    assert described == f"token:{token_fingerprint(TOKEN)}"
    ids = read_message(message_event({"workflow_id": "wf", "activity_id": "a"}, "1"))
    assert ids.describe_activity() == "workflow:wf/activity:a"
    assert read_message(message_event({}, "{}")).describe_activity() == "envelope"


def test_recent_completions_know_the_same_completion_only():
    recent = RecentCompletions(capacity=2)
    first = request_of({"task_token": TOKEN}, '{"approved": true}')
    recent.remember(first)
    assert request_of({"task_token": TOKEN}, '{"approved":true}') in recent
    assert request_of({"task_token": TOKEN}, '{"approved": false}') not in recent
    assert None not in recent
    recent.remember(request_of({"task_token": TOKEN}, "1"))
    recent.remember(request_of({"task_token": TOKEN}, "2"))
    assert first not in recent  # evicted: the memory is bounded


def test_dead_letter_reason_fits_an_attribute_value():
    long = "é" * 2000
    cut = _truncate(long, MAX_ATTRIBUTE_VALUE_BYTES)
    assert len(cut.encode()) <= MAX_ATTRIBUTE_VALUE_BYTES
    assert cut.endswith("...")
    assert _truncate("short", MAX_ATTRIBUTE_VALUE_BYTES) == "short"


# --- the function module's import ---------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "TEMPORAL_"))}
    return {**env, **extra}


_IMPORT_MAIN = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("pubsub_main", {str(MAIN)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
loaded = sorted(m for m in sys.modules if m.startswith(("google.cloud.pubsub", "google.pubsub")))
print(",".join(loaded) or "none")
"""


@pytest.mark.parametrize("topic", [None, "projects/p1/topics/dead-letters"])
def test_cold_start_does_not_import_pubsub(topic: str | None):
    env = _env(**({"COMPLETER_DEAD_LETTER_TOPIC": topic} if topic else {}))
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_MAIN],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COMPLETER_DEAD_LETTER_TOPIC", "dead-letters"),
        ("COMPLETER_RPC_TIMEOUT_SECONDS", "soon"),
        ("COMPLETER_BACKEND", "kafka"),
    ],
)
def test_wrong_configuration_fails_at_start_with_one_sentence(variable: str, value: str):
    framework = venv_tool("functions-framework")
    assert framework is not None
    argv = [framework, "--source", str(MAIN), "--target", "complete"]
    argv += ["--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", "1"]
    done = subprocess.run(
        argv,
        env=_env(**{variable: value}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert lines[0].startswith("activity-completer:")


def test_attribute_only_message_without_data_field_is_a_null_result():
    # Pub/Sub leaves out `data` (and `attributes`) when they are empty.
    body = golden("cloudevent_structured.json")
    del body["data"]["message"]["data"]
    message = read_message(structured_event(body))
    assert message.data == b""
    assert message.completion_request().result is None
    del body["data"]["message"]["attributes"]
    with pytest.raises(InvalidRequest, match="empty"):
        read_message(structured_event(body)).completion_request()
