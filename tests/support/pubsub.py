"""The real Pub/Sub emulator from this machine's Google Cloud CLI, and admin clients for it.

The clients talk to the emulator over an explicit insecure channel, so the test process's
environment is left alone; the functions under test get ``PUBSUB_EMULATOR_HOST`` instead.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport
from google.pubsub_v1.types import PubsubMessage, ReceivedMessage

from tests.support.services import free_port, missing_service, running, wait_for_port

PROJECT = "completer-test"


def sdk_root() -> Path | None:
    """The installed Google Cloud CLI's SDK root, if any."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    try:
        done = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return Path(done.stdout.strip())


def emulator_binary() -> Path | None:
    """The emulator shipped with the installed Google Cloud CLI, if any."""
    root = sdk_root()
    if root is None:
        return None
    binary = root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    return binary if binary.exists() else None


@dataclass
class PubSubEmulator:
    """A running emulator and gapic clients bound to it."""

    host: str
    publisher: PublisherClient = field(init=False)
    subscriber: SubscriberClient = field(init=False)

    def __post_init__(self) -> None:
        self.publisher = PublisherClient(
            transport=PublisherGrpcTransport(channel=grpc.insecure_channel(self.host))
        )
        self.subscriber = SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(self.host))
        )

    def close(self) -> None:
        self.publisher.transport.close()
        self.subscriber.transport.close()

    def topic(self, prefix: str = "completions") -> str:
        """Create a fresh topic; returns its path."""
        name = f"projects/{PROJECT}/topics/{prefix}-{uuid.uuid4().hex[:10]}"
        self.publisher.create_topic(name=name)
        return name

    def push_subscription(self, topic: str, endpoint: str, *, max_backoff: int = 2) -> str:
        """A push subscription to ``endpoint`` that backs off between redeliveries."""
        name = f"projects/{PROJECT}/subscriptions/push-{uuid.uuid4().hex[:10]}"
        self.subscriber.create_subscription(
            request={
                "name": name,
                "topic": topic,
                "ack_deadline_seconds": 30,
                "push_config": {"push_endpoint": endpoint},
                # Without a retry policy the emulator redelivers a 5xx about once a second forever.
                "retry_policy": {
                    "minimum_backoff": {"seconds": 1},
                    "maximum_backoff": {"seconds": max_backoff},
                },
            }
        )
        return name

    def pull_subscription(self, topic: str) -> str:
        name = f"projects/{PROJECT}/subscriptions/pull-{uuid.uuid4().hex[:10]}"
        self.subscriber.create_subscription(request={"name": name, "topic": topic})
        return name

    def publish(self, topic: str, data: bytes = b"", **attributes: str) -> str:
        """Publish one message; returns its message id."""
        response = self.publisher.publish(
            topic=topic, messages=[PubsubMessage(data=data, attributes=attributes)]
        )
        return str(response.message_ids[0])

    def pull(self, subscription: str, *, wait: float = 10.0) -> list[ReceivedMessage]:
        """Pull and acknowledge what arrives within ``wait`` seconds (stops at the first batch)."""
        deadline = time.monotonic() + wait
        while True:
            response = self.subscriber.pull(
                request={"subscription": subscription, "max_messages": 100}, timeout=5
            )
            received = list(response.received_messages)
            if received:
                self.subscriber.acknowledge(
                    subscription=subscription, ack_ids=[m.ack_id for m in received]
                )
                return received
            if time.monotonic() > deadline:
                return []
            time.sleep(0.2)


@contextlib.contextmanager
def pubsub_emulator(tmp_dir: Path) -> Iterator[PubSubEmulator]:
    """Start the emulator on a free 127.0.0.1 port; kill its process group at the end."""
    binary = emulator_binary()
    if binary is None:
        missing_service(
            "the Pub/Sub emulator is not installed "
            "(gcloud components install pubsub-emulator, or apt google-cloud-cli-pubsub-emulator)"
        )
    if shutil.which("java") is None:
        missing_service("the Pub/Sub emulator needs Java, which is not installed")
    assert binary is not None
    port = free_port()
    argv = [str(binary), "--host=127.0.0.1", f"--port={port}"]
    with running(argv, log_path=tmp_dir / "pubsub-emulator.log") as process:
        # Java can take a while to start on a busy machine.
        wait_for_port(port, timeout=90, process=process)
        emulator = PubSubEmulator(host=f"127.0.0.1:{port}")
        try:
            yield emulator
        finally:
            emulator.close()
