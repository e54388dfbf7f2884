"""The error tree (docs/contract.md, Outcomes) and the Temporal error table, without a server."""

from __future__ import annotations

import pytest
from temporalio.client import AsyncActivityCancelledError
from temporalio.service import RPCError, RPCStatusCode

from completer import errors
from completer.backends.temporal import TemporalBackend
from completer.settings import Settings

TABLE = [
    (errors.InvalidRequest, "invalid_request", 400, False),
    (errors.PayloadTooLarge, "payload_too_large", 413, False),
    (errors.ActivityNotFound, "activity_not_found", 404, False),
    (errors.Conflict, "conflict", 409, False),
    (errors.EngineUnavailable, "engine_unavailable", 503, True),
    (errors.EngineTimeout, "engine_timeout", 504, True),
    (errors.InternalError, "internal", 500, True),
    (errors.Unauthorized, "unauthorized", 401, False),
    (errors.MethodNotAllowed, "method_not_allowed", 405, False),
    (errors.UnsupportedMediaType, "unsupported_media_type", 415, False),
]


@pytest.mark.parametrize(("cls", "code", "status", "transient"), TABLE)
def test_each_code_knows_its_status_and_retry(cls, code, status, transient):
    err = cls("a sentence")
    assert (err.code, err.http_status, err.transient) == (code, status, transient)
    assert err.to_dict() == {"error": {"code": code, "message": "a sentence"}}
    assert isinstance(err, errors.CompleterError)


def test_retry_after_on_unavailable():
    assert errors.EngineUnavailable("x").retry_after > 0
    assert errors.EngineUnavailable("x", retry_after=30).retry_after == 30


backend = TemporalBackend(Settings(COMPLETER_BACKEND="temporal"))


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (RPCStatusCode.NOT_FOUND, "workflow execution already completed", errors.ActivityNotFound),
        (RPCStatusCode.NOT_FOUND, "activity task not found", errors.ActivityNotFound),
        (
            RPCStatusCode.INVALID_ARGUMENT,
            "unable to mark activity as canceled without activity being request canceled first",
            errors.Conflict,
        ),
        (RPCStatusCode.INVALID_ARGUMENT, "Error deserializing task token.", errors.InvalidRequest),
        (RPCStatusCode.FAILED_PRECONDITION, "activity paused", errors.Conflict),
        (RPCStatusCode.UNAVAILABLE, "connection refused", errors.EngineUnavailable),
        (
            RPCStatusCode.RESOURCE_EXHAUSTED,
            "namespace rate limit exceeded",
            errors.EngineUnavailable,
        ),
        (RPCStatusCode.CANCELLED, "Timeout expired", errors.EngineTimeout),
        (RPCStatusCode.DEADLINE_EXCEEDED, "deadline exceeded", errors.EngineTimeout),
        (RPCStatusCode.UNKNOWN, "transport error", errors.EngineUnavailable),
        (RPCStatusCode.UNAUTHENTICATED, "bad api key", errors.InternalError),
        (RPCStatusCode.INTERNAL, "oops", errors.InternalError),
    ],
)
def test_temporal_rpc_errors(status, message, expected):
    translated = backend.translate_error(RPCError(message, status, b""))
    assert type(translated) is expected
    assert translated.message


def test_temporal_connect_failure_and_unexpected():
    refused = RuntimeError(
        "Failed client connect: Server connection error: tonic::transport::Error"
    )
    assert isinstance(backend.translate_error(refused), errors.EngineUnavailable)
    assert isinstance(backend.translate_error(KeyError("x")), errors.InternalError)
    already = errors.Conflict("x")
    assert backend.translate_error(already) is already


def test_cancelled_error_is_not_an_error_for_heartbeats():
    # The adapter turns this into cancel_requested, never into an error code.
    assert not isinstance(AsyncActivityCancelledError(), errors.CompleterError)
