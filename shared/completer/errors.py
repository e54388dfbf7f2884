"""The errors a completion can end in, one class per public error code.

Every trigger maps these the same way (docs/contract.md, Outcomes): an HTTP status for the HTTP
function, and for queue and upload triggers whether the event is redelivered
(transient) or acknowledged and dead-lettered (permanent)::

    CompleterError
    ├── PermanentError                  acknowledge, dead-letter, never retry
    │   ├── InvalidRequest              invalid_request          400
    │   ├── PayloadTooLarge             payload_too_large        413
    │   ├── Forbidden                   forbidden                403
    │   ├── ActivityNotFound            activity_not_found       404
    │   └── Conflict                    conflict                 409
    ├── TransientError                  raise, so the platform redelivers
    │   ├── EngineUnavailable           engine_unavailable       503 + Retry-After
    │   ├── EngineTimeout               engine_timeout           504
    │   └── InternalError               internal                 500
    └── RequestRejected                 HTTP-only, before parsing
        ├── Unauthorized                unauthorized             401
        ├── MethodNotAllowed            method_not_allowed       405
        └── UnsupportedMediaType        unsupported_media_type   415

    ConfigurationError                  wrong settings: raised at start, never per request
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ActivityNotFound",
    "CompleterError",
    "ConfigurationError",
    "Conflict",
    "EngineTimeout",
    "EngineUnavailable",
    "Forbidden",
    "InternalError",
    "InvalidRequest",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "PermanentError",
    "RequestRejected",
    "TransientError",
    "Unauthorized",
    "UnsupportedMediaType",
]


class CompleterError(Exception):
    """Base of every error a completion can end in.

    Attributes:
        code: The public error code (docs/contract.md, Outcomes).
        http_status: The HTTP status the HTTP function answers with.
        transient: True when the event should be redelivered.
        message: A sentence a person can act on; never contains a token or secret.
    """

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    transient: ClassVar[bool] = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The HTTP error body: ``{"error": {"code": ..., "message": ...}}``."""
        return {"error": {"code": self.code, "message": self.message}}


class PermanentError(CompleterError):
    """The request can never succeed as sent: acknowledge it and dead-letter it."""

    transient = False


class TransientError(CompleterError):
    """The outcome may differ on a later try: redeliver."""

    transient = True


class RequestRejected(CompleterError):
    """An HTTP request refused before its body was read."""

    transient = False


class InvalidRequest(PermanentError):
    code = "invalid_request"
    http_status = 400


class Forbidden(PermanentError):
    """Signed, but the signing secret's scope does not cover this activity or action."""

    code = "forbidden"
    http_status = 403


class PayloadTooLarge(PermanentError):
    code = "payload_too_large"
    http_status = 413


class ActivityNotFound(PermanentError):
    code = "activity_not_found"
    http_status = 404


class Conflict(PermanentError):
    code = "conflict"
    http_status = 409


class EngineUnavailable(TransientError):
    """The engine could not be reached or shed load.

    Attributes:
        retry_after: Seconds a caller should wait before trying again.
        unreachable: True when the engine could not be reached at all (refused, reset,
            dropped, unresolvable); false when it answered but shed load (throttling).
            Only an unreachable engine opens the client's circuit breaker.
    """

    code = "engine_unavailable"
    http_status = 503

    def __init__(self, message: str, *, retry_after: int = 5, unreachable: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable


class EngineTimeout(TransientError):
    code = "engine_timeout"
    http_status = 504


class InternalError(TransientError):
    code = "internal"
    http_status = 500


class Unauthorized(RequestRejected):
    code = "unauthorized"
    http_status = 401


class MethodNotAllowed(RequestRejected):
    code = "method_not_allowed"
    http_status = 405


class UnsupportedMediaType(RequestRejected):
    code = "unsupported_media_type"
    http_status = 415


class ConfigurationError(Exception):
    """A setting is wrong; raised at start with one sentence naming the variable."""
