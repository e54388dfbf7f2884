"""The Pub/Sub path (publish -> emulator push -> function -> completed activity) and the S3 path
(upload -> notification -> SQS batch -> handler -> completed activity), each beside the direct
client, plus the memory of both function processes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.config import Config
from temporalio.client import Client
from tests.support.services import free_port, running, venv_tool, wait_for_port

from bench.harness import (
    PUBSUB_MAIN,
    PYTHON,
    ROOT,
    S3_MAIN,
    base_env,
    direct_run,
    function_server,
    log_entries,
    memory_mib,
    ratio,
    wait_until,
)

Take = Callable[[int], list[bytes]]
REGION = "us-east-1"


# --- Pub/Sub ------------------------------------------------------------------------------


ACK_ONLY_MAIN = Path(__file__).resolve().parent / "ack_only" / "main.py"


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


def _completed_times(log: Path) -> list[float]:
    return [
        datetime.fromisoformat(e["time"]).timestamp()
        for e in log_entries(log)
        if e.get("outcome") == "completed"
    ]


async def _push_rate(
    emulator: Any, source: Path, env: dict[str, str], log: Path, tokens: list[bytes], warm: bytes
) -> tuple[int, float]:
    """Serve ``source``, push one message per token through the emulator; (handled, seconds)."""
    from google.pubsub_v1.types import PubsubMessage

    count = len(tokens)
    with function_server(source, env, log, cloudevent=True) as server:
        topic = emulator.topic("bench")
        emulator.push_subscription(topic, server.url)
        # One message through first: the push subscription and the worker are warm.
        emulator.publish(topic, b"", task_token=_b64(warm))
        if not await asyncio.to_thread(
            wait_until, lambda: len(_completed_times(log)) >= 1, timeout=60
        ):
            raise RuntimeError(f"the function handled nothing: {_tail(log)}")
        messages = [
            PubsubMessage(data=json.dumps({"n": n}).encode(), attributes={"task_token": _b64(t)})
            for n, t in enumerate(tokens)
        ]
        started = time.time()
        for first in range(0, len(messages), 100):
            await asyncio.to_thread(
                emulator.publisher.publish, topic=topic, messages=messages[first : first + 100]
            )
        if not await asyncio.to_thread(
            wait_until, lambda: len(_completed_times(log)) >= count + 1, timeout=120 + count / 10
        ):
            print(f"  ! only {len(_completed_times(log)) - 1} of {count} handled", flush=True)
        done = _completed_times(log)
    return len(done) - 1, max(done) - started


async def pubsub_path(
    client: Client,
    address: str,
    emulator: Any,
    take: Take,
    logs: Path,
    *,
    count: int,
    direct_concurrency: int,
) -> dict[str, Any]:
    """The Pub/Sub function fed by the emulator, beside the direct SDK and beside the same
    emulator pushing to a function that only acknowledges (the transport's own floor)."""
    tokens = take(count)
    delivered, elapsed = await _push_rate(
        emulator, PUBSUB_MAIN, base_env(address), logs / "pubsub-function.log", tokens, take(1)[0]
    )
    direct = await direct_run(client, take(count), concurrency=direct_concurrency)
    # The floor needs no engine: the same count of messages (their tokens are never used).
    acked, ack_elapsed = await _push_rate(
        emulator, ACK_ONLY_MAIN, base_env(address), logs / "pubsub-ack-only.log", tokens, tokens[0]
    )
    rate = delivered / elapsed if elapsed else 0.0
    ack_rate = acked / ack_elapsed if ack_elapsed else 0.0
    result = {
        "messages": count,
        "completed": delivered,
        "messages_per_s": round(rate, 1),
        "direct_per_s": direct.rate,
        "direct_concurrency": direct_concurrency,
        "ratio": ratio(rate, direct.rate),
        "ack_only_per_s": round(ack_rate, 1),
        "ratio_vs_ack_only": ratio(rate, ack_rate),
    }
    print(f"  pubsub {result}", flush=True)
    return result


def _b64(token: bytes) -> str:
    return base64.b64encode(token).decode()


# --- S3 -----------------------------------------------------------------------------------


@dataclass
class Moto:
    endpoint: str
    s3: Any
    sqs: Any

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }


@contextlib.contextmanager
def moto_server(logs: Path) -> Iterator[Moto]:
    """moto in server mode as its own process (its CPU is not the bench's)."""
    binary = venv_tool("moto_server")
    if binary is None:
        raise SystemExit("bench: moto[server] is not installed in .venv")
    port = free_port()
    argv = [binary, "-H", "127.0.0.1", "-p", str(port)]
    with running(argv, log_path=logs / "moto.log") as process:
        wait_for_port(port, timeout=60, process=process)
        endpoint = f"http://127.0.0.1:{port}"
        config = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 3})
        clients = {
            name: boto3.client(
                name,
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=config,
            )
            for name in ("s3", "sqs")
        }
        yield Moto(endpoint=endpoint, s3=clients["s3"], sqs=clients["sqs"])


@dataclass
class Uploads:
    """A bucket whose object notifications go to a queue, and the notifications received."""

    bucket: str
    queue_url: str
    queue_arn: str
    messages: dict[str, dict[str, Any]]


def make_uploads(moto: Moto, tokens: dict[str, bytes]) -> Uploads:
    """Upload one JSON object per key (its token in the metadata); collect each notification."""
    name = f"bench-{uuid.uuid4().hex[:10]}"
    queue_url = moto.sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = moto.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    moto.s3.create_bucket(Bucket=name)
    moto.s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    for n, (key, token) in enumerate(tokens.items()):
        moto.s3.put_object(
            Bucket=name,
            Key=key,
            Body=json.dumps({"n": n}).encode(),
            ContentType="application/json",
            Metadata={"task-token": _b64(token)},
        )
    messages: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60 + len(tokens) / 10
    while len(messages) < len(tokens) and time.monotonic() < deadline:
        answer = moto.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=900
        )
        for message in answer.get("Messages", []):
            body = json.loads(message["Body"])
            for record in body.get("Records", []):
                messages[unquote_plus(record["s3"]["object"]["key"])] = message
    if len(messages) < len(tokens):
        raise RuntimeError(f"moto sent {len(messages)} of {len(tokens)} notifications")
    return Uploads(bucket=name, queue_url=queue_url, queue_arn=queue_arn, messages=messages)


def sqs_event(uploads: Uploads, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Messages as Lambda's SQS event source hands them to a function."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": uploads.queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


class S3Driver:
    """functions/s3/main.py in its own process (bench/s3_driver.py), fed events on stdin."""

    def __init__(self, address: str, moto: Moto, log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "s3_driver.py"), str(S3_MAIN)],
            env=base_env(address, **moto.env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the S3 driver exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def s3_path_run(
    address: str,
    moto: Moto,
    uploads: Uploads,
    keys: Sequence[str],
    logs: Path,
    *,
    memory_counts: Sequence[int],
) -> dict[str, Any]:
    """Hand the notifications to the handler in SQS batches of 10 (Lambda's default)."""
    log = logs / "s3-function.log"
    driver = S3Driver(address, moto, log)
    try:
        batches = [
            sqs_event(uploads, [uploads.messages[k] for k in keys[i : i + 10]])
            for i in range(0, len(keys), 10)
        ]
        started = time.perf_counter()
        answers = [driver.handle(event) for event in batches]
        elapsed = time.perf_counter() - started
        failures = sum(len((a["answer"] or {}).get("batchItemFailures", [])) for a in answers)
        completed = sum(1 for e in log_entries(log) if e.get("outcome") == "completed")
        handled = len(keys)
        samples = []
        # Later deliveries of the same notifications: the tokens are already completed, so
        # each record reads the object and gets activity_not_found (logged, not retried).
        for target in memory_counts:
            while handled < target:
                event = batches[(handled // 10) % len(batches)]
                driver.handle(event)
                handled += len(event["Records"])
            samples.append({"completions": handled, **memory_mib(driver.process.pid)})
            print(f"  s3 memory {samples[-1]}", flush=True)
    finally:
        driver.close()
    return {
        "uploads": len(keys),
        "completed": completed,
        "batch_item_failures": failures,
        "uploads_per_s": round(len(keys) / elapsed, 1),
        "memory": samples,
    }


def s3_batch_run(
    address: str,
    moto: Moto,
    uploads: Uploads,
    singles: Sequence[str],
    batched: Sequence[str],
    logs: Path,
) -> dict[str, Any]:
    """One record per invocation against batches of 10, on one warm S3 function process.

    ``address`` is the engine behind a delaying proxy: with the records of a batch carried
    out concurrently, a batch takes about one record's time, not ten.
    """
    driver = S3Driver(address, moto, logs / "s3-batch-function.log")
    try:
        # The first invocation connects to the engine: not part of either measurement.
        driver.handle(sqs_event(uploads, [uploads.messages[singles[0]]]))
        single_runs = [
            driver.handle(sqs_event(uploads, [uploads.messages[k]])) for k in singles[1:]
        ]
        batch_runs = [
            driver.handle(sqs_event(uploads, [uploads.messages[k] for k in batched[i : i + 10]]))
            for i in range(0, len(batched), 10)
        ]
    finally:
        driver.close()
    single = [run["seconds"] for run in single_runs]
    batch = [run["seconds"] for run in batch_runs]
    # A record the handler reports for a retry did not complete: the timing would be a lie.
    failed = sum(len(run["answer"]["batchItemFailures"]) for run in single_runs + batch_runs)
    single_ms = statistics.median(single) * 1000
    batch_ms = statistics.median(batch) * 1000
    return {
        "single_record_ms": round(single_ms, 1),
        "batch_of_10_ms": round(batch_ms, 1),
        "ratio": round(batch_ms / single_ms, 2),
        "singles": len(single),
        "batches": len(batch),
        "failed_records": failed,
    }


async def s3_path(
    client: Client,
    address: str,
    moto: Moto,
    uploads: Uploads,
    keys: Sequence[str],
    take: Take,
    logs: Path,
    *,
    memory_counts: Sequence[int],
) -> dict[str, Any]:
    result = await asyncio.to_thread(
        s3_path_run, address, moto, uploads, keys, logs, memory_counts=memory_counts
    )
    direct = await direct_run(client, take(len(keys)), concurrency=1)
    result["direct_per_s"] = direct.rate
    result["direct_concurrency"] = 1
    result["ratio"] = ratio(result["uploads_per_s"], direct.rate)
    print(f"  s3 {result}", flush=True)
    return result
