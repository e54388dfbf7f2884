"""The library's public surface: what docs/index.md presents, and nothing heavy on import."""

from __future__ import annotations

import subprocess
import sys

import completer

EXPORTS = {
    # the client and the one protocol the triggers depend on
    "CompletionClient",
    "Executor",
    # the request and its outcome
    "Action",
    "ActivityError",
    "CompletionOutcome",
    "CompletionRequest",
    "Origin",
    "Status",
    "parse_request",
    # the errors (docs/contract.md, Outcomes)
    "CompleterError",
    "PermanentError",
    "TransientError",
    "RequestRejected",
    "InvalidRequest",
    "Unauthorized",
    "Forbidden",
    "MethodNotAllowed",
    "UnsupportedMediaType",
    "PayloadTooLarge",
    "ActivityNotFound",
    "Conflict",
    "EngineUnavailable",
    "EngineTimeout",
    "InternalError",
    "ConfigurationError",
    # task tokens
    "decode_token",
    "encode_token",
    "token_fingerprint",
}

ACTIVITY_SIDE = {
    "approval_links",
    "approval_links_async",
    "callback_url",
    "callback_url_async",
    "gcs_signed_upload",
    "presigned_upload",
    "pubsub_attributes",
    "register",
    "register_async",
    "temporal_task_token",
}


def test_the_package_exports_exactly_the_documented_library():
    assert set(completer.__all__) == EXPORTS
    for name in EXPORTS:
        assert getattr(completer, name) is not None


def test_the_activity_side_helpers_are_there():
    import completer.activity

    assert set(completer.activity.__all__) >= ACTIVITY_SIDE
    for name in ACTIVITY_SIDE:
        assert callable(getattr(completer.activity, name))


def test_importing_the_library_loads_no_engine_sdk_or_cloud_library():
    probe = (
        "import sys, completer, completer.activity; "
        "heavy = ('temporalio', 'grpc', 'boto3', 'botocore', 'google.cloud.', 'google.api_core', "
        "'functions_framework', 'cadence', 'cryptography'); "
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
