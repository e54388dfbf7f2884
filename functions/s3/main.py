"""AWS Lambda: complete waiting activities from S3 uploads (CONTRACT §6). Handler: ``main.handler``.

Settings and the engine client are made once, when Lambda loads this module, so a wrong
configuration fails the cold start with one sentence naming the variable, and every warm
invocation reuses one engine connection and one S3 client.
"""

from __future__ import annotations

from typing import Any

from completer.client import default_client
from completer.events.s3 import S3Completer
from completer.logs import configure_logging
from completer.secrets import load_secret_environment
from completer.settings import get_settings

configure_logging()
# Terraform passes secrets as <NAME>_SECRET_ARN: resolve them before the settings are read.
load_secret_environment()
_completer = S3Completer(settings=get_settings(), client=default_client())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """S3 notification, SQS or EventBridge event in; ``batchItemFailures`` out for SQS."""
    return _completer(event, context)
