"""activity-completer: complete waiting Temporal, Cadence and Step Functions activities.

The library is what the documentation presents (docs/index.md): the completion client, the
request and its outcome, the errors, and the token helpers; the activity side lives in
:mod:`completer.activity`. ``import completer`` is cheap: the engine SDKs load only when a
client for that engine is created::

    import asyncio

    from completer import CompletionClient, CompletionRequest

    async def main() -> None:
        async with await CompletionClient.connect() as client:
            await client.execute(CompletionRequest.build({"task_token": t, "result": 42}))

    asyncio.run(main())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from completer.errors import (
    ActivityNotFound,
    CompleterError,
    ConfigurationError,
    Conflict,
    EngineTimeout,
    EngineUnavailable,
    Forbidden,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    PermanentError,
    RequestRejected,
    TransientError,
    Unauthorized,
    UnsupportedMediaType,
)
from completer.executor import Executor
from completer.models import (
    Action,
    ActivityError,
    CompletionOutcome,
    CompletionRequest,
    Origin,
    Status,
    parse_request,
)
from completer.tokens import decode_token, encode_token, token_fingerprint

if TYPE_CHECKING:
    from completer.client import CompletionClient

__all__ = [
    "Action",
    "ActivityError",
    "ActivityNotFound",
    "CompleterError",
    "CompletionClient",
    "CompletionOutcome",
    "CompletionRequest",
    "ConfigurationError",
    "Conflict",
    "EngineTimeout",
    "EngineUnavailable",
    "Executor",
    "Forbidden",
    "InternalError",
    "InvalidRequest",
    "MethodNotAllowed",
    "Origin",
    "PayloadTooLarge",
    "PermanentError",
    "RequestRejected",
    "Status",
    "TransientError",
    "Unauthorized",
    "UnsupportedMediaType",
    "decode_token",
    "encode_token",
    "parse_request",
    "token_fingerprint",
]

_LAZY = {"CompletionClient"}


def __getattr__(name: str) -> Any:
    # The client pulls in the backend registry; keep `import completer` light.
    if name in _LAZY:
        from completer import client

        return getattr(client, name)
    raise AttributeError(f"module 'completer' has no attribute {name!r}")
