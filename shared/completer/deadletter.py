"""Dead letters: where events that can never succeed are kept for a person to look at.

- :class:`DeadLetterTopic` republishes a rejected Pub/Sub message to
  ``COMPLETER_DEAD_LETTER_TOPIC`` with its data and attributes and why it was rejected.
  ``google-cloud-pubsub`` is imported only when a topic is configured, and its client is
  created on the first dead letter, after any fork of the server. It honours
  ``PUBSUB_EMULATOR_HOST`` by itself.
- :class:`DeadLetterQueue` sends a refused upload to ``COMPLETER_DEAD_LETTER_QUEUE`` (an SQS
  queue URL) as ``{"source", "version_id", "error": {"code", "message"}, "event"}``.

Both are blocking calls: the async handlers run them in a thread.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from completer.errors import CompleterError, ConfigurationError, InternalError

if TYPE_CHECKING:
    from google.pubsub_v1 import PublisherClient
    from mypy_boto3_sqs import SQSClient

    from completer.settings import Settings

__all__ = [
    "ATTR_ERROR_CODE",
    "ATTR_ERROR_MESSAGE",
    "ATTR_SOURCE_MESSAGE_ID",
    "DeadLetterQueue",
    "DeadLetterTopic",
    "dead_letter_queue",
    "dead_letter_topic",
]

# Attributes added to a dead letter (docs/triggers/pubsub.md).
ATTR_ERROR_CODE = "completer_error_code"
ATTR_ERROR_MESSAGE = "completer_error_message"
ATTR_SOURCE_MESSAGE_ID = "completer_source_message_id"

# Pub/Sub limit on an attribute value (cloud.google.com/pubsub/quotas#resource_limits).
MAX_ATTRIBUTE_VALUE_BYTES = 1024

# Inside the push ack deadline (10 s by default): a slow dead letter is retried by redelivery.
PUBLISH_TIMEOUT_SECONDS = 8.0


class DeadLetterTopic:
    """A Pub/Sub topic that receives rejected messages; its client is made on first use."""

    def __init__(self, topic: str, *, timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        self.topic = topic
        self.timeout = timeout
        self._client: PublisherClient | None = None
        self._lock = threading.Lock()

    def _publisher(self) -> PublisherClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from google.pubsub_v1 import PublisherClient

                    self._client = PublisherClient()
        return self._client

    def publish(
        self,
        data: bytes,
        attributes: Mapping[str, str],
        *,
        error: CompleterError,
        source_message_id: str,
    ) -> str:
        """Republish a rejected message with the reason it was rejected.

        Returns:
            The dead letter's message id.

        Raises:
            InternalError: The dead letter could not be published (transient: redeliver the
                original rather than lose it).
        """
        from google.api_core import retry

        dead_attributes = {
            **attributes,
            ATTR_ERROR_CODE: error.code,
            ATTR_ERROR_MESSAGE: _truncate(error.message, MAX_ATTRIBUTE_VALUE_BYTES),
            ATTR_SOURCE_MESSAGE_ID: source_message_id,
        }
        try:
            response = self._publisher().publish(
                request={
                    "topic": self.topic,
                    "messages": [{"data": data, "attributes": dead_attributes}],
                },
                retry=retry.Retry(timeout=self.timeout, predicate=retry.if_transient_error),
                timeout=self.timeout,
            )
        except Exception as exc:
            raise InternalError(
                f"the message could not be dead-lettered to {self.topic} "
                f"({type(exc).__name__}); it will be redelivered."
            ) from exc
        return str(response.message_ids[0])


def dead_letter_topic(settings: Settings) -> DeadLetterTopic | None:
    """The configured dead-letter topic, or None when ``COMPLETER_DEAD_LETTER_TOPIC`` is unset.

    Raises:
        ConfigurationError: A topic is set but google-cloud-pubsub is not installed.
    """
    if settings.dead_letter_topic is None:
        return None
    if importlib.util.find_spec("google.pubsub_v1") is None:
        raise ConfigurationError(
            "COMPLETER_DEAD_LETTER_TOPIC is set but google-cloud-pubsub is not installed: "
            "pip install google-cloud-pubsub."
        )
    return DeadLetterTopic(settings.dead_letter_topic)


class DeadLetterQueue:
    """An SQS queue that receives refused uploads; its client is made on first use."""

    def __init__(self, queue_url: str, *, sqs: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = sqs
        self._lock = threading.Lock()

    def _sqs(self) -> SQSClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client(
                        "sqs",
                        config=Config(
                            retries={"mode": "standard", "max_attempts": 3},
                            connect_timeout=5,
                            read_timeout=10,
                        ),
                    )
        return self._client

    def send(
        self,
        *,
        source: str,
        version_id: str | None,
        error: CompleterError,
        event: Mapping[str, Any],
    ) -> str:
        """Send one refused upload with the reason it was refused.

        Returns:
            The SQS message id of the dead letter.

        Raises:
            InternalError: It could not be sent (transient: the upload's event is retried
                rather than lost).
        """
        body = {
            "source": source,
            "version_id": version_id,
            "error": {"code": error.code, "message": error.message},
            "event": event,
        }
        try:
            response = self._sqs().send_message(
                QueueUrl=self.queue_url, MessageBody=json.dumps(body, default=str)
            )
        except Exception as exc:
            raise InternalError(
                f"the upload could not be dead-lettered ({type(exc).__name__}); it will be retried."
            ) from exc
        return str(response["MessageId"])


def dead_letter_queue(settings: Settings) -> DeadLetterQueue | None:
    """The configured dead-letter queue, or None when ``COMPLETER_DEAD_LETTER_QUEUE`` is unset."""
    if settings.dead_letter_queue is None:
        return None
    return DeadLetterQueue(settings.dead_letter_queue)


def _truncate(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."
