"""Signed, expiring, action-scoped completion links (the activity side of approvals by e-mail).

An activity that waits for a person creates one link per choice ("approve" with a preset
result, "reject" with a preset error) and sends them. The HTTP function, configured with
the same ``COMPLETER_LINK_SECRET``, shows a confirmation page on GET (mail scanners
prefetch links, so a GET never completes anything) and completes on the page's POST.

Format: ``<base_url>?choice=<label>&link=<sealed>``. ``sealed`` is a Fernet token
(AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key derived with HKDF-SHA256
from the link secret. It holds the task token (or IDs), the action with its preset
result or error, the choice label and the expiry, so a forwarded or logged link reveals
nothing but a link that expires. The visible ``choice`` must match the sealed one.
A link completes at most once: after its first use the activity is no longer waiting
and the engine answers ``activity_not_found``. A link that names the activity by IDs
seals its ``run_id`` too (it is required here; :mod:`completer.activity` looks it up), so
it can never complete a later run that reuses the workflow ID.

A link may also seal a plain-text ``title`` and ``description`` that its page shows above
the choice. A receipt (``<base_url>?receipt=<sealed>``, :func:`create_receipt`) seals what
a carried-out choice did, so the page the browser lands on after the POST needs no engine
call to show it. See docs/approval-pages.md.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from completer.errors import InvalidRequest, Unauthorized
from completer.models import CompletionRequest

__all__ = [
    "DEFAULT_LINK_TTL_SECONDS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_TITLE_CHARS",
    "ExpiredLink",
    "OpenedLink",
    "Receipt",
    "create_link",
    "create_receipt",
    "open_link",
    "open_receipt",
]

DEFAULT_LINK_TTL_SECONDS = 7 * 24 * 3600
LINK_PARAM = "link"
CHOICE_PARAM = "choice"
RECEIPT_PARAM = "receipt"
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
_HKDF_INFO = b"activity-completer completion link v1"
# A receipt has its own key, so a receipt can never be opened as a link, nor a link as one.
_RECEIPT_HKDF_INFO = b"activity-completer receipt v1"
_VERSION = 1


class ExpiredLink(Unauthorized):
    """A link that was valid but is past its expiry (the page asks for a new one)."""


def _fernet(secret: str, info: bytes = _HKDF_INFO) -> Fernet:
    if len(secret) < 32:
        raise ValueError("the link secret must be at least 32 characters")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        secret.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(key))


@dataclass(frozen=True)
class OpenedLink:
    """A verified link: the completion it carries and what to show the person."""

    request: CompletionRequest
    choice: str
    expires_at: int
    title: str | None = None
    description: str | None = None


def create_link(
    base_url: str,
    *,
    secret: str,
    choice: str,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    result: Any = None,
    error: dict[str, Any] | None = None,
    ttl_seconds: int = DEFAULT_LINK_TTL_SECONDS,
    now: float | None = None,
    title: str | None = None,
    description: str | None = None,
) -> str:
    """Create a completion link for one choice.

    Args:
        base_url: The HTTP function's URL.
        secret: ``COMPLETER_LINK_SECRET`` of that function (at least 32 characters).
        choice: A short label shown to the person and in the URL, e.g. ``"approve"``.
        task_token: The activity's token (base64 for Temporal/Cadence), or give the IDs.
        workflow_id: With ``activity_id`` and ``run_id``, instead of a token.
        activity_id: See ``workflow_id``.
        run_id: The run the link may complete; required with IDs (see
            :func:`completer.activity.lookup_run_id`).
        result: The result the link completes with.
        error: An error object (``{"message": ..., "type": ...}``): the link fails the
            activity instead.
        ttl_seconds: How long the link works.
        now: The current time (for tests).
        title: What the person decides on, as plain text (at most 200 characters), e.g.
            ``"Refund 120.00 EUR for order 42"``; the page shows it above the choice.
        description: More detail as plain text (at most 2000 characters; line breaks kept).

    Returns:
        The URL to send.

    Raises:
        InvalidRequest: The preset completion is not a valid request, or it names the
            activity by IDs without ``run_id``.
    """
    if workflow_id is not None and not run_id:
        raise InvalidRequest(
            "a link that names the activity by IDs must seal its run_id, so that it cannot "
            "complete a later run with the same workflow ID: give run_id."
        )
    fields: dict[str, Any] = {
        "task_token": task_token,
        "workflow_id": workflow_id,
        "activity_id": activity_id,
        "run_id": run_id,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    if error is not None:
        fields["error"] = error
    else:
        fields["result"] = result
    CompletionRequest.build(fields)  # refuse a bad link now, not when a person clicks it
    issued = int(time.time() if now is None else now)
    body = {"v": _VERSION, "c": choice, "x": issued + ttl_seconds, "r": fields}
    body.update(_texts(title=title, description=description))
    sealed = _fernet(secret).encrypt_at_time(
        json.dumps(body, separators=(",", ":")).encode(), issued
    )
    scheme, netloc, path, query, _ = urlsplit(base_url)
    extra = urlencode({CHOICE_PARAM: choice, LINK_PARAM: sealed.decode("ascii")})
    return urlunsplit((scheme, netloc, path, f"{query}&{extra}" if query else extra, ""))


def open_link(
    sealed: str, *, secret: str, choice: str | None = None, now: float | None = None
) -> OpenedLink:
    """Verify and open a link's sealed part.

    Raises:
        ExpiredLink: The link is past its expiry (an :class:`Unauthorized`).
        Unauthorized: The link was tampered with, made with another secret, expired, its
            visible choice does not match the sealed one, or it names the activity by IDs
            without a sealed ``run_id`` (it could complete a later run).
        InvalidRequest: The sealed completion is not a valid request.
    """
    current = time.time() if now is None else now
    try:
        raw = _fernet(secret).decrypt_at_time(sealed, ttl=10**9, current_time=int(current))
        body = json.loads(raw)
    except (InvalidToken, ValueError, TypeError) as exc:
        raise Unauthorized("this link is not valid: it was altered or not issued here.") from exc
    if not isinstance(body, dict) or body.get("v") != _VERSION:
        raise Unauthorized("this link is not valid: unknown link version.")
    expires_at = int(body.get("x", 0))
    if current > expires_at:
        raise ExpiredLink("this link has expired; ask for a new one.")
    sealed_choice = str(body.get("c", ""))
    if choice is not None and choice != sealed_choice:
        raise Unauthorized("this link is not valid for that choice.")
    fields = body.get("r")
    if not isinstance(fields, dict):
        raise InvalidRequest("this link carries no completion.")
    request = CompletionRequest.build(fields)
    if not request.by_token and request.run_id is None:
        raise Unauthorized("this link is not valid: it does not name one workflow run.")
    return OpenedLink(
        request=request,
        choice=sealed_choice,
        expires_at=expires_at,
        title=_text(body.get("t")),
        description=_text(body.get("d")),
    )


def _texts(*, title: str | None, description: str | None) -> dict[str, str]:
    # Sealed only when given, so links without them keep their old, shorter form.
    texts: dict[str, str] = {}
    for key, value, limit, name in (
        ("t", title, MAX_TITLE_CHARS, "title"),
        ("d", description, MAX_DESCRIPTION_CHARS, "description"),
    ):
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidRequest(f"a link's {name} is plain text of at most {limit} characters.")
        if value.strip():
            texts[key] = value
    return texts


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Receipt:
    """What a person's choice did, sealed into the receipt URL the choice redirects to.

    Attributes:
        choice: The choice's label, e.g. ``"approve"``.
        status: The outcome's status: ``"completed"``, ``"failed"`` or ``"canceled"``.
        decided_at: Unix time the choice was carried out.
        title: The link's title, when it had one.
    """

    choice: str
    status: str
    decided_at: int
    title: str | None = None


def create_receipt(
    base_url: str,
    *,
    secret: str,
    choice: str,
    status: str,
    decided_at: float,
    title: str | None = None,
) -> str:
    """The receipt URL (``<base_url>?receipt=<sealed>``) a carried-out choice redirects to.

    Its GET shows what was done and when without asking the engine, so reloading it
    changes nothing. It holds no token and never expires.
    """
    body: dict[str, Any] = {"v": _VERSION, "c": choice, "s": status, "at": int(decided_at)}
    if title:
        body["t"] = title[:MAX_TITLE_CHARS]
    sealed = _fernet(secret, _RECEIPT_HKDF_INFO).encrypt_at_time(
        json.dumps(body, separators=(",", ":")).encode(), int(decided_at)
    )
    scheme, netloc, path, query, _ = urlsplit(base_url)
    extra = urlencode({RECEIPT_PARAM: sealed.decode("ascii")})
    return urlunsplit((scheme, netloc, path, f"{query}&{extra}" if query else extra, ""))


def open_receipt(sealed: str, *, secret: str) -> Receipt:
    """Verify and open a receipt's sealed part.

    Raises:
        Unauthorized: The receipt was altered or not issued with this secret.
    """
    refused = Unauthorized("this receipt is not valid: it was altered or not issued here.")
    try:
        body = json.loads(_fernet(secret, _RECEIPT_HKDF_INFO).decrypt(sealed))
    except (InvalidToken, ValueError, TypeError) as exc:
        raise refused from exc
    if not isinstance(body, dict) or body.get("v") != _VERSION:
        raise refused
    try:
        return Receipt(
            choice=str(body["c"]),
            status=str(body["s"]),
            decided_at=int(body["at"]),
            title=_text(body.get("t")),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise refused from exc
