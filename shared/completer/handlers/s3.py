"""The S3 trigger (a Lambda handler): read each uploaded object and execute its completion.

Parsing is :mod:`completer.events.s3`'s; what to do with an error is
:mod:`completer.handlers.disposition`'s:

- done (or a duplicate): acknowledged;
- transient (engine, S3 unavailable, access denied: the operator's to fix): direct and
  EventBridge invocations raise, so Lambda retries; SQS events name the message in
  ``batchItemFailures``, so SQS redelivers only it;
- permanent (no metadata, object gone, bad content, activity not found): acknowledged, and
  sent to ``COMPLETER_DEAD_LETTER_QUEUE`` when set (a failed send is retried instead).

The records of one invocation run concurrently, at most :data:`MAX_CONCURRENT_OBJECTS` objects
at once; S3 reads run in a bounded thread pool with the process's one boto3 client, so the
event loop never blocks on them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError

from completer.errors import CompleterError, InternalError, InvalidRequest
from completer.events.s3 import (
    ObjectNotification,
    StoredObject,
    build_request,
    is_sqs_event,
    message_notifications,
    object_notifications,
    read_limit,
)
from completer.handlers.disposition import Disposition, Verdict, judge, log_verdict
from completer.models import Origin

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from completer.deadletter import DeadLetterQueue
    from completer.executor import Executor
    from completer.models import CompletionOutcome
    from completer.settings import Settings

__all__ = [
    "MAX_CONCURRENT_OBJECTS",
    "ObjectAccessDenied",
    "ObjectUnreadable",
    "S3Handler",
    "StorageUnavailable",
    "default_s3_client",
    "translate_s3_error",
]

logger = logging.getLogger("completer.s3")

# Objects handled at once per invocation: an SQS batch (10 by default) runs whole; the S3
# client's connection pool and the read threads are sized to match.
MAX_CONCURRENT_OBJECTS = 16
_READ_CHUNK_BYTES = 64 * 1024
_T = TypeVar("_T")


class ObjectUnreadable(InvalidRequest):
    """The object an event names cannot be read: deleted or replaced."""


class StorageUnavailable(InternalError):
    """S3 failed or throttled the read; a later try may succeed."""


class ObjectAccessDenied(InternalError):
    """The function may not read the object: the operator's to fix, so retried, never dropped."""


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
        return ObjectAccessDenied(
            f"access to {uri} is denied: the function needs s3:GetObject (and "
            "s3:GetObjectVersion on versioned buckets) on it; the upload will be retried."
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
                        max_pool_connections=MAX_CONCURRENT_OBJECTS,
                    ),
                )
    return _s3_client


class S3Handler:
    """Completes activities from S3 uploads: ``await handle(event, context)`` per invocation.

    Args:
        executor: What carries out the completion requests.
        settings: The completer's settings (the inline limit and the payload limit).
        s3: An S3 client; by default the process's one, created on first use.
        dead_letters: Where permanently refused uploads go, or None.
    """

    def __init__(
        self,
        executor: Executor,
        *,
        settings: Settings,
        s3: S3Client | None = None,
        dead_letters: DeadLetterQueue | None = None,
    ) -> None:
        self.executor = executor
        self.settings = settings
        self.dead_letters = dead_letters
        self._s3 = s3
        self._threads = ThreadPoolExecutor(MAX_CONCURRENT_OBJECTS, thread_name_prefix="s3-read")
        self._bound: asyncio.Semaphore | None = None

    @property
    def s3(self) -> S3Client:
        """The S3 client objects are read with."""
        if self._s3 is None:
            self._s3 = default_s3_client()
        return self._s3

    async def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any] | None:
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
            return await self._handle_messages(event, request_id)
        where = {"aws_request_id": request_id}
        try:
            notifications = object_notifications(event)
        except InvalidRequest as exc:
            log_verdict(
                logger,
                "event not understood; acknowledged",
                _not_an_upload(exc),
                where,
                level=logging.WARNING,
            )
            return None
        failures = await self._complete_all(notifications, where)
        if failures:
            raise failures[0]
        return None

    async def _handle_messages(
        self, event: Mapping[str, Any], request_id: str | None
    ) -> dict[str, Any]:
        # powertools' AsyncBatchProcessor runs its own loop (asyncio.run outside Lambda), so it
        # cannot share this one; its partial-batch answer is this, the records as its SQSRecord.
        records = [SQSRecord(dict(raw)) for raw in event["Records"]]
        done = await asyncio.gather(*(self._complete_message(r, request_id) for r in records))
        failed = [r.message_id for r, ok in zip(records, done, strict=True) if not ok]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}

    async def _complete_message(self, record: SQSRecord, request_id: str | None) -> bool:
        where = {"aws_request_id": request_id, "message_id": record.message_id}
        try:
            notifications = message_notifications(record.body)
        except InvalidRequest as exc:
            log_verdict(logger, "message not understood; acknowledged", _not_an_upload(exc), where)
            return True
        return not await self._complete_all(notifications, where)

    async def _complete_all(
        self, notifications: list[ObjectNotification], where: Mapping[str, Any]
    ) -> list[CompleterError]:
        results = await asyncio.gather(
            *(self.complete_object(n, extra=where) for n in notifications),
            return_exceptions=True,
        )
        failures: list[CompleterError] = []
        for result in results:
            if isinstance(result, CompleterError):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result
        return failures

    async def complete_object(
        self, notification: ObjectNotification, *, extra: Mapping[str, Any] | None = None
    ) -> str:
        """Read one created object and carry out the completion it makes (one log line).

        Returns:
            The outcome: a success status (``completed``, ...) or the code of the permanent
            error that was logged (and dead-lettered when a queue is set).

        Raises:
            TransientError: Reading the object, calling the engine or dead-lettering may
                succeed later.
        """
        if self._bound is None:
            self._bound = asyncio.Semaphore(MAX_CONCURRENT_OBJECTS)
        fields: dict[str, Any] = {
            "bucket": notification.bucket,
            "key": notification.key,
            "version_id": notification.version_id,
            "sequencer": notification.sequencer,
            "event": notification.event_name,
            **(extra or {}),
        }
        result: CompletionOutcome | BaseException
        async with self._bound:
            try:
                result = await self._complete(notification, fields)
            except Exception as exc:  # noqa: BLE001 - the disposition policy decides
                result = exc
        verdict = judge(result)
        if verdict.disposition is Disposition.DEAD_LETTER:
            verdict = await self._dead_letter(notification, verdict, fields)
        cause = result if isinstance(result, BaseException) else None
        if not isinstance(result, BaseException):
            fields.update(result.to_dict())
        log_verdict(logger, _MESSAGES[verdict.disposition], verdict, fields, cause=cause)
        if verdict.disposition is Disposition.RETRY:
            assert verdict.error is not None
            if verdict.error is cause:
                raise verdict.error
            raise verdict.error from cause
        return verdict.outcome

    async def _complete(
        self, notification: ObjectNotification, fields: dict[str, Any]
    ) -> CompletionOutcome:
        obj = await self._in_thread(self._head, notification)
        fields["version_id"] = obj.version_id
        limit = read_limit(
            obj,
            inline_max_bytes=self.settings.s3_inline_max_bytes,
            payload_max_bytes=self.settings.max_payload_bytes,
        )
        content = None if limit is None else await self._in_thread(self._read, obj, limit)
        request = build_request(
            obj,
            content,
            inline_max_bytes=self.settings.s3_inline_max_bytes,
            payload_max_bytes=self.settings.max_payload_bytes,
            key_pattern=self.settings.s3_key,
        )
        fields.update(activity=request.describe_activity(), action=request.action.value)
        source = obj.uri if obj.version_id is None else f"{obj.uri}#{obj.version_id}"
        return await self.executor.execute(request, origin=Origin(trigger="s3", source=source))

    async def _dead_letter(
        self, notification: ObjectNotification, verdict: Verdict, fields: dict[str, Any]
    ) -> Verdict:
        queue, error = self.dead_letters, verdict.error
        if queue is None or error is None:
            return verdict
        try:
            fields["dead_letter_message_id"] = await self._in_thread(
                functools.partial(
                    queue.send,
                    source=notification.uri,
                    version_id=fields.get("version_id"),
                    error=error,
                    event=notification.record,
                )
            )
        except CompleterError as exc:
            # Retried rather than lost: the object's own outcome stays in the log line.
            fields["dead_letter_error"] = exc.message
            return Verdict(Disposition.RETRY, verdict.outcome, exc)
        return verdict

    async def _in_thread(self, function: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

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


def _not_an_upload(error: InvalidRequest) -> Verdict:
    # Not an S3 event at all: no object to dead-letter and nothing a retry could change.
    return replace(judge(error), disposition=Disposition.ACKNOWLEDGE)


_MESSAGES = {
    Disposition.ACKNOWLEDGE: "upload carried out",
    Disposition.RETRY: "upload not completed; will be retried",
    Disposition.DEAD_LETTER: "upload not completed; acknowledged, not retried",
}
