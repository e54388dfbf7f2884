"""Child processes of ``completer dev`` / ``completer demo``: started and always stopped.

Each child runs in its own session (process group), so stopping it stops whatever it
started too (gunicorn workers, the emulator's JVM). Children are stopped in reverse order
on a normal exit, on Ctrl-C or SIGTERM, at interpreter exit (``atexit``), and, on Linux,
also when this process dies without cleaning up (SIGKILL, the OOM killer): see
:func:`die_with_parent`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Child", "Children", "ServiceFailed", "die_with_parent"]

HOST = "127.0.0.1"


class ServiceFailed(RuntimeError):
    """A service of the stack did not start or exited; the message says which and why."""


# Turns the parent-death signal (SIGUSR1) into SIGTERM for the whole group (trapped before
# the service starts, so no death goes unnoticed once it runs; a handler, unlike an ignored
# signal, is not inherited), starts the service, then ignores SIGTERM itself (a stop
# signals the whole group, and the service must see it alone), and exits with the
# service's own status. Not SIGHUP: under nohup it is ignored on entry, and a shell cannot
# trap a signal ignored on entry.
_GROUP_GUARD = (
    'trap "kill -TERM 0" USR1; "$@" & pid=$!; trap "" TERM; '
    'while :; do wait "$pid"; status=$?; kill -0 "$pid" 2>/dev/null || exit "$status"; done'
)


def die_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped so that the service's whole process group dies with this process.

    On Linux, util-linux's ``setpriv`` sets the parent-death signal (SIGUSR1) and execs a
    ``sh`` that waits for the service: when this process dies, even by SIGKILL, the kernel
    signals the ``sh``, which sends SIGTERM to the service's process group (a stop that
    signals the group reaches the service alone, and the ``sh`` exits with the service's
    status). So a grandchild dies too:
    the Firestore emulator's launcher script runs its JVM without ``exec``, and the JVM
    would not get a parent-death signal of its own. No Python code runs between fork and
    exec, which a process holding gRPC threads must avoid. Start the result in a new
    session (``start_new_session=True``); elsewhere it is ``argv`` unchanged.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", "USR1", "--", "/bin/sh", "-c", _GROUP_GUARD, "sh", *argv]


@dataclass
class Child:
    """One started service process and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 1500) -> str:
        """The end of its log, for an error message."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Children:
    """Starts service processes and guarantees they are all stopped."""

    def __init__(self, log_dir: Path) -> None:
        """Log each child to ``log_dir/<name>.log``."""
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.stopping = False
        atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
    ) -> Child:
        """Start ``argv`` in its own process group, output to its log file."""
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our own tools, no shell
                die_with_parent(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def exited(self) -> Child | None:
        """A child that has exited on its own, if any."""
        if self.stopping:
            return None
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop_all(self, grace: float = 5.0) -> None:
        """SIGTERM every child's process group, newest first; SIGKILL what is left."""
        self.stopping = True
        for child in reversed(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGTERM)
        for child in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=grace)
            # The group may outlive its leader (a JVM under a shell script): kill it anyway.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=grace)
        self.children.clear()


async def wait_for_port(port: int, child: Child, *, within: float = 60.0) -> None:
    """Wait until ``child`` accepts TCP connections on 127.0.0.1:``port``.

    Raises:
        ServiceFailed: It exited first, or did not listen within ``within`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if child.process.poll() is not None:
            raise ServiceFailed(
                f"{child.name} exited with status {child.process.returncode} "
                f"(log {child.log}):\n{child.tail()}"
            )
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        await asyncio.sleep(0.1)
    raise ServiceFailed(f"{child.name} did not listen on {HOST}:{port} within {within:.0f} s.")
