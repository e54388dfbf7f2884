"""Cloud Storage uploads -> completion requests (see docs/triggers/gcs.md).

The Cloud Storage function takes the Eventarc CloudEvent
``google.cloud.storage.object.v1.finalized``, in binary or structured mode: functions-framework
hands both to a CloudEvent function as one ``cloudevents`` object whose ``data`` is the
``StorageObjectData`` (googleapis/google-cloudevents,
``proto/google/events/cloud/storage/v1/data.proto``, JSON names in lowerCamelCase; int64
fields such as ``generation`` and ``size`` may come as JSON strings).

The object's custom metadata in the event names the activity; the content rules are
:mod:`completer.events.objects`, shared with S3. Pure: no I/O, no storage or completion client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from completer.errors import InvalidRequest
from completer.events.objects import action_of, build_request, read_limit
from completer.models import parse_json

__all__ = [
    "FINALIZED_EVENT_TYPE",
    "CloudEventLike",
    "GcsObject",
    "action_of",
    "build_request",
    "event_id",
    "event_type",
    "finalized_object",
    "read_limit",
]

# CloudEvent `type` of a new object version (Eventarc, Cloud Storage direct events).
FINALIZED_EVENT_TYPE = "google.cloud.storage.object.v1.finalized"
# StorageObjectData JSON names (google-cloudevents data.proto, proto3 JSON mapping).
DATA_BUCKET = "bucket"
DATA_NAME = "name"
DATA_GENERATION = "generation"
DATA_SIZE = "size"
DATA_ETAG = "etag"
DATA_MD5_HASH = "md5Hash"
DATA_CONTENT_TYPE = "contentType"
DATA_METADATA = "metadata"
# A custom metadata header of the XML API; the JSON API and the event carry the bare name.
GCS_META_HEADER_PREFIX = "x-goog-meta-"


class CloudEventLike(Protocol):
    """What this module reads of a CloudEvent (``cloudevents.http.CloudEvent`` fits)."""

    @property
    def data(self) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class GcsObject:
    """One object generation a finalized event names.

    Attributes:
        bucket: The bucket name.
        name: The object name (its key).
        generation: The object generation, as decimal text (int64 in the API).
        size: Content length in bytes.
        etag: The object's ETag as the event gives it.
        content_type: The Content-Type it was uploaded with, if any.
        metadata: Custom metadata, names lowercased.
        md5_hash: Base64 MD5 of the content, when the event has it (not for composites).
    """

    bucket: str
    name: str
    generation: str
    size: int
    etag: str = ""
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    md5_hash: str | None = None

    metadata_header_prefix: ClassVar[str] = GCS_META_HEADER_PREFIX

    @property
    def key(self) -> str:
        """The object name (the content rules call it the key)."""
        return self.name

    @property
    def uri(self) -> str:
        """``gs://bucket/name``."""
        return f"gs://{self.bucket}/{self.name}"

    @property
    def source(self) -> str:
        """``gs://bucket/name#generation``: this very upload (the ledger's and logs' name)."""
        return f"{self.uri}#{self.generation}"

    def reference(self) -> dict[str, Any]:
        """The result for an object that is not passed inline."""
        return {
            "uri": self.uri,
            "bucket": self.bucket,
            "key": self.name,
            "generation": self.generation,
            "size": self.size,
            "etag": self.etag,
            "content_type": self.content_type,
        }


def event_type(event: CloudEventLike) -> str:
    """The CloudEvent's ``type`` ('' when absent)."""
    return str(event.get("type") or "")


def event_id(event: CloudEventLike) -> str:
    """The CloudEvent's ``id`` ('' when absent): the same for every retry of one event."""
    return str(event.get("id") or "")


def finalized_object(event: CloudEventLike) -> GcsObject | None:
    """The object a finalized event names, or None for another event type (ignored).

    Raises:
        InvalidRequest: The event's data is not a well-formed ``StorageObjectData``.
    """
    if event_type(event) != FINALIZED_EVENT_TYPE:
        return None
    data = event_data(event)
    try:
        bucket, name = data[DATA_BUCKET], data[DATA_NAME]
        generation = _int64(data[DATA_GENERATION], DATA_GENERATION)
        size = _int64(data.get(DATA_SIZE, 0), DATA_SIZE)
        metadata = data.get(DATA_METADATA) or {}
        if not isinstance(bucket, str) or not bucket or not isinstance(name, str) or not name:
            raise InvalidRequest("the event's bucket and name must be non-empty strings.")
        if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise InvalidRequest("the event's metadata must map strings to strings.")
        if not all(_is_utf8(text) for text in (bucket, name, *metadata, *metadata.values())):
            # Cloud Storage names are UTF-8; a lone surrogate could not even be logged.
            raise InvalidRequest("the event's bucket, name and metadata must be valid UTF-8.")
    except KeyError as exc:
        raise InvalidRequest(f"the storage event has no {exc.args[0]!r}.") from None
    content_type = data.get(DATA_CONTENT_TYPE)
    md5_hash = data.get(DATA_MD5_HASH)
    return GcsObject(
        bucket=bucket,
        name=name,
        generation=str(generation),
        size=size,
        etag=str(data.get(DATA_ETAG) or ""),
        content_type=content_type if isinstance(content_type, str) and content_type else None,
        # Names set through x-goog-meta- headers arrive lowercased; JSON API uploads keep
        # their case, so compare without it.
        metadata={k.lower(): v for k, v in metadata.items()},
        md5_hash=md5_hash if isinstance(md5_hash, str) and md5_hash else None,
    )


def event_data(event: CloudEventLike) -> Mapping[str, Any]:
    """The event's data as a mapping: already parsed, or JSON bytes/text.

    Raises:
        InvalidRequest: The data is not a JSON object.
    """
    data = event.data
    if isinstance(data, bytes | str):
        data = parse_json(data, what="the storage event's data")
    if not isinstance(data, Mapping):
        raise InvalidRequest("the storage event's data is not a JSON object.")
    return data


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _int64(value: Any, name: str) -> int:
    # proto3 JSON writes int64 as a string; Eventarc's examples use both forms.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidRequest(f"the event's {name} is not an integer.")
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) >= 2**63:
        raise InvalidRequest(f"the event's {name} is not a non-negative int64.")
    return int(text)
