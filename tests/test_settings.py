"""Configuration (docs/configuration.md): defaults, and one sentence naming a wrong variable."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from completer.backends import load_backend_class
from completer.backends.temporal import TemporalBackend
from completer.errors import ConfigurationError
from completer.settings import Settings, load_settings, require_http_guard


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch):
    import os

    for name in list(os.environ):
        if name.startswith(("COMPLETER_", "CADENCE_")):
            monkeypatch.delenv(name)


def test_defaults():
    s = load_settings()
    assert s.backend == "temporal"
    assert s.rpc_timeout_seconds == 10
    assert s.max_body_bytes == 3 * 1024 * 1024
    assert s.max_payload_bytes == 2 * 1024 * 1024
    assert s.signing_secrets == ()
    assert s.signature_tolerance_seconds == 300
    assert s.link_secret is None
    assert s.dead_letter_topic is None
    assert s.dead_letter_queue is None
    assert s.s3_inline_max_bytes == 262_144
    assert s.identity.startswith("activity-completer@")
    assert s.cadence_address == "localhost:7833"


def test_payload_limit_follows_backend(monkeypatch):
    monkeypatch.setenv("COMPLETER_BACKEND", "stepfunctions")
    assert load_settings().max_payload_bytes == 262_144
    monkeypatch.setenv("COMPLETER_MAX_PAYLOAD_BYTES", "1000")
    assert load_settings().max_payload_bytes == 1000


def test_dead_letter_queue_is_a_queue_url(monkeypatch):
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/refused-uploads"
    monkeypatch.setenv("COMPLETER_DEAD_LETTER_QUEUE", url)
    assert load_settings().dead_letter_queue == url
    monkeypatch.setenv("COMPLETER_DEAD_LETTER_QUEUE", " ")
    assert load_settings().dead_letter_queue is None


def _secret(size: int = 24) -> str:
    return "whsec_" + base64.b64encode(os.urandom(size)).decode()


def test_secrets_split_for_rotation(monkeypatch):
    old, new = _secret(), _secret(32)
    monkeypatch.setenv("COMPLETER_SIGNING_SECRETS", f"{old}  {new}")
    settings = load_settings()
    assert settings.signing_secret_values == (old, new)
    assert [k.key for k in settings.signing_keys] == [
        base64.b64decode(old[6:]),
        base64.b64decode(new[6:]),
    ]
    assert [k.label for k in settings.signing_keys] == ["#1", "#2"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COMPLETER_BACKEND", "kafka"),
        ("COMPLETER_RPC_TIMEOUT_SECONDS", "soon"),
        ("COMPLETER_RPC_TIMEOUT_SECONDS", "0"),
        ("COMPLETER_MAX_BODY_BYTES", "-1"),
        ("COMPLETER_MAX_PAYLOAD_BYTES", "lots"),
        ("COMPLETER_SIGNATURE_TOLERANCE_SECONDS", "-5"),
        ("COMPLETER_SIGNATURE_TOLERANCE_SECONDS", "0"),
        ("COMPLETER_SIGNATURE_TOLERANCE_SECONDS", "3601"),
        ("COMPLETER_SIGNATURE_TOLERANCE_SECONDS", "999999999"),
        ("COMPLETER_ALLOW_UNSIGNED", "perhaps"),
        ("COMPLETER_DEAD_LETTER_TOPIC", "dead-letters"),
        ("COMPLETER_DEAD_LETTER_QUEUE", "refused-uploads"),
        ("COMPLETER_DEAD_LETTER_QUEUE", "arn:aws:sqs:us-east-1:123456789012:refused"),
        ("COMPLETER_S3_INLINE_MAX_BYTES", "1.5"),
        ("COMPLETER_DATA_CONVERTER", "not a path"),
    ],
)
def test_wrong_value_names_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(variable)
    assert "\n" not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [("COMPLETER_SIGNING_SECRETS", "hunter2-not-whsec"), ("COMPLETER_LINK_SECRET", "short-secret")],
)
def test_secrets_are_never_echoed(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert variable in str(info.value)
    assert value not in str(info.value)


def test_cadence_needs_a_domain(monkeypatch):
    monkeypatch.setenv("COMPLETER_BACKEND", "cadence")
    with pytest.raises(ConfigurationError, match="CADENCE_DOMAIN is required"):
        load_settings()


def test_unknown_backend_name():
    with pytest.raises(ConfigurationError, match="COMPLETER_BACKEND"):
        load_backend_class("kafka")


@pytest.mark.parametrize(
    ("value", "reason"),
    [("no_such_module_xyz:converter", "cannot import"), ("json:dumps", "not a temporalio")],
)
def test_data_converter_must_import_to_a_converter(monkeypatch, value, reason):
    monkeypatch.setenv("COMPLETER_DATA_CONVERTER", value)
    with pytest.raises(ConfigurationError, match=f"COMPLETER_DATA_CONVERTER.*{reason}"):
        TemporalBackend(load_settings())


def test_wrong_config_fails_cli_with_one_sentence():
    env = {"PATH": "/usr/bin:/bin", "COMPLETER_RPC_TIMEOUT_SECONDS": "soon"}
    proc = subprocess.run(
        [sys.executable, "-m", "completer.cli", "complete", "--token", "dG9rZW4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 9
    assert proc.stderr.strip().count("\n") == 0
    assert "COMPLETER_RPC_TIMEOUT_SECONDS is invalid" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tolerance_bounds_are_accepted(monkeypatch):
    for value in ("1", "3600"):
        monkeypatch.setenv("COMPLETER_SIGNATURE_TOLERANCE_SECONDS", value)
        assert load_settings().signature_tolerance_seconds == int(value)


# whsec_ + strict base64 of >= 24 bytes; the weak and lenient forms the old check took.
WEAK_OR_MALFORMED = [
    "whsec_abcd",  # 3 bytes
    "whsec_" + base64.b64encode(b"x" * 23).decode(),  # one byte short
    "whsec_" + base64.b64encode(b"x" * 24).decode().replace("e", "!"),  # invalid character
    "whsec_" + base64.b64encode(b"x" * 25).decode().rstrip("="),  # unpadded
    "whsec_" + base64.urlsafe_b64encode(b"\xff" * 24).decode(),  # URL-safe alphabet
    "whsec_",
    base64.b64encode(b"x" * 24).decode(),  # no prefix
    "bad name=" + "whsec_" + base64.b64encode(b"x" * 24).decode(),
]


@pytest.mark.parametrize("value", WEAK_OR_MALFORMED)
def test_weak_or_malformed_secrets_stop_the_start_without_echo(monkeypatch, value):
    monkeypatch.setenv("COMPLETER_SIGNING_SECRETS", f"{_secret()} {value}")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("COMPLETER_SIGNING_SECRETS is invalid: secret number 2")
    assert message.count(". ") == 0
    assert "\n" not in message
    for part in value.split("="):
        if len(part) > 8:
            assert part.removeprefix("whsec_") not in message


def test_allow_unsigned_is_a_boolean(monkeypatch):
    assert load_settings().allow_unsigned is False
    monkeypatch.setenv("COMPLETER_ALLOW_UNSIGNED", "true")
    assert load_settings().allow_unsigned is True


@pytest.mark.parametrize(
    "env",
    [
        {"COMPLETER_SIGNING_SECRETS": "GEN"},
        {"COMPLETER_LINK_SECRET": "x" * 32},
        {"COMPLETER_ALLOW_UNSIGNED": "true"},
    ],
)
def test_http_function_may_start_when_something_guards_it(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, _secret() if value == "GEN" else value)
    require_http_guard(load_settings())


@pytest.mark.parametrize("allow", [None, "false", ""])
def test_http_function_refuses_to_start_unguarded(monkeypatch, allow):
    if allow is not None:
        monkeypatch.setenv("COMPLETER_ALLOW_UNSIGNED", allow)
    monkeypatch.setenv("COMPLETER_LINK_SECRET", "   ")
    with pytest.raises(ConfigurationError) as info:
        require_http_guard(load_settings())
    message = str(info.value)
    assert message.count(". ") == 0
    for variable in (
        "COMPLETER_SIGNING_SECRETS",
        "COMPLETER_LINK_SECRET",
        "COMPLETER_ALLOW_UNSIGNED",
    ):
        assert variable in message


def test_scopes_attach_to_named_secrets(monkeypatch):
    acme, beta, rotated = _secret(), _secret(), _secret(48)
    monkeypatch.setenv("COMPLETER_SIGNING_SECRETS", f"acme={acme} beta={beta} acme={rotated}")
    monkeypatch.setenv(
        "COMPLETER_SIGNING_SCOPES",
        '{"acme": {"workflow_id_prefixes": ["acme-"], "actions": ["complete", "fail"]}}',
    )
    keys = load_settings().signing_keys
    assert [k.label for k in keys] == ["acme", "beta", "acme"]
    assert keys[0].scope == keys[2].scope
    assert keys[0].scope.workflow_id_prefixes == ("acme-",)
    assert keys[0].scope.namings == frozenset({"ids"})  # prefixes cannot be checked on tokens
    assert keys[1].scope.unrestricted
    assert acme not in repr(keys)
    assert acme[6:] not in repr(keys)


@pytest.mark.parametrize(
    ("scopes", "reason"),
    [
        ('{"acmx": {"actions": ["complete"]}}', "names no secret"),
        ("[1]", "JSON object"),
        ("{not json", "JSON object"),
        ('{"acme": {}}', "must be an object"),
        ('{"acme": {"actions": ["approve"]}}', "actions must be among"),
        ('{"acme": {"naming": ["email"]}}', "naming must be among"),
        ('{"acme": {"workflow_id_prefixes": "acme-"}}', "non-empty list of strings"),
        ('{"acme": {"workflow_id_prefixes": [""]}}', "must not be empty"),
        ('{"acme": {"prefixes": ["a"]}}', "unknown fields: prefixes"),
        (
            '{"acme": {"workflow_id_prefixes": ["a-"], "naming": ["token", "ids"]}}',
            "cannot use task tokens",
        ),
    ],
)
def test_wrong_scopes_stop_the_start(monkeypatch, scopes, reason):
    secret = _secret()
    monkeypatch.setenv("COMPLETER_SIGNING_SECRETS", f"acme={secret}")
    monkeypatch.setenv("COMPLETER_SIGNING_SCOPES", scopes)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("COMPLETER_SIGNING_SCOPES is invalid: ")
    assert reason in message
    assert secret[6:] not in message


def test_every_setting_is_described_for_the_generated_configuration_page():
    # docs/configuration.md's table is generated from these descriptions (docs/hooks.py).
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undescribed == []
