"""Helpers to run real local services for tests: free ports, processes, readiness, skips."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from completer.dev.processes import die_with_parent

IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_service(reason: str) -> None:
    """Skip the test with a reason, or fail it under CI=true where every service must run."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def venv_tool(name: str) -> str | None:
    """A console script installed beside this Python (the .venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def wait_for_port(
    port: int, *, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before listening on {port}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: str | Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a process in its own process group and kill the whole group on exit."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    # From the main thread, the kernel also stops the service's whole process group if
    # pytest itself is killed (a timeout, Ctrl-C twice): no orphan servers, not even the JVM
    # an emulator's launcher script starts (die_with_parent). The signal follows the
    # spawning thread, so a service started from a worker thread relies on the cleanup
    # below alone.
    in_main = threading.current_thread() is threading.main_thread()
    process = subprocess.Popen(
        die_with_parent(argv) if in_main else list(argv),
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        stop_process_group(process)
        if log_path:
            log.close()  # type: ignore[union-attr]


def stop_process_group(process: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
