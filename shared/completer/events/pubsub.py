"""Pub/Sub messages -> completion requests (CONTRACT §5). Pure: no I/O, no engine.

A message arrives as an Eventarc CloudEvent of type ``messagePublished`` (binary or
structured mode), or as a raw push request that functions-framework converts into the same
CloudEvent. Either way the CloudEvent's data is ``{"message": {...}, "subscription": ...}``.

Two message forms:

- attribute form: attributes name the activity (``task_token``, or ``workflow_id`` +
  ``activity_id`` + optional ``run_id``) and may say ``action``; ``data`` is the action's
  payload as JSON (the result, the error object, or the details). Empty data is null.
- envelope form: no naming attributes; ``data`` is a whole completion request (CONTRACT §2).

:func:`read_message` never raises: whatever arrived is kept (id, attributes, raw data) so a
rejected message can be dead-lettered as it was sent; :meth:`PubSubMessage.completion_request`
raises :class:`~completer.errors.InvalidRequest` when the message is not a valid completion.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from completer.client import describe_activity
from completer.errors import (
    ActivityNotFound,
    InternalError,
    InvalidRequest,
    PermanentError,
    TransientError,
)
from completer.models import Action, CompletionRequest, parse_json, parse_request
from completer.tokens import token_fingerprint

if TYPE_CHECKING:
    from completer.deadletter import DeadLetterTopic
    from completer.models import CompletionOutcome

logger = logging.getLogger("completer.pubsub")

__all__ = [
    "MESSAGE_PUBLISHED",
    "CloudEventLike",
    "PubSubCompleter",
    "PubSubMessage",
    "RecentCompletions",
    "read_message",
]

# CloudEvent type of a published message: Eventarc, and functions-framework's
# event_conversion._BACKGROUND_TO_CE_TYPE for converted raw push requests.
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
# CloudEvent context attributes (CloudEvents spec 1.0).
CE_TYPE = "type"
CE_ID = "id"

# MessagePublishedData (googleapis/google-cloudevents, google/events/cloud/pubsub/v1/data.proto):
# the CloudEvent data; a raw push request body has the same shape.
DATA_MESSAGE = "message"
# PubsubMessage fields in their JSON form (google/pubsub/v1/pubsub.proto); push requests
# carry both the camelCase and the snake_case spelling of the id.
MESSAGE_DATA = "data"
MESSAGE_ATTRIBUTES = "attributes"
MESSAGE_ID_FIELDS = ("messageId", "message_id")

# Attribute names of the attribute form (ours: CONTRACT §5), with the camelCase aliases of
# CONTRACT §2 so a publisher may spell them either way.
ATTR_TASK_TOKEN = ("task_token", "taskToken")
ATTR_WORKFLOW_ID = ("workflow_id", "workflowId")
ATTR_ACTIVITY_ID = ("activity_id", "activityId")
ATTR_RUN_ID = ("run_id", "runId")
ATTR_ACTION = ("action",)
_NAMING = (*ATTR_TASK_TOKEN, *ATTR_WORKFLOW_ID, *ATTR_ACTIVITY_ID, *ATTR_RUN_ID)

# Where the attribute form puts the decoded data, per action (CONTRACT §5).
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
    """

    message_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    data: bytes = b""
    problem: str | None = None

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
        for names in (ATTR_TASK_TOKEN, ATTR_WORKFLOW_ID, ATTR_ACTIVITY_ID, ATTR_RUN_ID):
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
        return "envelope"


def read_message(event: CloudEventLike) -> PubSubMessage:
    """Take the Pub/Sub message out of a ``messagePublished`` CloudEvent.

    Never raises: an event that is not a usable message comes back with ``problem`` set,
    and :meth:`PubSubMessage.completion_request` refuses it.
    """
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


class RecentCompletions:
    """Completions this instance carried out lately, to recognise a duplicate delivery.

    A redelivered or republished completion finds its activity already finished and the
    engine answers ``activity_not_found``; when this instance did that very completion it
    is a duplicate (acknowledge quietly), otherwise it is worth a dead letter.
    """

    def __init__(self, *, capacity: int = 10_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    @staticmethod
    def key(request: CompletionRequest) -> str:
        """A digest of the whole request (activity, action and payload)."""
        canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def remember(self, request: CompletionRequest) -> None:
        """Note a completion that succeeded."""
        key = self.key(request)
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self._capacity:
                self._keys.popitem(last=False)

    def __contains__(self, request: object) -> bool:
        if not isinstance(request, CompletionRequest):
            return False
        with self._lock:
            return self.key(request) in self._keys


class Completes(Protocol):
    """What :class:`PubSubCompleter` needs of a completion client (``ProcessClient`` fits)."""

    def execute(self, request: CompletionRequest) -> CompletionOutcome: ...


class PubSubCompleter:
    """The Pub/Sub function's logic: acknowledge by returning, ask for redelivery by raising.

    Success and permanent errors return (the message is acknowledged; permanent ones are
    logged and dead-lettered when a topic is configured). Transient errors raise, so Pub/Sub
    redelivers. A failed dead letter raises too: redelivery beats losing the message.
    """

    def __init__(self, client: Completes, *, dead_letters: DeadLetterTopic | None) -> None:
        self.client = client
        self.dead_letters = dead_letters
        self.recent = RecentCompletions()

    def handle(self, event: CloudEventLike) -> None:
        """Carry out the completion one Pub/Sub message asks for."""
        message = read_message(event)
        request: CompletionRequest | None = None
        fields: dict[str, Any] = {"message_id": message.message_id, "form": message.form}
        try:
            request = message.completion_request()
            fields.update(activity=describe_activity(request), action=request.action.value)
            outcome = self.client.execute(request)
        except TransientError as exc:
            logger.warning("message will be redelivered", extra=_log(fields, message, exc.code))
            raise
        except PermanentError as exc:
            if isinstance(exc, ActivityNotFound) and request in self.recent:
                fields["duplicate"] = True
                logger.info(
                    "duplicate delivery acknowledged", extra=_log(fields, message, exc.code)
                )
                return
            fields["reason"] = exc.message
            if self.dead_letters is not None:
                try:
                    fields["dead_letter_message_id"] = self.dead_letters.publish(
                        message.data,
                        message.attributes,
                        error=exc,
                        source_message_id=message.message_id,
                    )
                except InternalError:
                    logger.exception("dead letter failed", extra=_log(fields, message, exc.code))
                    raise
            logger.warning("message rejected", extra=_log(fields, message, exc.code))
            return
        self.recent.remember(request)
        logger.info("message handled", extra=_log(fields, message, outcome.status.value))


def _log(fields: dict[str, Any], message: PubSubMessage, outcome: str) -> dict[str, Any]:
    fields.setdefault("activity", message.describe_activity())
    return {"completer": {**fields, "outcome": outcome}}
