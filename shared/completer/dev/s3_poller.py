"""Lambda's SQS event source, for the local stack: poll a queue, invoke the S3 handler.

``python -m completer.dev.s3_poller --queue-url URL --handler functions/s3/main.py``
receives the S3 notifications moto sends to the queue, hands each batch to
``handler(event, context)`` as an SQS event (``ReportBatchItemFailures`` on), deletes the
messages that are not named in ``batchItemFailures``, and makes the named ones visible
again after a short delay (Lambda waits for the queue's visibility timeout). A raised
error returns the whole batch, as on Lambda. AWS settings come from the environment.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import boto3

__all__ = ["main", "sqs_event"]

logger = logging.getLogger("completer.dev.s3_poller")

RETRY_DELAY_SECONDS = 3
BATCH_SIZE = 10


def sqs_event(messages: Sequence[dict[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """Received SQS messages as Lambda's SQS event source hands them to a function."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class _Context:
    """The few Lambda context attributes handlers read."""

    function_name = "activity-completer-s3"
    memory_limit_in_mb = 512

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + 60

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _load_handler(path: Path) -> Callable[[dict[str, Any], Any], Any]:
    spec = importlib.util.spec_from_file_location("s3_function_main", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Callable[[dict[str, Any], Any], Any] = module.handler
    return handler


def _poll_once(sqs: Any, handler: Callable[..., Any], queue_url: str, queue_arn: str) -> None:
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=BATCH_SIZE,
        WaitTimeSeconds=1,
        VisibilityTimeout=60,
        AttributeNames=["All"],
    )
    messages: list[dict[str, Any]] = response.get("Messages", [])
    if not messages:
        return
    region = sqs.meta.region_name
    failed: set[str]
    try:
        answer = handler(sqs_event(messages, queue_arn=queue_arn, region=region), _Context())
        failures = (answer or {}).get("batchItemFailures", [])
        failed = {item["itemIdentifier"] for item in failures}
    except Exception as exc:  # noqa: BLE001 - as on Lambda: an error returns the whole batch
        logger.warning("handler raised %s: the batch returns to the queue", type(exc).__name__)
        failed = {m["MessageId"] for m in messages}
    for message in messages:
        if message["MessageId"] in failed:
            sqs.change_message_visibility(
                QueueUrl=queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=RETRY_DELAY_SECONDS,
            )
        else:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    print(
        json.dumps({"message": "batch handled", "records": len(messages), "failed": len(failed)}),
        file=sys.stderr,
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m completer.dev.s3_poller``."""
    parser = argparse.ArgumentParser(prog="completer.dev.s3_poller", description=__doc__)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--handler", type=Path, required=True, help="functions/s3/main.py")
    args = parser.parse_args(argv)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    handler = _load_handler(args.handler)
    sqs = boto3.client("sqs")
    queue_arn = sqs.get_queue_attributes(QueueUrl=args.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    print(json.dumps({"message": "polling", "queue": args.queue_url}), file=sys.stderr, flush=True)
    while not stopping:
        try:
            _poll_once(sqs, handler, args.queue_url, queue_arn)
        except Exception as exc:  # noqa: BLE001 - keep polling; the queue may come back
            logger.warning("polling failed: %s", type(exc).__name__)
            time.sleep(1)


if __name__ == "__main__":
    main()
