"""The local stack's child processes die with it, grandchildren included, even when it is
killed with SIGKILL (nothing of it runs to clean up). Real processes, no services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from completer.dev.processes import Children, die_with_parent

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="the parent-death signal is Linux's (prctl via setpriv)"
)

# A supervisor that starts one service which, like the Firestore emulator's launcher script,
# runs its real work as a child instead of exec'ing it; then waits to be killed.
SUPERVISOR = """
import sys, time
from pathlib import Path
from completer.dev.processes import Children

children = Children(Path(sys.argv[1]))
children.start("service", ["sh", "-c", 'sleep 300 & echo $! > "$0"; wait', sys.argv[2]], env={})
print("started", flush=True)
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_grandchild_dies_when_the_supervisor_is_killed(tmp_path: Path):
    pid_file = tmp_path / "grandchild.pid"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path), str(pid_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    grandchild = None
    try:
        assert supervisor.stdout is not None
        assert supervisor.stdout.readline().strip() == "started"
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10)
        grandchild = int(pid_file.read_text())
        assert alive(grandchild)
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=10)
        assert wait_for(lambda: not alive(grandchild), 10), "the grandchild outlived the stack"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(timeout=10)
        if supervisor.stdout is not None:
            supervisor.stdout.close()
        if grandchild is not None and alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_the_service_exit_status_passes_through(tmp_path: Path):
    children = Children(tmp_path)
    try:
        child = children.start("fails", ["sh", "-c", "exit 3"], env={})
        assert child.process.wait(timeout=10) == 3
        assert children.exited() is child
    finally:
        children.stop_all()


def test_stop_all_stops_the_service_group(tmp_path: Path):
    children = Children(tmp_path)
    pid_file = tmp_path / "worker.pid"
    child = children.start(
        "service", ["sh", "-c", 'sleep 300 & echo $! > "$0"; wait', str(pid_file)], env={}
    )
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10)
    worker = int(pid_file.read_text())
    started = time.monotonic()
    children.stop_all(grace=5)
    assert time.monotonic() - started < 5  # SIGTERM was enough: no grace period used up
    assert child.process.poll() is not None
    assert wait_for(lambda: not alive(worker), 5)


def test_without_setpriv_the_command_is_unchanged(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert die_with_parent(["temporal", "server"]) == ["temporal", "server"]


def test_a_graceful_stop_reports_the_service_status(tmp_path: Path):
    """A stop signals the whole group; the service exits 0 on SIGTERM, and so does its guard."""
    children = Children(tmp_path)
    ready = tmp_path / "ready"
    script = 'trap "exit 0" TERM; touch "$0"; while :; do sleep 0.1; done'
    child = children.start("graceful", ["sh", "-c", script, str(ready)], env={})
    assert wait_for(ready.exists, 10)
    os.killpg(child.process.pid, signal.SIGTERM)
    assert child.process.wait(timeout=10) == 0
    children.stop_all()
