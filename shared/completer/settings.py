"""The configuration (docs/configuration.md), read once from the environment.

Temporal's own variables (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
``TEMPORAL_TLS*``, ``TEMPORAL_PROFILE``, ``TEMPORAL_CONFIG_FILE``) are read by
``temporalio.envconfig`` in the Temporal backend, like every Temporal tool reads them; AWS
variables by boto3. Everything else is here.
"""

from __future__ import annotations

import re
import socket
from functools import cache, cached_property
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from completer.errors import ConfigurationError
from completer.signatures import UNRESTRICTED, SigningKey, parse_scopes, parse_signing_secrets

if TYPE_CHECKING:
    from completer.events.objects import KeyPattern

__all__ = ["Backend", "Settings", "get_settings", "load_settings", "require_http_guard"]

Backend = Literal["temporal", "cadence", "stepfunctions"]

MIB = 1024 * 1024
DEFAULT_PAYLOAD_LIMITS: dict[str, int] = {
    "temporal": 2 * MIB,
    "cadence": 2 * MIB,
    "stepfunctions": 262_144,
}

_TOPIC = re.compile(r"^projects/[^/\s]+/topics/[^/\s]+$")
_QUEUE_URL = re.compile(r"^https?://[^/\s]+/[^/\s]+/[^/\s]+$")
_DOTTED = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every setting of the completer; build it with :func:`get_settings` (read once)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=True)

    backend: Backend = Field(
        default="temporal",
        validation_alias=_env("COMPLETER_BACKEND"),
        description="The engine: `temporal`, `cadence` or `stepfunctions`.",
    )
    rpc_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        validation_alias=_env("COMPLETER_RPC_TIMEOUT_SECONDS"),
        description="Deadline of one engine call, in seconds.",
    )
    max_body_bytes: int = Field(
        default=3 * MIB,
        gt=0,
        validation_alias=_env("COMPLETER_MAX_BODY_BYTES"),
        description="HTTP body limit in bytes, enforced while reading.",
    )
    max_payload_bytes_override: int | None = Field(
        default=None,
        gt=0,
        validation_alias=_env("COMPLETER_MAX_PAYLOAD_BYTES"),
        description=(
            "Largest encoded result, error details or details, checked before the engine is called;"
            " unset: 2 MiB for Temporal and Cadence, 262144 for Step Functions. For Cadence, set it"
            " to your domain's blob size limit."
        ),
    )
    signing_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        validation_alias=_env("COMPLETER_SIGNING_SECRETS"),
        description=(
            "Standard Webhooks secrets (`whsec_` + base64 of at least 24 bytes), space-separated "
            "for rotation, optionally named (`acme=whsec_…`); when set, every JSON request must be "
            "signed."
        ),
    )
    signing_scopes: str | None = Field(
        default=None,
        validation_alias=_env("COMPLETER_SIGNING_SCOPES"),
        description=(
            "JSON: for each named secret, the workflow-ID prefixes, actions and naming forms it may"
            " use (see Security)."
        ),
    )
    signature_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        validation_alias=_env("COMPLETER_SIGNATURE_TOLERANCE_SECONDS"),
        description="How far a `webhook-timestamp` may be from this clock, either way (1 to 3600).",
    )
    allow_unsigned: bool = Field(
        default=False,
        validation_alias=_env("COMPLETER_ALLOW_UNSIGNED"),
        description=(
            "`true`: the HTTP function takes unsigned JSON requests, because the platform's IAM "
            "guards it."
        ),
    )
    link_secret: SecretStr | None = Field(
        default=None,
        validation_alias=_env("COMPLETER_LINK_SECRET"),
        description=(
            "Turns on signed completion links and callback URLs (at least 32 characters of random "
            "text)."
        ),
    )
    dead_letter_topic: str | None = Field(
        default=None,
        validation_alias=_env("COMPLETER_DEAD_LETTER_TOPIC"),
        description=(
            "`projects/<p>/topics/<t>`: where the Pub/Sub and Cloud Storage functions publish what "
            "they refuse."
        ),
    )
    dead_letter_queue: str | None = Field(
        default=None,
        validation_alias=_env("COMPLETER_DEAD_LETTER_QUEUE"),
        description="SQS queue URL: where the S3 function sends the uploads it refuses.",
    )
    s3_inline_max_bytes: int = Field(
        default=262_144,
        ge=0,
        validation_alias=_env("COMPLETER_S3_INLINE_MAX_BYTES"),
        description=(
            "Largest JSON object an S3 upload passes inline as the result; larger objects become a "
            "reference."
        ),
    )
    gcs_inline_max_bytes: int = Field(
        default=262_144,
        ge=0,
        validation_alias=_env("COMPLETER_GCS_INLINE_MAX_BYTES"),
        description=(
            "Largest JSON object a Cloud Storage upload passes inline as the result; larger objects"
            " become a reference."
        ),
    )
    identity: str = Field(
        default_factory=lambda: f"activity-completer@{socket.gethostname()}",
        min_length=1,
        validation_alias=_env("COMPLETER_IDENTITY"),
        description=(
            "The identity reported to the engine (default `activity-completer@<hostname>`)."
        ),
    )
    data_converter: str | None = Field(
        default=None,
        validation_alias=_env("COMPLETER_DATA_CONVERTER"),
        description=(
            "`module:attribute` of the Temporal `DataConverter` your workers use (payload codecs, "
            "encryption)."
        ),
    )
    # The completion ledger (completer.ledger; docs/ledger.md).
    ledger: str | None = Field(
        default=None,
        validation_alias=_env("COMPLETER_LEDGER"),
        description=(
            "The completion ledger: `firestore://<database>/<collection>` or `dynamodb://<table>`; "
            "unset: in-process, per instance."
        ),
    )
    ledger_ttl_seconds: int = Field(
        default=604_800,
        ge=1,
        le=315_360_000,
        validation_alias=_env("COMPLETER_LEDGER_TTL_SECONDS"),
        description="How long the ledger keeps a carried-out request.",
    )
    # Correlation keys (completer.correlation; docs/callbacks-and-keys.md).
    early_arrival_ttl_seconds: int = Field(
        default=86_400,
        ge=1,
        le=315_360_000,
        validation_alias=_env("COMPLETER_EARLY_ARRIVAL_TTL_SECONDS"),
        description=(
            "Seconds a request naming a correlation key nobody registered yet is kept (answered "
            "`buffered`) for the registration to carry out."
        ),
    )
    s3_key_pattern: str | None = Field(
        default=None,
        validation_alias=_env("COMPLETER_S3_KEY_PATTERN"),
        description=(
            "An object key pattern such as `inbox/{correlation_key}.json`: an upload without "
            "naming metadata whose key matches it names its activity by that correlation key."
        ),
    )
    gcs_key_pattern: str | None = Field(
        default=None,
        validation_alias=_env("COMPLETER_GCS_KEY_PATTERN"),
        description="The same as `COMPLETER_S3_KEY_PATTERN`, for the Cloud Storage function.",
    )
    cadence_address: str = Field(
        default="localhost:7833",
        min_length=1,
        validation_alias=_env("CADENCE_ADDRESS"),
        description="The Cadence frontend's gRPC address (`host:port`).",
    )
    cadence_domain: str | None = Field(
        default=None,
        validation_alias=_env("CADENCE_DOMAIN"),
        description="The Cadence domain of the workflows; required with the Cadence backend.",
    )
    # Cadence over TLS, named after temporalio.envconfig's TEMPORAL_TLS* variables.
    cadence_tls: bool | None = Field(
        default=None,
        validation_alias=_env("CADENCE_TLS"),
        description="`true`: connect to Cadence over TLS (implied by any other `CADENCE_TLS_*`).",
    )
    cadence_tls_server_ca_cert_path: str | None = Field(
        default=None,
        validation_alias=_env("CADENCE_TLS_SERVER_CA_CERT_PATH"),
        description="PEM file of the CA that signed the Cadence frontend's certificate.",
    )
    cadence_tls_client_cert_path: str | None = Field(
        default=None,
        validation_alias=_env("CADENCE_TLS_CLIENT_CERT_PATH"),
        description="PEM file of the client certificate (mutual TLS).",
    )
    cadence_tls_client_key_path: str | None = Field(
        default=None,
        validation_alias=_env("CADENCE_TLS_CLIENT_KEY_PATH"),
        description="PEM file of the client certificate's private key (mutual TLS).",
    )
    cadence_tls_server_name: str | None = Field(
        default=None,
        validation_alias=_env("CADENCE_TLS_SERVER_NAME"),
        description=(
            "The name to verify the Cadence frontend's certificate against, when it differs from "
            "the address."
        ),
    )

    @field_validator("signing_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            # Strict: "whsec_" + canonical base64 of >= 24 bytes, optionally "<name>=" first.
            parse_signing_secrets(value)
            return tuple(value.split())
        return value

    @field_validator(
        "link_secret",
        "dead_letter_topic",
        "dead_letter_queue",
        "data_converter",
        "cadence_domain",
        "signing_scopes",
        "s3_key_pattern",
        "gcs_key_pattern",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator(
        "cadence_tls",
        "cadence_tls_server_ca_cert_path",
        "cadence_tls_client_cert_path",
        "cadence_tls_client_key_path",
        "cadence_tls_server_name",
        mode="before",
    )
    @classmethod
    def _empty_tls_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("allow_unsigned", mode="before")
    @classmethod
    def _empty_is_false(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return False
        return value

    @field_validator("dead_letter_topic")
    @classmethod
    def _topic_path(cls, value: str | None) -> str | None:
        if value is not None and not _TOPIC.match(value):
            raise ValueError("must look like projects/<project>/topics/<topic>")
        return value

    @field_validator("dead_letter_queue")
    @classmethod
    def _queue_url(cls, value: str | None) -> str | None:
        if value is not None and not _QUEUE_URL.match(value):
            raise ValueError(
                "must be an SQS queue URL, https://sqs.<region>.amazonaws.com/<account>/<queue>"
            )
        return value

    @field_validator("ledger", mode="before")
    @classmethod
    def _ledger_url(cls, value: object) -> object:
        from completer.ledger import parse_ledger_url

        if isinstance(value, str):
            if not value.strip():
                return None
            parse_ledger_url(value)
        return value

    @field_validator("s3_key_pattern", "gcs_key_pattern")
    @classmethod
    def _key_pattern(cls, value: str | None) -> str | None:
        from completer.events.objects import KeyPattern

        if value is not None:
            KeyPattern(value)
        return value

    @field_validator("data_converter")
    @classmethod
    def _dotted_path(cls, value: str | None) -> str | None:
        if value is not None and not _DOTTED.match(value):
            raise ValueError("must be 'module:attribute', e.g. 'myapp.codec:data_converter'")
        return value

    @field_validator("link_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters of random text")
        return value

    @model_validator(mode="after")
    def _backend_needs(self) -> Settings:
        if self.backend == "cadence" and self.cadence_domain is None:
            raise ValueError("CADENCE_DOMAIN is required when COMPLETER_BACKEND is 'cadence'")
        return self

    @model_validator(mode="after")
    def _scopes_name_secrets(self) -> Settings:
        if self.signing_scopes is not None:
            try:
                self.signing_keys  # noqa: B018 - parses the scopes against the secrets' names
            except ValueError as exc:
                raise ValueError(f"COMPLETER_SIGNING_SCOPES is invalid: {exc}") from None
        return self

    @property
    def s3_key(self) -> KeyPattern | None:
        """``COMPLETER_S3_KEY_PATTERN``, parsed."""
        return _key_pattern(self.s3_key_pattern)

    @property
    def gcs_key(self) -> KeyPattern | None:
        """``COMPLETER_GCS_KEY_PATTERN``, parsed."""
        return _key_pattern(self.gcs_key_pattern)

    @property
    def max_payload_bytes(self) -> int:
        """The encoded result/details limit: the override, else the backend's default."""
        if self.max_payload_bytes_override is not None:
            return self.max_payload_bytes_override
        return DEFAULT_PAYLOAD_LIMITS[self.backend]

    @property
    def signing_secret_values(self) -> tuple[str, ...]:
        """The raw ``COMPLETER_SIGNING_SECRETS`` entries, for the verifier only."""
        return tuple(secret.get_secret_value() for secret in self.signing_secrets)

    @cached_property
    def signing_keys(self) -> tuple[SigningKey, ...]:
        """The signing secrets as HMAC keys, each with its name and scope."""
        pairs = parse_signing_secrets(" ".join(self.signing_secret_values))
        scopes = (
            parse_scopes(self.signing_scopes, secret_names=[name for name, _ in pairs])
            if self.signing_scopes is not None
            else {}
        )
        return tuple(
            SigningKey(
                name=name,
                key=key,
                scope=scopes.get(name, UNRESTRICTED) if name is not None else UNRESTRICTED,
                number=number,
            )
            for number, (name, key) in enumerate(pairs, start=1)
        )


def _key_pattern(value: str | None) -> KeyPattern | None:
    from completer.events.objects import KeyPattern

    return None if value is None else KeyPattern(value)


def require_http_guard(settings: Settings) -> None:
    """Refuse to start an HTTP function that nothing guards.

    The HTTP function (on GCP and on Lambda) calls this at start: with none of
    ``COMPLETER_SIGNING_SECRETS``, ``COMPLETER_LINK_SECRET`` and
    ``COMPLETER_ALLOW_UNSIGNED=true``, anyone who reaches it could complete any activity.

    Raises:
        ConfigurationError: Nothing guards the function; one sentence says what to set.
    """
    if settings.signing_secrets or settings.link_secret is not None or settings.allow_unsigned:
        return
    raise ConfigurationError(
        "The HTTP function refuses to start unguarded: set COMPLETER_SIGNING_SECRETS "
        "(signed requests), COMPLETER_LINK_SECRET (completion links), or "
        "COMPLETER_ALLOW_UNSIGNED=true when the platform's IAM already guards the endpoint."
    )


_ENV_NAMES = {
    name: str(field.validation_alias.choices[0])
    for name, field in Settings.model_fields.items()
    if isinstance(field.validation_alias, AliasChoices)
}


def load_settings() -> Settings:
    """Read the settings from the environment now.

    Raises:
        ConfigurationError: A value is wrong; the message names the variable.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    sentences = []
    for err in exc.errors(include_url=False, include_context=False):
        loc = err["loc"][0] if err["loc"] else ""
        variable = _ENV_NAMES.get(str(loc), str(loc))
        reason = str(err["msg"]).removeprefix("Value error, ")
        if not variable:
            known = reason.startswith(("COMPLETER_", "CADENCE_"))
            sentences.append(f"{reason}." if known else f"Invalid configuration: {reason}.")
            continue
        shown = "" if "SECRET" in variable or "KEY" in variable else f" (got {err['input']!r})"
        sentences.append(f"{variable} is invalid{shown}: {reason}.")
    return " ".join(sentences)


@cache
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return load_settings()
