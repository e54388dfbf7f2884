"""Secrets from AWS Secrets Manager, resolved once when a Lambda starts.

Cloud Functions put Secret Manager values into the environment itself; Lambda cannot. The
Terraform module therefore sets ``<NAME>_SECRET_ARN`` (e.g. ``TEMPORAL_API_KEY_SECRET_ARN``)
and the function calls :func:`load_secret_environment` at import, before the settings are
read: each secret's string becomes ``NAME`` in the environment, where ``completer.settings``
and ``temporalio.envconfig`` read it like any other setting. A ``NAME`` already set wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from typing import Any

from completer.errors import ConfigurationError

__all__ = ["SECRET_ARN_SUFFIX", "load_secret_environment"]

SECRET_ARN_SUFFIX = "_SECRET_ARN"  # noqa: S105 - a variable-name suffix, not a secret
# Only settings may be filled from secrets, never e.g. PATH or AWS credentials.
_SETTING = re.compile(r"^(COMPLETER|TEMPORAL|CADENCE)_[A-Z0-9_]+$")


def load_secret_environment(
    environ: MutableMapping[str, str] | None = None, *, client: Any = None
) -> list[str]:
    """Set ``NAME`` from Secrets Manager for every ``NAME_SECRET_ARN`` in the environment.

    Args:
        environ: The environment to read and fill; ``os.environ`` by default.
        client: A boto3 ``secretsmanager`` client; one is made (boto3's standard
            configuration) only when there is something to fetch.

    Returns:
        The names that were set.

    Raises:
        ConfigurationError: A name is not a setting, or its secret cannot be read; the
            message names the variable, never the value.
    """
    env = os.environ if environ is None else environ
    wanted = {
        key.removesuffix(SECRET_ARN_SUFFIX): arn
        for key, arn in env.items()
        if key.endswith(SECRET_ARN_SUFFIX) and arn.strip()
    }
    loaded: list[str] = []
    for name, arn in sorted(wanted.items()):
        if not _SETTING.match(name):
            raise ConfigurationError(
                f"{name}{SECRET_ARN_SUFFIX} is invalid: only COMPLETER_*, TEMPORAL_* and "
                "CADENCE_* settings can come from Secrets Manager."
            )
        if env.get(name):
            continue
        if client is None:
            import boto3  # only Lambdas that use secrets pay for importing boto3

            client = boto3.client("secretsmanager")
        try:
            answer = client.get_secret_value(SecretId=arn)
        except Exception as exc:
            raise ConfigurationError(
                f"{name}{SECRET_ARN_SUFFIX} cannot be read from Secrets Manager "
                f"({type(exc).__name__}): check the ARN and the function's role."
            ) from exc
        value = answer.get("SecretString")
        if not isinstance(value, str):
            raise ConfigurationError(
                f"{name}{SECRET_ARN_SUFFIX} names a binary secret: store the setting as a string."
            )
        env[name] = value
        loaded.append(name)
    return loaded
