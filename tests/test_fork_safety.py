"""The engine client in a forked worker (gunicorn forks functions-framework's workers).

The function builds its :class:`~completer.handlers.worker.WorkerClient` at import, in the
parent; a connection made there would not survive the fork. The worker must make its own
client, on its own loop, and complete through it: a PID check, no fork hook.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = pytest.mark.temporal

PROBE = """
import asyncio, base64, os, sys
from completer.handlers.worker import WorkerClient
from completer.models import CompletionRequest
from completer.settings import Settings

worker = WorkerClient(Settings(TEMPORAL_ADDRESS=sys.argv[1]))
parent_client = worker.client
# The parent connects too (what a pre-fork warm-up would do): the child must not reuse it.
asyncio.run(parent_client.ensure_connected())
pid = os.fork()
if pid == 0:
    async def complete() -> None:
        assert worker.client is not parent_client, "the worker reused its parent's client"
        request = CompletionRequest.build({"task_token": sys.argv[2], "result": "from the worker"})
        outcome = await worker.execute(request)
        assert outcome.status.value == "completed", outcome
        await worker.close()
    try:
        asyncio.run(complete())
    except BaseException as exc:
        print("worker failed:", type(exc).__name__, exc, flush=True)
        os._exit(3)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("worker exit", os.waitstatus_to_exitcode(status), flush=True)
"""


async def test_forked_worker_makes_its_own_client_and_completes(
    temporal_server: TemporalServer, waiting: WaitingActivity
):
    argv = [sys.executable, "-c", PROBE, temporal_server.address, waiting.token_b64]
    proc = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "worker exit 0", proc.stdout + proc.stderr
    assert await waiting.handle.result() == "from the worker"
