"""S3 uploads -> completion requests (CONTRACT §6).

One handler takes three event shapes, every record of each:

- S3 event notifications (``Records[].eventSource == "aws:s3"``), sent to Lambda directly;
- SQS events whose message bodies are S3 notifications (``s3:TestEvent`` bodies are ignored),
  S3 EventBridge events, or either of those inside an SNS envelope;
- EventBridge ``Object Created`` events.

Only object-created events complete anything. Each object's user metadata names the activity
(``task-token``, or ``workflow-id`` + ``activity-id`` [+ ``run-id``]) and may say ``action``;
the object is the action's payload. The first half of this module is pure (events and
metadata -> requests); :class:`S3Completer` reads the objects and calls the completion client.

Permanent problems are logged and never raised. Transient ones raise for direct and
EventBridge invocations (Lambda retries the event) and are named in ``batchItemFailures``
for SQS events (SQS redelivers only those messages).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, S3Event
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError

from completer.client import describe_activity
from completer.errors import (
    CompleterError,
    InternalError,
    InvalidRequest,
    TransientError,
)
from completer.events.objects import build_request, is_json_object, read_limit
from completer.models import CompletionOutcome, CompletionRequest, parse_json

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from completer.settings import Settings

__all__ = [
    "ObjectNotification",
    "S3Completer",
    "StoredObject",
    "build_request",
    "default_s3_client",
    "message_notifications",
    "object_notifications",
    "read_limit",
    "translate_s3_error",
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

_READ_CHUNK_BYTES = 64 * 1024


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

    # How an uploader sets the metadata (used in error messages of the content rules).
    metadata_header_prefix: ClassVar[str] = "x-amz-meta-"

    @property
    def is_json(self) -> bool:
        """Whether the object is JSON: by its Content-Type, or by a ``.json`` key."""
        return is_json_object(self.content_type, self.key)

    def reference(self) -> dict[str, Any]:
        """The result for an object that is not passed inline (CONTRACT §6)."""
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
        )
    ]


def _log_ignored(event_name: str, bucket: str, key: str) -> None:
    logger.info(
        "event ignored: not an object-created event",
        extra={"completer": {"event": event_name, "bucket": bucket, "key": unquote_plus(key)}},
    )


# The content rules (object -> completion request) are shared with Cloud Storage:
# completer.events.objects (action_of, read_limit, build_request).


# --- reading objects and completing ---------------------------------------------------------


class ObjectUnreadable(InvalidRequest):
    """The object an event names cannot be read: deleted, replaced, or access denied."""


class StorageUnavailable(InternalError):
    """S3 failed or throttled the read; a later try may succeed."""


class Completes(Protocol):
    """What :class:`S3Completer` needs of a completion client (``SyncCompletionClient`` fits)."""

    def execute(self, request: CompletionRequest, /) -> CompletionOutcome:
        """Carry out one completion request; raise a CompleterError when it cannot."""
        ...


# S3 error codes and statuses (S3 API reference, ErrorResponses; HeadObject answers with the
# bare status) that mean the object the event named is not there any more.
_GONE_CODES = frozenset(
    {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "NotFound", "404", "MethodNotAllowed", "405"}
)
# GetObject with If-Match after the key was overwritten between HeadObject and GetObject.
_REPLACED_CODES = frozenset({"PreconditionFailed", "412"})
_DENIED_CODES = frozenset({"AccessDenied", "Forbidden", "403"})
# Throttling and timeouts are worth retrying even though S3 answers them with 4xx statuses.
_RETRY_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded"}
)


def translate_s3_error(exc: Exception, uri: str) -> CompleterError:
    """The one place where S3's errors become ours: permanent unless a retry can help."""
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(f"S3 could not be reached to read {uri} ({type(exc).__name__}).")
    if not isinstance(exc, ClientError):
        return InternalError(f"unexpected error reading {uri} ({type(exc).__name__}).")
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if status >= 500 or code in _RETRY_CODES:
        return StorageUnavailable(f"S3 answered {code or status} reading {uri}; retry.")
    if code in _GONE_CODES:
        return ObjectUnreadable(f"{uri} is gone (deleted before it was read).")
    if code in _REPLACED_CODES:
        return ObjectUnreadable(f"{uri} was replaced before it was read; its new upload counts.")
    if code in _DENIED_CODES:
        return ObjectUnreadable(
            f"access to {uri} is denied: the function needs s3:GetObject (and "
            "s3:GetObjectVersion on versioned buckets) on it."
        )
    return ObjectUnreadable(f"S3 refused to read {uri} ({code or status}).")


_s3_client: S3Client | None = None
_s3_client_lock = threading.Lock()


def default_s3_client() -> S3Client:
    """The process's S3 client, created on first use and reused by every invocation.

    Region, endpoint (``AWS_ENDPOINT_URL_S3``) and credentials come from boto3's standard
    environment.
    """
    global _s3_client
    if _s3_client is None:
        with _s3_client_lock:
            if _s3_client is None:
                import boto3
                from botocore.config import Config

                _s3_client = boto3.client(
                    "s3",
                    config=Config(
                        retries={"mode": "standard", "max_attempts": 3},
                        connect_timeout=5,
                        read_timeout=30,
                    ),
                )
    return _s3_client


class S3Completer:
    """Completes activities from S3 uploads; an instance is the Lambda handler.

    Args:
        settings: The completer's settings (the inline limit and the payload limit).
        client: The completion client.
        s3: An S3 client; by default the process's one, created on first use.
    """

    def __init__(
        self, *, settings: Settings, client: Completes, s3: S3Client | None = None
    ) -> None:
        self.settings = settings
        self.client = client
        self._s3 = s3

    @property
    def s3(self) -> S3Client:
        """The S3 client objects are read with."""
        if self._s3 is None:
            self._s3 = default_s3_client()
        return self._s3

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any] | None:
        """Handle one Lambda invocation.

        Returns:
            For SQS events ``{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}``
            naming the messages that failed transiently; otherwise None.

        Raises:
            TransientError: A direct S3 or EventBridge event had an object that failed
                transiently (after every other object was handled), so Lambda retries it.
        """
        request_id = getattr(context, "aws_request_id", None)
        if is_sqs_event(event):
            return self._handle_messages(event, request_id)
        try:
            notifications = object_notifications(event)
        except InvalidRequest as exc:
            _log_refused(exc, {"aws_request_id": request_id})
            return None
        _raise_first(self._complete_all(notifications, request_id))
        return None

    def _handle_messages(self, event: Mapping[str, Any], request_id: str | None) -> dict[str, Any]:
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

        def complete_message(record: SQSRecord) -> None:
            where = {"aws_request_id": request_id, "message_id": record.message_id}
            try:
                notifications = message_notifications(record.body)
            except InvalidRequest as exc:
                _log_refused(exc, where)
                return
            # Raising makes BatchProcessor name this message in batchItemFailures.
            _raise_first(self._complete_all(notifications, request_id, extra=where))

        # BatchProcessor hands each record over as powertools' SQSRecord data class.
        response = process_partial_response(
            event=dict(event), record_handler=complete_message, processor=processor
        )
        return dict(response)

    def _complete_all(
        self,
        notifications: Iterable[ObjectNotification],
        request_id: str | None,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> list[TransientError]:
        failures = []
        for notification in notifications:
            try:
                self.complete_object(notification, request_id=request_id, extra=extra)
            except TransientError as exc:
                failures.append(exc)
        return failures

    def complete_object(
        self,
        notification: ObjectNotification,
        *,
        request_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Read one created object and carry out the completion it makes.

        Returns:
            The outcome: a success status (``completed``, ...) or the code of the permanent
            error that was logged (``invalid_request``, ``activity_not_found``, ...).

        Raises:
            TransientError: Reading the object or calling the engine may succeed later.
        """
        fields: dict[str, Any] = {
            "bucket": notification.bucket,
            "key": notification.key,
            "version_id": notification.version_id,
            "sequencer": notification.sequencer,
            "event": notification.event_name,
            "aws_request_id": request_id,
            **(extra or {}),
        }
        try:
            obj = self._head(notification)
            fields["version_id"] = obj.version_id
            limit = read_limit(
                obj,
                inline_max_bytes=self.settings.s3_inline_max_bytes,
                payload_max_bytes=self.settings.max_payload_bytes,
            )
            content = None if limit is None else self._read(obj, limit)
            request = build_request(
                obj,
                content,
                inline_max_bytes=self.settings.s3_inline_max_bytes,
                payload_max_bytes=self.settings.max_payload_bytes,
            )
            fields.update(activity=describe_activity(request), action=request.action.value)
            outcome = self.client.execute(request)
        except CompleterError as exc:
            _log_refused(exc, fields)
            if exc.transient:
                raise
            return exc.code
        except Exception as exc:
            # A bug must not drop the upload silently: treat it as transient, so it is retried.
            logger.exception(
                "completion failed unexpectedly",
                extra={"completer": {**fields, "outcome": InternalError.code}},
            )
            raise InternalError(f"unexpected error completing from {notification.uri}.") from exc
        logger.info(
            "upload carried out",
            extra={"completer": {**fields, **outcome.to_dict(), "outcome": outcome.status.value}},
        )
        return outcome.status.value

    def _head(self, notification: ObjectNotification) -> StoredObject:
        try:
            if notification.version_id is None:
                head = self.s3.head_object(Bucket=notification.bucket, Key=notification.key)
            else:
                head = self.s3.head_object(
                    Bucket=notification.bucket,
                    Key=notification.key,
                    VersionId=notification.version_id,
                )
        except (ClientError, BotoCoreError) as exc:
            raise translate_s3_error(exc, notification.uri) from exc
        return StoredObject(
            bucket=notification.bucket,
            key=notification.key,
            version_id=head.get("VersionId") or notification.version_id,
            metadata={name.lower(): value for name, value in head.get("Metadata", {}).items()},
            size=int(head.get("ContentLength", 0)),
            etag=str(head.get("ETag", "")).strip('"'),
            content_type=head.get("ContentType") or None,
        )

    def _read(self, obj: StoredObject, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of the object, so that 'over the limit' is visible."""
        try:
            if obj.version_id is not None:
                response = self.s3.get_object(
                    Bucket=obj.bucket, Key=obj.key, VersionId=obj.version_id
                )
            else:
                # Unversioned: make sure the content is the one HeadObject described.
                response = self.s3.get_object(
                    Bucket=obj.bucket, Key=obj.key, IfMatch=f'"{obj.etag}"'
                )
            body = response["Body"]
            chunks: list[bytes] = []
            remaining = limit + 1
            try:
                while remaining > 0:
                    chunk = body.read(min(_READ_CHUNK_BYTES, remaining))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    remaining -= len(chunk)
            finally:
                body.close()
        except (ClientError, BotoCoreError) as exc:
            raise translate_s3_error(exc, obj.uri) from exc
        return b"".join(chunks)


def _raise_first(failures: list[TransientError]) -> None:
    if failures:
        raise failures[0]


def _log_refused(exc: CompleterError, fields: Mapping[str, Any]) -> None:
    message = (
        "upload not completed; will be retried"
        if exc.transient
        else "upload not completed; acknowledged, not retried"
    )
    logger.warning(
        message,
        extra={"completer": {**fields, "outcome": exc.code, "reason": exc.message}},
    )
