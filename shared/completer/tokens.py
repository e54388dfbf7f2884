"""Task tokens in transport: base64 text for binary engine tokens, and a log-safe fingerprint.

Temporal and Cadence hand activities a binary task token; every transport here carries
it as base64 text. Both the standard and the URL-safe alphabets are accepted, with or
without padding, so a token pasted from a URL or from a JSON log works the same.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from completer.errors import InvalidRequest

__all__ = ["MAX_TOKEN_BYTES", "decode_token", "encode_token", "token_fingerprint"]

MAX_TOKEN_BYTES = 8 * 1024
"""Largest decoded task token accepted (docs/contract.md); Temporal tokens are ~100-400 bytes."""

# Longest base64 text that can decode to MAX_TOKEN_BYTES (4 chars per 3 bytes, padded).
_MAX_TOKEN_CHARS = 4 * ((MAX_TOKEN_BYTES + 2) // 3)
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def encode_token(token: bytes, *, urlsafe: bool = True) -> str:
    """Encode a binary task token as base64 text for transport.

    Args:
        token: The engine's task token (``activity.info().task_token`` in Temporal).
        urlsafe: Use the URL-safe alphabet without padding (fits URLs, headers and
            S3 metadata); otherwise standard base64 with padding.

    Returns:
        The token as ASCII text that :func:`decode_token` accepts.
    """
    if urlsafe:
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")
    return base64.b64encode(token).decode("ascii")


def decode_token(text: str) -> bytes:
    """Decode a base64 task token (standard or URL-safe alphabet, padding optional).

    Raises:
        InvalidRequest: The token is empty, not base64, or over 8 KiB decoded.
    """
    stripped = text.strip()
    if not stripped:
        raise InvalidRequest("task_token is empty.")
    if len(stripped) > _MAX_TOKEN_CHARS:
        raise InvalidRequest(f"task_token is over {MAX_TOKEN_BYTES} bytes decoded.")
    normalized = stripped.rstrip("=").translate(_URLSAFE_TO_STANDARD)
    if len(normalized) % 4 == 1:
        raise InvalidRequest("task_token is not valid base64 (wrong length).")
    normalized += "=" * (-len(normalized) % 4)
    try:
        token = base64.b64decode(normalized, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("task_token is not valid base64.") from exc
    if not token:
        raise InvalidRequest("task_token is empty.")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidRequest(f"task_token is over {MAX_TOKEN_BYTES} bytes decoded.")
    return token


def token_fingerprint(token: str | bytes) -> str:
    """A short, stable, non-reversible hash of a token, safe to write to logs."""
    raw = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()[:12]
