"""The sample the local stack runs: a workflow whose one activity waits to be completed.

The activity hands its task token to a callback (which prints ways to complete it, or
lets the demo complete it) and returns pending, exactly what a user's activity does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from completer.tokens import encode_token

__all__ = ["ACTIVITY_ID", "SampleActivities", "SampleWorkflow", "Waiting"]

ACTIVITY_ID = "wait"


@dataclass(frozen=True)
class Waiting:
    """A pending activity of the sample workflow: which trigger it is for and its token."""

    trigger: str
    workflow_id: str
    activity_id: str
    task_token: str


class SampleActivities:
    """The waiting activity, bound to what is done with its token."""

    def __init__(self, on_waiting: Callable[[Waiting], None]) -> None:
        self.on_waiting = on_waiting

    @activity.defn(name="wait_for_completion")
    async def wait_for_completion(self, trigger: str) -> Any:
        """Hand out the task token and return pending: someone outside completes us."""
        info = activity.info()
        self.on_waiting(
            Waiting(
                trigger=trigger,
                workflow_id=info.workflow_id or "",
                activity_id=info.activity_id,
                task_token=encode_token(info.task_token),
            )
        )
        activity.raise_complete_async()


@workflow.defn(name="CompleterSample")
class SampleWorkflow:
    """Waits for one activity completed from outside and returns its result."""

    @workflow.run
    async def run(self, trigger: str) -> Any:
        return await workflow.execute_activity_method(
            SampleActivities.wait_for_completion,
            trigger,
            activity_id=ACTIVITY_ID,
            start_to_close_timeout=timedelta(days=1),
            # A token is per attempt: a retry would orphan the commands already printed.
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
