"""Callback URLs: a sealed, expiring URL whose POSTed body completes one activity.

For a system that calls back with its own payload (a payment provider's webhook, a SaaS
job finishing), the activity hands out ``<function url>?callback=<sealed>`` instead of a
token. ``sealed`` is a Fernet token, as for completion links (:mod:`completer.links`), under
a key derived from the same ``COMPLETER_LINK_SECRET`` with its own HKDF info, so a callback
can never be opened as a link nor a link as a callback. It holds the activity's naming
(its ``run_id`` too when named by IDs), the expiry and two optional JMESPath expressions:

- ``select`` picks the result out of the body (``data.object`` of a Stripe-like event);
- ``fail_when``, when truthy on the body, fails the activity instead (error type
  ``CallbackFailed``, details = the selected body).

Both are compiled when the URL is made: a bad expression is refused then, never when the
partner calls back. See docs/callbacks-and-keys.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from cryptography.fernet import InvalidToken

from completer.errors import InvalidRequest, Unauthorized
from completer.links import _fernet
from completer.models import CompletionRequest

__all__ = [
    "CALLBACK_FAILED",
    "CALLBACK_PARAM",
    "DEFAULT_CALLBACK_TTL_SECONDS",
    "OpenedCallback",
    "create_callback",
    "open_callback",
]

CALLBACK_PARAM = "callback"
CALLBACK_FAILED = "CallbackFailed"
"""The error type of an activity failed by a callback's ``fail_when``."""
DEFAULT_CALLBACK_TTL_SECONDS = 7 * 24 * 3600
MAX_EXPRESSION_CHARS = 1000
_HKDF_INFO = b"activity-completer callback url v1"
_VERSION = 1
_NAMING_FIELDS = ("task_token", "workflow_id", "activity_id", "run_id")


def _compile(expression: str | None, name: str) -> Any:
    import jmespath
    from jmespath.exceptions import JMESPathError

    if expression is None:
        return None
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidRequest(f"{name} must be a JMESPath expression.")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise InvalidRequest(f"{name} is over {MAX_EXPRESSION_CHARS} characters.")
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidRequest(f"{name} is not a valid JMESPath expression: {first[:200]}") from exc


def create_callback(
    function_url: str,
    *,
    secret: str,
    activity: dict[str, str],
    ttl_seconds: int = DEFAULT_CALLBACK_TTL_SECONDS,
    select: str | None = None,
    fail_when: str | None = None,
    now: float | None = None,
) -> str:
    """Seal a callback URL (the activity side calls :func:`completer.activity.callback_url`).

    Args:
        function_url: The HTTP function's URL.
        secret: Its ``COMPLETER_LINK_SECRET`` (at least 32 characters).
        activity: ``task_token``, or ``workflow_id`` + ``activity_id`` + ``run_id``.
        ttl_seconds: How long the URL works.
        select: A JMESPath expression picking the result out of the body.
        fail_when: A JMESPath expression; truthy on the body fails the activity.
        now: The current time (for tests).

    Raises:
        InvalidRequest: The activity is not named exactly one way, IDs come without a
            run ID, or an expression does not compile.
    """
    fields = {name: activity[name] for name in _NAMING_FIELDS if activity.get(name)}
    if "task_token" not in fields and "run_id" not in fields:
        raise InvalidRequest(
            "a callback URL that names the activity by IDs must seal its run_id, so that it "
            "cannot complete a later run with the same workflow ID: give run_id."
        )
    CompletionRequest.build(fields)  # refuse a bad naming now, not when the partner calls
    _compile(select, "select")
    _compile(fail_when, "fail_when")
    if ttl_seconds <= 0:
        raise InvalidRequest("ttl_seconds must be positive.")
    issued = int(time.time() if now is None else now)
    body: dict[str, Any] = {"v": _VERSION, "x": issued + ttl_seconds, "r": fields}
    if select is not None:
        body["s"] = select
    if fail_when is not None:
        body["f"] = fail_when
    sealed = _fernet(secret, _HKDF_INFO).encrypt_at_time(
        json.dumps(body, separators=(",", ":")).encode(), issued
    )
    scheme, netloc, path, query, _ = urlsplit(function_url)
    extra = urlencode({CALLBACK_PARAM: sealed.decode("ascii")})
    return urlunsplit((scheme, netloc, path, f"{query}&{extra}" if query else extra, ""))


@dataclass(frozen=True)
class OpenedCallback:
    """A verified callback URL: which activity, and how its body becomes the completion."""

    activity: dict[str, str]
    expires_at: int
    select: str | None = None
    fail_when: str | None = None

    def completion(self, body: Any) -> CompletionRequest:
        """The completion ``body`` (parsed JSON, or the text of a text body) makes.

        Raises:
            InvalidRequest: An expression cannot be applied to this body (a JMESPath
                function given the wrong type), or the result is not valid.
        """
        from jmespath.exceptions import JMESPathError

        try:
            selected = body if self.select is None else _compile(self.select, "select").search(body)
            failed = self.fail_when is not None and _truthy(
                _compile(self.fail_when, "fail_when").search(body)
            )
        except JMESPathError as exc:
            raise InvalidRequest(
                f"the callback's expressions cannot be applied to this body ({type(exc).__name__})."
            ) from exc
        if failed:
            error = {
                "message": "the callback reported a failure (its fail_when matched the body).",
                "type": CALLBACK_FAILED,
                "details": selected,
            }
            return CompletionRequest.build({**self.activity, "error": error})
        return CompletionRequest.build({**self.activity, "result": selected})


def _truthy(value: Any) -> bool:
    # JMESPath's truth: false, null and empty strings, lists and objects are false; 0 is true.
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def open_callback(sealed: str, *, secret: str, now: float | None = None) -> OpenedCallback:
    """Verify and open a callback URL's sealed part.

    Raises:
        Unauthorized: Altered, made with another secret, expired, or naming the activity by
            IDs without a sealed run ID.
    """
    current = time.time() if now is None else now
    try:
        raw = _fernet(secret, _HKDF_INFO).decrypt_at_time(
            sealed, ttl=10**9, current_time=int(current)
        )
        body = json.loads(raw)
    except (InvalidToken, ValueError, TypeError) as exc:
        raise Unauthorized(
            "this callback URL is not valid: it was altered or not issued here."
        ) from exc
    if not isinstance(body, dict) or body.get("v") != _VERSION:
        raise Unauthorized("this callback URL is not valid: unknown version.")
    if current > int(body.get("x", 0)):
        raise Unauthorized("this callback URL has expired; ask for a new one.")
    fields = body.get("r")
    if not isinstance(fields, dict) or not (fields.get("task_token") or fields.get("run_id")):
        raise Unauthorized("this callback URL is not valid: it does not name one activity.")
    return OpenedCallback(
        activity={k: str(v) for k, v in fields.items() if k in _NAMING_FIELDS},
        expires_at=int(body["x"]),
        select=body.get("s"),
        fail_when=body.get("f"),
    )
