"""The pure parts of the HTTP trigger: Standard Webhooks signatures and request ids.

No I/O and no client here; :mod:`completer.handlers.http` carries a request through the
checks and the completion.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from completer.errors import ConfigurationError, Unauthorized

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from completer.settings import Settings

__all__ = ["ALLOWED_METHODS", "SignatureVerifier", "request_id_of"]

# RFC 9110 §15.5.6: a 405 answer lists the methods the resource supports.
ALLOWED_METHODS = "POST"
# Standard Webhooks specification, "Signature scheme": the three headers a sender sets.
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
# Cloud Run / Cloud Functions trace header: "TRACE_ID/SPAN_ID;o=OPTIONS".
CLOUD_TRACE_HEADER = "x-cloud-trace-context"
# W3C Trace Context: "version-traceid-parentid-flags".
TRACEPARENT_HEADER = "traceparent"

_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{1,64})(?:/|$)")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}$")


class _Webhook(Webhook):
    # The library hardcodes a 5-minute tolerance; SignatureVerifier checks the configured
    # one first, so the library only parses the (already validated) timestamp here.
    def _Webhook__verify_timestamp(self, timestamp_header: str) -> datetime:  # noqa: N802 - overrides the library's name-mangled method
        return datetime.fromtimestamp(int(timestamp_header), tz=UTC)


class SignatureVerifier:
    """Verifies Standard Webhooks signatures against one or more secrets (for rotation).

    The HMAC-SHA256 over ``id.timestamp.body`` and its constant-time comparison are the
    ``standardwebhooks`` library's; the timestamp tolerance is checked here, in both
    directions, because the library fixes it at 5 minutes.
    """

    def __init__(self, secrets: Sequence[str], *, tolerance_seconds: int) -> None:
        """Build one verifier per secret.

        Raises:
            ConfigurationError: A secret is not ``whsec_`` followed by base64.
        """
        self.tolerance_seconds = tolerance_seconds
        self._webhooks: list[_Webhook] = []
        for number, secret in enumerate(secrets, start=1):
            try:
                self._webhooks.append(_Webhook(secret))
            except Exception as exc:
                raise ConfigurationError(
                    f"COMPLETER_SIGNING_SECRETS is invalid: secret number {number} is not "
                    "'whsec_' followed by base64."
                ) from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> SignatureVerifier | None:
        """The verifier the settings ask for, or None when no secret is set."""
        if not settings.signing_secrets:
            return None
        return cls(
            settings.signing_secret_values,
            tolerance_seconds=settings.signature_tolerance_seconds,
        )

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
        """Check that one of the secrets signed ``body`` with these headers, recently.

        Args:
            body: The raw body, exactly as received.
            headers: The request headers, names in lower case.
            now: The current Unix time (for tests); defaults to the clock.

        Raises:
            Unauthorized: Headers missing or malformed, timestamp outside the tolerance,
                or no signature matches.
        """
        message_id = headers.get(WEBHOOK_ID, "")
        timestamp = headers.get(WEBHOOK_TIMESTAMP, "")
        signatures = headers.get(WEBHOOK_SIGNATURE, "")
        if not (message_id and timestamp and signatures):
            raise Unauthorized(
                "the request is not signed: send the Standard Webhooks headers "
                f"{WEBHOOK_ID}, {WEBHOOK_TIMESTAMP} and {WEBHOOK_SIGNATURE}."
            )
        if not _UNIX_SECONDS.match(timestamp):
            raise Unauthorized(f"{WEBHOOK_TIMESTAMP} must be a Unix time in whole seconds.")
        skew = int(timestamp) - (time.time() if now is None else now)
        if abs(skew) > self.tolerance_seconds:
            direction = "ahead of" if skew > 0 else "behind"
            raise Unauthorized(
                f"{WEBHOOK_TIMESTAMP} is {abs(skew):.0f} s {direction} this server's clock, "
                f"outside the {self.tolerance_seconds} s tolerance."
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Unauthorized(
                "the body is not UTF-8 text, so its signature cannot be verified."
            ) from None
        signed = {
            WEBHOOK_ID: message_id,
            WEBHOOK_TIMESTAMP: timestamp,
            WEBHOOK_SIGNATURE: signatures,
        }
        for webhook in self._webhooks:
            try:
                webhook.verify(text, signed, json_parse=False)
            except (WebhookVerificationError, ValueError):
                # ValueError: a malformed "v1,<base64>" entry; it simply does not match.
                continue
            return
        raise Unauthorized(f"no {WEBHOOK_SIGNATURE} matches the body with a configured secret.")


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
