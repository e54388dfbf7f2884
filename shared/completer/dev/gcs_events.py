"""Eventarc for the local stack: a finished upload in the emulator -> the CloudEvent it sends.

No local Eventarc exists, and gcp-storage-emulator sends no notifications. The local stack
therefore looks at the bucket (:func:`new_finalized_events`) and posts, for every new object
generation, the ``google.cloud.storage.object.v1.finalized`` CloudEvent Eventarc would
deliver (:func:`deliver`), in binary content mode as Eventarc does, or structured. The event's
data is the object's JSON API resource, which is the ``StorageObjectData`` Eventarc sends.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from completer.events.gcs import FINALIZED_EVENT_TYPE

if TYPE_CHECKING:
    from google.cloud.storage import Client

__all__ = ["binary_request", "deliver", "finalized_event", "new_finalized_events"]

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
