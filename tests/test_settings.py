"""Configuration (CONTRACT §7): defaults, and one clear sentence naming the variable when wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest

from completer.backends import load_backend_class
from completer.backends.temporal import TemporalBackend
from completer.errors import ConfigurationError
from completer.settings import load_settings


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


def test_secrets_split_for_rotation(monkeypatch):
    monkeypatch.setenv("COMPLETER_SIGNING_SECRETS", "whsec_b2xk whsec_bmV3")
    assert load_settings().signing_secret_values == ("whsec_b2xk", "whsec_bmV3")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COMPLETER_BACKEND", "kafka"),
        ("COMPLETER_RPC_TIMEOUT_SECONDS", "soon"),
        ("COMPLETER_RPC_TIMEOUT_SECONDS", "0"),
        ("COMPLETER_MAX_BODY_BYTES", "-1"),
        ("COMPLETER_MAX_PAYLOAD_BYTES", "lots"),
        ("COMPLETER_SIGNATURE_TOLERANCE_SECONDS", "-5"),
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
