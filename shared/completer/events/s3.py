"""S3 uploads -> completion requests (docs/triggers/s3.md).

One handler takes three event shapes, every record of each:

- S3 event notifications (``Records[].eventSource == "aws:s3"``), sent to Lambda directly;
- SQS events whose message bodies are S3 notifications (``s3:TestEvent`` bodies are ignored),
  S3 EventBridge events, or either of those inside an SNS envelope;
- EventBridge ``Object Created`` events.

Only object-created events complete anything. Each object's user metadata names the activity
(``task-token``, or ``workflow-id`` + ``activity-id`` [+ ``run-id``]) and may say ``action``;
the object is the action's payload. This module is pure (events and metadata -> requests);
:class:`completer.handlers.s3.S3Handler` reads the objects and executes the requests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, S3Event

from completer.errors import InvalidRequest
from completer.events.objects import (
    META_ACTION,
    META_ACTIVITY_ID,
    META_RUN_ID,
    META_TASK_TOKEN,
    META_WORKFLOW_ID,
    action_of,
    build_request,
    read_limit,
)
from completer.models import parse_json

__all__ = [
    "META_ACTION",
    "META_ACTIVITY_ID",
    "META_RUN_ID",
    "META_TASK_TOKEN",
    "META_WORKFLOW_ID",
    "ObjectNotification",
    "StoredObject",
    "action_of",
    "build_request",
    "is_sqs_event",
    "message_notifications",
    "object_notifications",
    "read_limit",
]

logger = logging.getLogger("completer.s3")

# Lambda event records: `eventSource` of S3 notifications (S3 user guide,
# notification-content-structure) and of Lambda's SQS event source (Lambda with-sqs).
S3_EVENT_SOURCE = "aws:s3"
SQS_EVENT_SOURCE = "aws:sqs"
# `eventName` of every object-created S3 notification: ObjectCreated:Put, :Post, :Copy,
# :CompleteMultipartUpload (S3 user guide, notification-how-to-event-types-and-destinations).
OBJECT_CREATED_PREFIX = "ObjectCreated:"
# The body S3 sends to a queue when a notification is configured: {"Event": "s3:TestEvent"}.
TEST_EVENT_FIELD = "Event"
TEST_EVENT = "s3:TestEvent"
# S3 events on EventBridge: `source` and the `detail-type` of uploads (S3 user guide, ev-events).
EVENTBRIDGE_S3_SOURCE = "aws.s3"
EVENTBRIDGE_OBJECT_CREATED = "Object Created"
# An SNS message delivered to SQS without raw message delivery wraps the S3 event in `Message`.
SNS_TYPE_FIELD = "Type"
SNS_NOTIFICATION = "Notification"
SNS_MESSAGE_FIELD = "Message"


@dataclass(frozen=True, slots=True)
class ObjectNotification:
    """One created object named by an event.

    Attributes:
        bucket: The bucket name.
        key: The object key, URL-decoded.
        version_id: The version the event names (versioned buckets), else None.
        sequencer: S3's ordering value for events of one key, when the event has it.
        event_name: What happened, as the event says it (``ObjectCreated:Put``, ``Object Created``).
    """

    bucket: str
    key: str
    version_id: str | None = None
    sequencer: str | None = None
    event_name: str = ""
    record: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The notification record (or EventBridge event) as received, for the dead letter."""

    @property
    def uri(self) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What HeadObject says about an object: its metadata and how to reach its content.

    Attributes:
        bucket: The bucket name.
        key: The object key.
        version_id: The object's version (None in a bucket that never had versioning).
        metadata: User metadata, names lowercased (S3 returns them so).
        size: Content length in bytes.
        etag: The ETag without its quotes.
        content_type: The Content-Type it was uploaded with, if any.
    """

    bucket: str
    key: str
    version_id: str | None
    metadata: Mapping[str, str]
    size: int
    etag: str
    content_type: str | None

    @property
    def uri(self) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{self.key}"

    # How an uploader sets the metadata (the content rules name it in their refusals).
    metadata_header_prefix: ClassVar[str] = "x-amz-meta-"

    def reference(self) -> dict[str, Any]:
        """The result for an object that is not passed inline (docs/triggers/s3.md)."""
        return {
            "uri": self.uri,
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "size": self.size,
            "etag": self.etag,
            "content_type": self.content_type,
        }


# --- events -> notifications (pure) ---------------------------------------------------------


def is_sqs_event(event: Mapping[str, Any]) -> bool:
    """Whether a Lambda event is a batch of SQS messages."""
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(
            isinstance(r, Mapping) and r.get("eventSource") == SQS_EVENT_SOURCE for r in records
        )
    )


def object_notifications(event: Mapping[str, Any]) -> list[ObjectNotification]:
    """The created objects an S3 notification or an S3 EventBridge event names, in order.

    Records that are not object-created events (deletions, restores, tagging, other
    sources) are left out.

    Raises:
        InvalidRequest: The event is neither an S3 notification nor an S3 EventBridge event.
    """
    try:
        if isinstance(event.get("Records"), list):
            return _notification_records(event)
        if "detail-type" in event:
            return _eventbridge_object(event)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidRequest(f"the event is not a well-formed S3 event ({exc!r}).") from exc
    raise InvalidRequest("the event is neither an S3 notification nor an S3 EventBridge event.")


def message_notifications(body: str) -> list[ObjectNotification]:
    """The created objects an SQS message body names; none for S3's ``s3:TestEvent``.

    Raises:
        InvalidRequest: The body is not JSON, or not an S3 event (also inside SNS).
    """
    content = parse_json(body, what="the SQS message body")
    if not isinstance(content, Mapping):
        raise InvalidRequest("the SQS message body is not an S3 event.")
    if content.get(TEST_EVENT_FIELD) == TEST_EVENT:
        return []
    if content.get(SNS_TYPE_FIELD) == SNS_NOTIFICATION and isinstance(
        content.get(SNS_MESSAGE_FIELD), str
    ):
        content = parse_json(content[SNS_MESSAGE_FIELD], what="the SNS message")
        if not isinstance(content, Mapping):
            raise InvalidRequest("the SNS message in the SQS body is not an S3 event.")
        if content.get(TEST_EVENT_FIELD) == TEST_EVENT:
            return []
    return object_notifications(content)


def _notification_records(event: Mapping[str, Any]) -> list[ObjectNotification]:
    notifications = []
    for record in S3Event(dict(event)).records:
        if record.get("eventSource") != S3_EVENT_SOURCE:
            logger.info(
                "record ignored: not an S3 notification",
                extra={"completer": {"event_source": str(record.get("eventSource"))}},
            )
            continue
        event_name = record.event_name.removeprefix("s3:")
        s3 = record.s3
        if not event_name.startswith(OBJECT_CREATED_PREFIX):
            _log_ignored(event_name, s3.bucket.name, s3.get_object.key)
            continue
        obj = s3.get_object
        notifications.append(
            ObjectNotification(
                bucket=s3.bucket.name,
                # S3 URL-encodes keys in notifications, a space as '+'.
                key=unquote_plus(obj.key),
                version_id=obj.get("versionId") or None,
                sequencer=obj.get("sequencer") or None,
                event_name=event_name,
                record=record.raw_event,
            )
        )
    return notifications


def _eventbridge_object(event: Mapping[str, Any]) -> list[ObjectNotification]:
    envelope = EventBridgeEvent(dict(event))
    detail = envelope.detail
    bucket, raw_key = detail["bucket"]["name"], detail["object"]["key"]
    if envelope.source != EVENTBRIDGE_S3_SOURCE or envelope.detail_type != (
        EVENTBRIDGE_OBJECT_CREATED
    ):
        _log_ignored(f"{envelope.source}: {envelope.detail_type}", bucket, raw_key)
        return []
    obj = detail["object"]
    return [
        ObjectNotification(
            bucket=bucket,
            key=unquote_plus(raw_key),
            version_id=obj.get("version-id") or None,
            sequencer=obj.get("sequencer") or None,
            event_name=EVENTBRIDGE_OBJECT_CREATED,
            record=dict(event),
        )
    ]


def _log_ignored(event_name: str, bucket: str, key: str) -> None:
    logger.info(
        "event ignored: not an object-created event",
        extra={"completer": {"event": event_name, "bucket": bucket, "key": unquote_plus(key)}},
    )
