"""Extras: each engine, trigger and ledger store is declared once, in pyproject.toml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from completer.backends import BACKENDS
from completer.extras import extra_packages
from completer.ledger import STORES

ROOT = Path(__file__).resolve().parent.parent
OPTIONAL = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_every_engine_and_shared_ledger_store_is_an_extra_of_its_name():
    assert set(BACKENDS) <= set(OPTIONAL)
    assert {f"ledger-{kind}" for kind in STORES if kind != "memory"} <= set(OPTIONAL)
    for trigger in ("http", "http-lambda", "pubsub", "s3", "gcs"):
        assert trigger in OPTIONAL


def test_the_packages_of_an_extra_come_from_the_installed_metadata():
    assert extra_packages("temporal") == ("temporalio",)
    assert extra_packages("ledger-firestore") == ("google-cloud-firestore",)
    assert extra_packages("no-such-extra") == ()


def test_the_build_derives_every_artefact_from_the_extras():
    spec = importlib.util.spec_from_file_location("build", ROOT / "packaging" / "build.py")
    assert spec is not None
    assert spec.loader is not None
    build: Any = importlib.util.module_from_spec(spec)
    sys.modules["build"] = build  # its dataclasses look their module up while defined
    try:
        spec.loader.exec_module(build)
    finally:
        del sys.modules["build"]
    assert set(build.ALL_BACKENDS) == set(BACKENDS)
    artefacts = {a.name: a for a in build.gcp_artefacts(["stepfunctions"])}
    artefacts |= {a.name: a for a in build.aws_artefacts(["stepfunctions"])}
    assert artefacts["aws-s3"].packages == build.extra_packages(
        "stepfunctions", "s3", "ledger-dynamodb"
    )
    assert "temporalio" not in artefacts["aws-s3"].packages
    assert "google-cloud-firestore" in artefacts["gcp-http"].packages


def test_a_missing_engine_extra_is_one_sentence_naming_it():
    # A process where temporalio cannot be imported, as without the extra.
    probe = (
        "import sys; sys.modules['temporalio'] = None\n"
        "from completer.backends import load_backend_class\n"
        "from completer.errors import ConfigurationError\n"
        "try:\n"
        "    load_backend_class('temporal')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    sentence = done.stdout.strip()
    assert sentence.startswith(
        "COMPLETER_BACKEND=temporal needs the extra 'temporal' (temporalio), which is not "
        "installed (temporalio"
    )
    assert sentence.endswith("is missing): pip install 'activity-completer[temporal]'.")


def test_completer_dev_says_plainly_that_it_needs_a_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    import click

    from completer.dev import checkout

    checkout.require_checkout()  # this is a checkout
    monkeypatch.setattr(checkout, "REPO", tmp_path)  # as in site-packages: no functions/
    with pytest.raises(click.ClickException, match="source checkout"):
        checkout.require_checkout()
