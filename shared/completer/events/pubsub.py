"""Pub/Sub messages -> completion requests (docs/triggers/pubsub.md). Pure: no I/O, no engine.

A message arrives as an Eventarc CloudEvent of type ``messagePublished`` (binary or
structured mode), or as a raw push request that functions-framework converts into the same
CloudEvent. Either way the CloudEvent's data is ``{"message": {...}, "subscription": ...}``.

Two message forms:

- attribute form: attributes name the activity (``task_token``, or ``workflow_id`` +
  ``activity_id`` + optional ``run_id``, or ``correlation_key``) and may say ``action``;
  ``data`` is the action's payload as JSON (the result, the error object, or the details).
  Empty data is null.
- envelope form: no naming attributes; ``data`` is a whole completion request
  (docs/contract.md).

:func:`read_message` never raises: whatever arrived is kept (id, attributes, raw data) so a
rejected message can be dead-lettered as it was sent; :meth:`PubSubMessage.completion_request`
raises :class:`~completer.errors.InvalidRequest` when the message is not a valid completion.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from completer.errors import InvalidRequest
from completer.models import Action, CompletionRequest, parse_json, parse_request, quoted
from completer.tokens import token_fingerprint

__all__ = [
    "MESSAGE_PUBLISHED",
    "CloudEventLike",
    "PubSubMessage",
    "PushRequest",
    "event_from_http",
    "read_message",
]

# CloudEvent type of a published message: Eventarc, and functions-framework's
# event_conversion._BACKGROUND_TO_CE_TYPE for converted raw push requests.
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
# CloudEvent context attributes (CloudEvents spec 1.0).
CE_TYPE = "type"
CE_ID = "id"
# Eventarc's source is the topic: //pubsub.googleapis.com/projects/<p>/topics/<t>.
CE_SOURCE = "source"
# Topic and subscription names are at most 255 characters plus their project path.
MAX_CHANNEL_CHARS = 512
# CloudEvents HTTP binding: binary mode puts the attributes in ce-* headers; structured mode
# sends the whole event with this media type.
CE_BINARY_HEADER = "ce-specversion"
CE_STRUCTURED_MEDIA_TYPE = "application/cloudevents+json"

# MessagePublishedData (googleapis/google-cloudevents, google/events/cloud/pubsub/v1/data.proto):
# the CloudEvent data; a raw push request body has the same shape.
DATA_MESSAGE = "message"
DATA_SUBSCRIPTION = "subscription"
# PubsubMessage fields in their JSON form (google/pubsub/v1/pubsub.proto); push requests
# carry both the camelCase and the snake_case spelling of the id.
MESSAGE_DATA = "data"
MESSAGE_ATTRIBUTES = "attributes"
MESSAGE_ID_FIELDS = ("messageId", "message_id")

# Attribute names of the attribute form (docs/triggers/pubsub.md), with the camelCase aliases of
# the completion request (docs/contract.md) so a publisher may spell them either way.
ATTR_TASK_TOKEN = ("task_token", "taskToken")
ATTR_WORKFLOW_ID = ("workflow_id", "workflowId")
ATTR_ACTIVITY_ID = ("activity_id", "activityId")
ATTR_RUN_ID = ("run_id", "runId")
ATTR_CORRELATION_KEY = ("correlation_key", "correlationKey")
ATTR_ACTION = ("action",)
_NAMING = (
    *ATTR_TASK_TOKEN,
    *ATTR_WORKFLOW_ID,
    *ATTR_ACTIVITY_ID,
    *ATTR_RUN_ID,
    *ATTR_CORRELATION_KEY,
)

# Where the attribute form puts the decoded data, per action (docs/triggers/pubsub.md).
_PAYLOAD_FIELD = {
    Action.COMPLETE: "result",
    Action.FAIL: "error",
    Action.HEARTBEAT: "details",
    Action.CANCEL: "details",
}


class CloudEventLike(Protocol):
    """What this module reads of a CloudEvent (``cloudevents.http.CloudEvent`` fits)."""

    @property
    def data(self) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass(frozen=True)
class PubSubMessage:
    """One Pub/Sub message as delivered, kept whole for dead-lettering.

    Attributes:
        message_id: Pub/Sub's id of the message (the CloudEvent id when the message has none).
        attributes: The message's attributes, as published.
        data: The message's data, base64-decoded (the raw text when it was not base64).
        problem: Why the event is not a usable Pub/Sub message, or None.
        channel: Where message IDs are unique: the topic (an Eventarc event's ``source``)
            or, for a raw push request, its subscription; "" when neither is known.
    """

    message_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    data: bytes = b""
    problem: str | None = None
    channel: str = ""

    @property
    def form(self) -> str:
        """``attribute`` when attributes name the activity, else ``envelope``."""
        return "attribute" if any(name in self.attributes for name in _NAMING) else "envelope"

    def completion_request(self) -> CompletionRequest:
        """The completion this message asks for.

        Raises:
            InvalidRequest: The event, its data or its attributes are not a valid completion.
        """
        if self.problem is not None:
            raise InvalidRequest(self.problem)
        if self.form == "envelope":
            envelope = parse_json(self.data, what="the message data")
            if not isinstance(envelope, Mapping):
                raise InvalidRequest("the message data must be a JSON object (a whole request).")
            return parse_request(envelope)
        return CompletionRequest.build(self._attribute_fields())

    def _attribute_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for names in (
            ATTR_TASK_TOKEN,
            ATTR_WORKFLOW_ID,
            ATTR_ACTIVITY_ID,
            ATTR_RUN_ID,
            ATTR_CORRELATION_KEY,
        ):
            given = [name for name in names if name in self.attributes]
            if len(given) > 1:
                raise InvalidRequest(f"attribute '{names[0]}' is given twice ({', '.join(given)}).")
            if given:
                fields[names[0]] = self.attributes[given[0]]
        action_text = self.attributes.get(ATTR_ACTION[0])
        try:
            action = Action(action_text) if action_text is not None else Action.COMPLETE
        except ValueError:
            choices = ", ".join(a.value for a in Action)
            raise InvalidRequest(f"attribute 'action' must be one of {choices}.") from None
        if action_text is not None:
            fields["action"] = action.value
        payload = self._payload()
        if payload is not None:
            fields[_PAYLOAD_FIELD[action]] = payload
        return fields

    def _payload(self) -> Any:
        # Empty (or blank) data is "no payload": null in the attribute form.
        if not self.data.strip():
            return None
        return parse_json(self.data, what="the message data")

    def describe_activity(self) -> str:
        """A log-safe name for the activity the message names, without parsing its data."""
        for name in ATTR_TASK_TOKEN:
            if name in self.attributes:
                return f"token:{token_fingerprint(self.attributes[name])}"
        workflow = next((self.attributes[n] for n in ATTR_WORKFLOW_ID if n in self.attributes), "")
        activity = next((self.attributes[n] for n in ATTR_ACTIVITY_ID if n in self.attributes), "")
        if workflow or activity:
            return f"workflow:{workflow}/activity:{activity}"
        key = next((self.attributes[n] for n in ATTR_CORRELATION_KEY if n in self.attributes), "")
        if key:
            return f"key:{quoted(key, limit=100)}"
        return "envelope"


@dataclass(frozen=True)
class PushRequest:
    """A raw Pub/Sub push request seen as the ``messagePublished`` CloudEvent it stands for.

    Its body, ``{"message": {...}, "subscription": ...}``, is exactly that CloudEvent's data.
    """

    data: Any
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """A CloudEvent attribute (``type``, ``id``)."""
        return self.attributes.get(key, default)


def event_from_http(headers: Mapping[str, str], body: bytes) -> CloudEventLike:
    """The CloudEvent an HTTP request carries: Eventarc's (binary or structured), or a push.

    Args:
        headers: The request headers, names in lower case.
        body: The raw body.

    Raises:
        InvalidRequest: The request says it is a CloudEvent but is not a valid one.
    """
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if CE_BINARY_HEADER in headers or media_type == CE_STRUCTURED_MEDIA_TYPE:
        from cloudevents.http import from_http

        try:
            event: CloudEventLike = from_http(dict(headers), body)
        except Exception as exc:
            raise InvalidRequest(f"the CloudEvent is malformed ({type(exc).__name__}).") from exc
        return event
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = body
    message = data.get(DATA_MESSAGE) if isinstance(data, Mapping) else None
    message_id = ""
    if isinstance(message, Mapping):
        message_id = next((str(message[n]) for n in MESSAGE_ID_FIELDS if message.get(n)), "")
    subscription = data.get(DATA_SUBSCRIPTION) if isinstance(data, Mapping) else None
    attributes = {CE_TYPE: MESSAGE_PUBLISHED, CE_ID: message_id}
    if isinstance(subscription, str):
        attributes[CE_SOURCE] = subscription
    return PushRequest(data=data, attributes=attributes)


def read_message(event: CloudEventLike) -> PubSubMessage:
    """Take the Pub/Sub message out of a ``messagePublished`` CloudEvent.

    Never raises: an event that is not a usable message comes back with ``problem`` set,
    and :meth:`PubSubMessage.completion_request` refuses it.
    """
    source = event.get(CE_SOURCE)
    channel = source[:MAX_CHANNEL_CHARS] if isinstance(source, str) else ""
    return replace(_read_message(event), channel=channel)


def _read_message(event: CloudEventLike) -> PubSubMessage:
    event_id = str(event.get(CE_ID) or "")
    event_type = event.get(CE_TYPE)
    if event_type is not None and event_type != MESSAGE_PUBLISHED:
        return PubSubMessage(
            message_id=event_id,
            data=_as_bytes(event.data),
            problem=f"the event type is {event_type!r}, not {MESSAGE_PUBLISHED!r}.",
        )
    body = event.data
    if isinstance(body, str | bytes):
        # A binary-mode event whose content type did not say JSON arrives undecoded.
        try:
            body = json.loads(body)
        except ValueError:
            return PubSubMessage(
                message_id=event_id,
                data=_as_bytes(event.data),
                problem="the event data is not JSON; expected a Pub/Sub message.",
            )
    message = body.get(DATA_MESSAGE) if isinstance(body, Mapping) else None
    if not isinstance(message, Mapping):
        return PubSubMessage(
            message_id=event_id,
            data=_as_bytes(event.data),
            problem="the event data has no 'message' object; expected a Pub/Sub message.",
        )
    message_id = next(
        (str(message[name]) for name in MESSAGE_ID_FIELDS if message.get(name)), event_id
    )
    raw_attributes = message.get(MESSAGE_ATTRIBUTES) or {}
    if not isinstance(raw_attributes, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in raw_attributes.items()
    ):
        return PubSubMessage(
            message_id=message_id,
            data=_as_bytes(message.get(MESSAGE_DATA)),
            problem="the message attributes must map strings to strings.",
        )
    attributes = dict(raw_attributes)
    encoded = message.get(MESSAGE_DATA) or ""
    if not isinstance(encoded, str):
        return PubSubMessage(
            message_id=message_id,
            attributes=attributes,
            data=_as_bytes(encoded),
            problem="the message data must be a base64 string.",
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return PubSubMessage(
            message_id=message_id,
            attributes=attributes,
            data=encoded.encode("utf-8", "surrogateescape"),
            problem="the message data is not valid base64.",
        )
    return PubSubMessage(message_id=message_id, attributes=attributes, data=data)


def _as_bytes(value: Any) -> bytes:
    # Keep whatever arrived, as bytes, for the dead letter.
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return json.dumps(value, default=str).encode("utf-8")
