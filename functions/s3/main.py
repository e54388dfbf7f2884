"""AWS Lambda: complete waiting activities from S3 uploads. Handler: ``main.handler``.

Settings, the engine client and one event loop are made once, when Lambda loads this module,
and the client connects then: a wrong configuration (including one only the engine can judge,
such as an unknown ``CADENCE_DOMAIN``) fails the cold start with one sentence naming the
variable, and every warm invocation reuses the loop, its engine connection and one S3 client.
The logic is :class:`completer.handlers.s3.S3Handler`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from completer.deadletter import dead_letter_queue
from completer.handlers.s3 import S3Handler
from completer.handlers.startup import connect_during_init
from completer.handlers.worker import build_executor
from completer.logs import configure_logging
from completer.secrets import load_secret_environment
from completer.settings import get_settings

configure_logging()
# Terraform passes secrets as <NAME>_SECRET_ARN: resolve them before the settings are read.
load_secret_environment()
_loop = asyncio.new_event_loop()
# The completion ledger (COMPLETER_LEDGER=dynamodb://<table>; docs/ledger.md) answers a
# notification delivered twice with its first outcome instead of activity_not_found.
_executor, _ledger = build_executor(get_settings())
connect_during_init(_executor.engine, _loop)
_s3 = S3Handler(_executor, settings=get_settings(), dead_letters=dead_letter_queue(get_settings()))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """S3 notification, SQS or EventBridge event in; ``batchItemFailures`` out for SQS."""
    return _loop.run_until_complete(_s3.handle(event, context))
