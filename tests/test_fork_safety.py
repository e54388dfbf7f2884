"""The engine client in a forked worker (gunicorn forks functions-framework's workers).

The function builds its :class:`~completer.handlers.worker.WorkerClient` at import, in the
parent; a connection made there would not survive the fork. The worker must make its own
client, on its own loop, and complete through it: a PID check, no fork hook.
"""

from __future__ import annotations

import asyncio
import os
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
# As gunicorn's master: the client is built at import but never connected before the fork
# (a Temporal runtime's threads do not survive a fork; connecting first made the child abort
# now and then). The worker must make and connect its own.
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


LEDGER_PROBE = """
import asyncio, os, sys, time
from completer.handlers.worker import WorkerLedger
from completer.ledger import Record, RecordState
from completer.settings import Settings

worker = WorkerLedger(Settings(COMPLETER_LEDGER="firestore://(default)/fork-probe"))
parent = worker.ledger
# As under gunicorn: the parent builds the ledger's client (checking the configuration) but
# never calls it; grpcio does not survive a fork once its threads run, so the worker that
# serves makes its own client and channel.
pid = os.fork()
if pid == 0:
    async def use() -> None:
        assert worker.ledger is not parent, "the worker reused its parent's ledger"
        record = Record(key=f"probe-{os.getpid()}", state=RecordState.COMPLETED,
                        expires_at=int(time.time()) + 3600)
        assert await worker.ledger.store.create(record) is None
        assert (await worker.ledger.store.get(record.key)) is not None
        await worker.close()
    try:
        asyncio.run(use())
    except BaseException as exc:
        print("worker failed:", type(exc).__name__, exc, flush=True)
        os._exit(3)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("worker exit", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_forked_worker_makes_its_own_ledger_client(firestore_host: str):
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": firestore_host}
    env["GOOGLE_CLOUD_PROJECT"] = "completer-test"
    proc = subprocess.run(
        [sys.executable, "-c", LEDGER_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "worker exit 0", proc.stdout + proc.stderr
