"""The engine client in a forked worker (gunicorn, as functions-framework serves functions).

After a fork, Python runs the registered hooks in registration order. Our hook starts the
worker's engine connection at once; if the thread pool's shutdown lock (held across fork)
were re-initialised only by a later hook, the connecting thread could take the stale lock
and block forever: every request of that worker would then time out. Seen with the Step
Functions backend (its connect runs in a thread pool) under load; this makes it certain.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import asyncio, os, time
os.environ.update(COMPLETER_BACKEND="stepfunctions", AWS_REGION="us-east-1",
                  AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                  AWS_ENDPOINT_URL_SFN="http://127.0.0.1:9")
import completer.client as client
# A slow hook registered after ours and before any later one: our connecting thread runs
# while it sleeps, before hooks registered after it (the thread pool's, if it came later).
os.register_at_fork(after_in_child=lambda: time.sleep(0.5))
engine = client.ProcessClient()  # imports boto3, and with it the thread pool
pid = os.fork()
if pid == 0:
    try:
        client.default_client()._submit(asyncio.sleep(0)).result(timeout=5)
        client.default_client()._submit(client.default_client()._client.ensure_connected()).result(timeout=5)
    except BaseException as exc:
        print("worker stuck:", type(exc).__name__, flush=True)
        os._exit(3)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("worker exit", os.waitstatus_to_exitcode(status))
"""


def test_forked_worker_connects_even_when_our_hook_runs_first():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "worker exit 0", proc.stdout + proc.stderr
