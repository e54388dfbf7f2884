"""Thousands of waiting activities, made fast: workflows that each start a batch of activities
which hand out their task token and return pending; the worker stops once all are out."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

ACTIVITY_NAME = "bench_wait"
PER_WORKFLOW = 10

# (workflow_id, activity_id) -> task token, filled by the activities as they start.
_TOKENS: dict[tuple[str, str], bytes] = {}


@activity.defn(name=ACTIVITY_NAME)
async def bench_wait() -> Any:
    """Hand out the task token and return pending, like a user's waiting activity."""
    info = activity.info()
    _TOKENS[(info.workflow_id or "", info.activity_id)] = info.task_token
    activity.raise_complete_async()


@workflow.defn
class BatchWaitingWorkflow:
    """Starts ``count`` activities at once and waits for all of them to be completed."""

    @workflow.run
    async def run(self, count: int) -> Any:
        return await asyncio.gather(
            *(
                workflow.execute_activity(
                    ACTIVITY_NAME,
                    activity_id=f"a{i}",
                    start_to_close_timeout=timedelta(hours=2),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
                for i in range(count)
            )
        )


async def make_tokens(
    client: Client, count: int, *, per_workflow: int = PER_WORKFLOW
) -> list[bytes]:
    """Start enough workflows for ``count`` waiting activities; return their tokens.

    The tokens are interleaved across workflows (token i and i+1 belong to different
    workflows), so concurrent completions rarely contend on one workflow's lock.
    """
    workflows = -(-count // per_workflow)
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    ids = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(workflows)]
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BatchWaitingWorkflow],
        activities=[bench_wait],
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_concurrent_activity_task_polls=16,
        max_concurrent_workflow_task_polls=8,
        max_concurrent_activities=1000,
    ):
        gate = asyncio.Semaphore(64)

        async def start(workflow_id: str) -> None:
            async with gate:
                await client.start_workflow(
                    BatchWaitingWorkflow.run, per_workflow, id=workflow_id, task_queue=task_queue
                )

        await asyncio.gather(*(start(w) for w in ids))
        wanted = {(w, f"a{i}") for w in ids for i in range(per_workflow)}
        deadline = asyncio.get_running_loop().time() + 120 + count / 50
        while not wanted <= _TOKENS.keys():
            if asyncio.get_running_loop().time() > deadline:
                missing = len(wanted - _TOKENS.keys())
                raise TimeoutError(f"{missing} of {len(wanted)} activities did not start")
            await asyncio.sleep(0.05)
    tokens = [_TOKENS.pop((w, f"a{i}")) for i in range(per_workflow) for w in ids]
    return tokens[:count]
