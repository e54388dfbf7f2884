"""The pure parts of the HTTP trigger: the allowed method and request ids.

No I/O and no client here; :mod:`completer.handlers.http` carries a request through the
checks and the completion, and :mod:`completer.signatures` verifies Standard Webhooks
signatures.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from completer.signatures import WEBHOOK_ID, SignatureVerifier

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ALLOWED_METHODS", "WEBHOOK_ID", "SignatureVerifier", "request_id_of"]

# RFC 9110 §15.5.6: a 405 answer lists the methods the resource supports.
ALLOWED_METHODS = "POST"
# Cloud Run / Cloud Functions trace header: "TRACE_ID/SPAN_ID;o=OPTIONS".
CLOUD_TRACE_HEADER = "x-cloud-trace-context"
# W3C Trace Context: "version-traceid-parentid-flags".
TRACEPARENT_HEADER = "traceparent"

_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{1,64})(?:/|$)")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def request_id_of(headers: Mapping[str, str]) -> str:
    """The trace id a request carries (Cloud trace header or W3C traceparent), else a new id.

    Args:
        headers: The request headers, names in lower case.
    """
    cloud = _CLOUD_TRACE.match(headers.get(CLOUD_TRACE_HEADER, ""))
    if cloud:
        return cloud.group(1).lower()
    parent = _TRACEPARENT.match(headers.get(TRACEPARENT_HEADER, "").strip().lower())
    if parent:
        return parent.group(1)
    return uuid.uuid4().hex
