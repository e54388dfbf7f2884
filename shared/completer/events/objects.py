"""Uploaded object -> completion request: the content rules S3 and Cloud Storage share.

An object's custom metadata names the activity (``task-token``, or ``workflow-id`` +
``activity-id`` [+ ``run-id``], or ``correlation-key``; without any, a configured key
pattern may take the correlation key from the object key) and may say ``action``; the
object is the action's payload (see docs/triggers/gcs.md and the S3 function's
documentation):

- complete: a JSON object at most the inline limit is the result, parsed; anything else
  becomes a reference to the object (its ``reference()``), and its content is never read;
- fail: the object is the error object; heartbeat and cancel: the details (empty is null).

Pure: no I/O, no storage client, no completion client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from completer.errors import InternalError, InvalidRequest, PayloadTooLarge
from completer.models import Action, CompletionRequest, parse_json

__all__ = [
    "META_ACTION",
    "META_ACTIVITY_ID",
    "META_CORRELATION_KEY",
    "META_RUN_ID",
    "META_TASK_TOKEN",
    "META_WORKFLOW_ID",
    "KeyPattern",
    "UploadedObject",
    "action_of",
    "build_request",
    "is_json_object",
    "read_limit",
]

# Custom metadata naming the activity (ours). S3 sends it as x-amz-meta-<name>, Cloud Storage
# as x-goog-meta-<name>; both hand the names back lowercased from headers.
META_TASK_TOKEN = "task-token"  # noqa: S105 - a metadata name, not a secret
META_WORKFLOW_ID = "workflow-id"
META_ACTIVITY_ID = "activity-id"
META_RUN_ID = "run-id"
META_CORRELATION_KEY = "correlation-key"
META_ACTION = "action"
META_FIELDS = {
    META_TASK_TOKEN: "task_token",
    META_WORKFLOW_ID: "workflow_id",
    META_ACTIVITY_ID: "activity_id",
    META_RUN_ID: "run_id",
    META_CORRELATION_KEY: "correlation_key",
}

KEY_PLACEHOLDER = "{correlation_key}"
"""Where an object key pattern (``COMPLETER_S3_KEY_PATTERN``, ...) holds the correlation key."""


@dataclass(frozen=True, slots=True)
class KeyPattern:
    """An object key pattern such as ``inbox/{correlation_key}.json``: the key names the activity.

    Attributes:
        pattern: The pattern as configured.
    """

    pattern: str

    def __post_init__(self) -> None:
        if self.pattern.count(KEY_PLACEHOLDER) != 1:
            raise ValueError(
                f"must hold {KEY_PLACEHOLDER} exactly once, e.g. inbox/{KEY_PLACEHOLDER}.json"
            )
        rest = self.pattern.replace(KEY_PLACEHOLDER, "")
        if "{" in rest or "}" in rest:
            raise ValueError(f"may hold no braces other than {KEY_PLACEHOLDER}")

    def correlation_key(self, object_key: str) -> str | None:
        """The correlation key ``object_key`` carries, or None when it does not match."""
        prefix, _, suffix = self.pattern.partition(KEY_PLACEHOLDER)
        match = re.fullmatch(f"{re.escape(prefix)}(.+){re.escape(suffix)}", object_key, re.DOTALL)
        return match.group(1) if match else None

    def object_key(self, correlation_key: str) -> str:
        """The object key that carries ``correlation_key`` (what a partner uploads to)."""
        return self.pattern.replace(KEY_PLACEHOLDER, correlation_key)


# What makes an object JSON: its media type (RFC 8259, or an RFC 6839 `+json` suffix) or
# its key's extension.
JSON_MEDIA_TYPE = "application/json"
JSON_MEDIA_SUFFIX = "+json"
JSON_KEY_SUFFIX = ".json"


class UploadedObject(Protocol):
    """What the content rules read of an uploaded object (S3's and Cloud Storage's fit)."""

    @property
    def uri(self) -> str:
        """``s3://bucket/key`` or ``gs://bucket/name``."""
        ...

    @property
    def key(self) -> str:
        """The object's key (name) in its bucket."""
        ...

    @property
    def metadata(self) -> Mapping[str, str]:
        """Custom metadata, names lowercased."""
        ...

    @property
    def size(self) -> int:
        """Content length in bytes."""
        ...

    @property
    def content_type(self) -> str | None:
        """The Content-Type it was uploaded with, if any."""
        ...

    @property
    def metadata_header_prefix(self) -> str:
        """How an uploader sets metadata: ``x-amz-meta-`` or ``x-goog-meta-``."""
        ...

    def reference(self) -> dict[str, Any]:
        """The result for an object that is not passed inline."""
        ...


def is_json_object(content_type: str | None, key: str) -> bool:
    """Whether an object is JSON: by its Content-Type, or by a ``.json`` key."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return (
        media_type == JSON_MEDIA_TYPE
        or media_type.endswith(JSON_MEDIA_SUFFIX)
        or key.lower().endswith(JSON_KEY_SUFFIX)
    )


def action_of(obj: UploadedObject) -> Action:
    """The action the object's metadata asks for (``complete`` when it says none).

    Raises:
        InvalidRequest: The ``action`` metadata is not one of the four actions.
    """
    value = obj.metadata.get(META_ACTION, "").strip().lower()
    if not value:
        return Action.COMPLETE
    try:
        return Action(value)
    except ValueError:
        raise InvalidRequest(
            f"metadata '{META_ACTION}' must be one of {', '.join(a.value for a in Action)}."
        ) from None


def read_limit(obj: UploadedObject, *, inline_max_bytes: int, payload_max_bytes: int) -> int | None:
    """How many bytes of the object the request needs read, or None when the content is unused.

    A completion passes a JSON object inline only up to ``inline_max_bytes``; anything else is
    a reference and its content is never read. Other actions read at most the engine's
    payload limit.

    Raises:
        InvalidRequest: The ``action`` metadata is wrong.
    """
    if action_of(obj) is Action.COMPLETE:
        if is_json_object(obj.content_type, obj.key) and obj.size <= inline_max_bytes:
            return inline_max_bytes
        return None
    return payload_max_bytes


def build_request(
    obj: UploadedObject,
    content: bytes | None,
    *,
    inline_max_bytes: int,
    payload_max_bytes: int,
    key_pattern: KeyPattern | None = None,
) -> CompletionRequest:
    """The completion request an uploaded object makes.

    Args:
        obj: The object's metadata.
        content: Its content as read with the cap :func:`read_limit` gave (at most one byte
            over it), or None when :func:`read_limit` said the content is unused.
        inline_max_bytes: The trigger's inline limit (``COMPLETER_S3_INLINE_MAX_BYTES``,
            ``COMPLETER_GCS_INLINE_MAX_BYTES``).
        payload_max_bytes: The engine's payload limit (error and details objects).
        key_pattern: When the object has no naming metadata and its key matches this
            pattern, the key's ``{correlation_key}`` part names the activity.

    Raises:
        InvalidRequest: The metadata does not name an activity, or the content is not the
            JSON the action needs.
        PayloadTooLarge: The error or details object is over the payload limit.
    """
    action = action_of(obj)
    fields: dict[str, Any] = {
        field: obj.metadata[name].strip()
        for name, field in META_FIELDS.items()
        if name in obj.metadata
    }
    if not fields and key_pattern is not None:
        from_key = key_pattern.correlation_key(obj.key)
        if from_key is not None:
            fields["correlation_key"] = from_key
    if not fields:
        prefix = obj.metadata_header_prefix
        raise InvalidRequest(
            f"{obj.uri} has no metadata naming the activity: set "
            f"{prefix}{META_TASK_TOKEN}, or {prefix}{META_WORKFLOW_ID} and "
            f"{prefix}{META_ACTIVITY_ID}, or {prefix}{META_CORRELATION_KEY}."
        )
    fields["action"] = action.value
    if action is Action.COMPLETE:
        if content is None or len(content) > inline_max_bytes:
            fields["result"] = obj.reference()
        else:
            fields["result"] = parse_json(content, what=f"the JSON object {obj.uri}")
        return CompletionRequest.build(fields)
    if content is None:
        raise InternalError(f"the content of {obj.uri} was not read.")
    if len(content) > payload_max_bytes:
        raise PayloadTooLarge(
            f"{obj.uri} is over the {payload_max_bytes}-byte payload limit of the engine."
        )
    if action is Action.FAIL:
        error = parse_json(content, what=f"the error object {obj.uri}")
        if not isinstance(error, Mapping):
            raise InvalidRequest(
                f"{obj.uri} must be a JSON object with a 'message' to fail the activity."
            )
        fields["error"] = error
    elif content.strip():
        fields["details"] = parse_json(content, what=f"the details object {obj.uri}")
    return CompletionRequest.build(fields)
