"""Eventarc for the local stack: a finished upload in the emulator -> the CloudEvent it sends.

No local Eventarc exists, and gcp-storage-emulator sends no notifications. The local stack
therefore looks at the bucket (:func:`new_finalized_events`) and posts, for every new object
generation, the ``google.cloud.storage.object.v1.finalized`` CloudEvent Eventarc would
deliver (:func:`deliver`), in binary content mode as Eventarc does, or structured. The event's
data is the object's JSON API resource, which is the ``StorageObjectData`` Eventarc sends.
``python -m completer.dev.gcs_events`` (:func:`poll`) is the process ``completer dev`` runs in
Eventarc's place, retrying a failed delivery as Eventarc does.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from completer.events.gcs import FINALIZED_EVENT_TYPE

if TYPE_CHECKING:
    from google.cloud.storage import Client

__all__ = ["binary_request", "deliver", "finalized_event", "main", "new_finalized_events", "poll"]

# CloudEvent `source` of Cloud Storage events (Eventarc's storage event reference).
SOURCE_FORMAT = "//storage.googleapis.com/projects/_/buckets/{bucket}"
SUBJECT_FORMAT = "objects/{name}"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


def finalized_event(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The structured CloudEvent Eventarc sends when this object generation is finalized.

    Args:
        resource: The object's JSON API resource (``Blob._properties`` after an upload or
            ``reload()``, or an item of an objects list).

    Returns:
        A structured-mode CloudEvent (``specversion``, ``type``, ``id``, ... and ``data``).
        Its ``id`` is the same for the same generation, as Eventarc keeps it across retries.
    """
    bucket, name = str(resource["bucket"]), str(resource["name"])
    generation = str(resource["generation"])
    digest = hashlib.sha256(f"{bucket}/{name}#{generation}".encode()).digest()
    return {
        "specversion": "1.0",
        "type": FINALIZED_EVENT_TYPE,
        "source": SOURCE_FORMAT.format(bucket=bucket),
        "subject": SUBJECT_FORMAT.format(name=name),
        # Eventarc's ids are decimal numbers; this one is stable for one generation.
        "id": str(int.from_bytes(digest[:7], "big")),
        "time": str(resource.get("updated") or datetime.now(UTC).isoformat()),
        "datacontenttype": "application/json",
        "bucket": bucket,
        "data": dict(resource),
    }


def binary_request(event: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """The HTTP headers and body of ``event`` in binary content mode (as Eventarc posts)."""
    headers = {
        f"ce-{name}": str(value)
        for name, value in event.items()
        if name not in {"data", "datacontenttype"}
    }
    headers["Content-Type"] = str(event.get("datacontenttype", "application/json"))
    return headers, json.dumps(event["data"]).encode("utf-8")


def deliver(
    url: str,
    event: Mapping[str, Any],
    *,
    mode: Literal["binary", "structured"] = "binary",
    timeout: float = 30.0,
) -> int:
    """POST ``event`` to a CloudEvent function; returns the HTTP status (2xx: acknowledged)."""
    if mode == "binary":
        headers, body = binary_request(event)
    else:
        headers = {"Content-Type": STRUCTURED_CONTENT_TYPE}
        body = json.dumps(dict(event)).encode("utf-8")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url!r}")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        # The scheme is checked above: only http(s), never file:.
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  # nosec B310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def new_finalized_events(
    client: Client, bucket: str, seen: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Events for the object generations in ``bucket`` not in ``seen`` (which is updated).

    Args:
        client: A storage client (on the emulator: ``STORAGE_EMULATOR_HOST``).
        bucket: The bucket the function would be triggered by.
        seen: ``(name, generation)`` pairs already sent; the new ones are added.
    """
    events = []
    for blob in client.list_blobs(bucket):
        key = (str(blob.name), str(blob.generation))
        if key not in seen:
            seen.add(key)
            events.append(finalized_event(blob._properties))
    return events


# --- the poller the local stack runs in Eventarc's place -------------------------------------

# Eventarc retries an event whose delivery failed with an exponential backoff; the local
# stack does the same, within a bound, and then says it gave up.
RETRY_BACKOFF_SECONDS = (2.0, 4.0, 8.0, 16.0, 30.0)
POLL_INTERVAL_SECONDS = 0.5


@dataclass
class _Pending:
    event: dict[str, Any]
    attempts: int = 0
    due: float = 0.0


def poll(
    client: Client,
    bucket: str,
    url: str,
    *,
    stop: threading.Event,
    interval: float = POLL_INTERVAL_SECONDS,
    say: Callable[[str], None] = print,
) -> None:
    """Deliver a finalized event to ``url`` for every new object generation until ``stop``.

    Objects already in the bucket when it starts count as new. A delivery answered with
    anything but 2xx is retried with Eventarc's backoff (:data:`RETRY_BACKOFF_SECONDS`),
    then dropped with a message.
    """
    seen: set[tuple[str, str]] = set()
    pending: list[_Pending] = []
    while not stop.is_set():
        try:
            pending += [_Pending(e) for e in new_finalized_events(client, bucket, seen)]
        except Exception as exc:  # noqa: BLE001 - the emulator may be starting or stopping
            say(f"listing gs://{bucket} failed ({type(exc).__name__}); trying again")
        now = time.monotonic()
        for item in [p for p in pending if p.due <= now]:
            name = item.event["data"]["name"]
            try:
                status = deliver(url, item.event)
            except OSError as exc:
                status, why = 0, type(exc).__name__
            else:
                why = f"HTTP {status}"
            if 200 <= status < 300:
                say(f"gs://{bucket}/{name}: event {item.event['id']} delivered")
                pending.remove(item)
                continue
            if item.attempts >= len(RETRY_BACKOFF_SECONDS):
                say(
                    f"gs://{bucket}/{name}: event {item.event['id']} not delivered ({why}); gave up"
                )
                pending.remove(item)
                continue
            item.due = now + RETRY_BACKOFF_SECONDS[item.attempts]
            item.attempts += 1
            say(f"gs://{bucket}/{name}: event {item.event['id']} answered {why}; will retry")
        stop.wait(interval)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m completer.dev.gcs_events --bucket B --url URL``: Eventarc for the local stack.

    The storage client reaches the emulator through ``STORAGE_EMULATOR_HOST``.
    """
    import argparse

    from google.cloud.storage import Client

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bucket", required=True, help="the bucket the trigger watches")
    parser.add_argument("--url", required=True, help="the Cloud Storage function's URL")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client = Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local-project"))
    poll(client, args.bucket, args.url, stop=stop, say=lambda text: print(text, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
