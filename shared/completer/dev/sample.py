"""The sample the local stack runs: a workflow whose one activity waits to be completed.

The activity hands its task token to a callback (which prints ways to complete it, or
lets the demo complete it) and returns pending, exactly what a user's activity does. Given a
correlation key, it first registers the key (as a user's activity calls
``completer.activity.register_async``), so that a file named by the key completes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
    key: str = ""
    """The correlation key the activity registered ("" for none)."""


Register = Callable[[str, str], Awaitable[Any]]
"""Registers a correlation key for a task token; the outcome of a request that waited."""


class SampleActivities:
    """The waiting activity, bound to what is done with its token."""

    def __init__(
        self, on_waiting: Callable[[Waiting], None], register: Register | None = None
    ) -> None:
        self.on_waiting = on_waiting
        self.register = register

    @activity.defn(name="wait_for_completion")
    async def wait_for_completion(self, trigger: str, key: str = "") -> Any:
        """Hand out the task token (or register ``key``) and return pending."""
        info = activity.info()
        waiting = Waiting(
            trigger=trigger,
            workflow_id=info.workflow_id or "",
            activity_id=info.activity_id,
            task_token=encode_token(info.task_token),
            key=key,
        )
        if key:
            if self.register is None:
                raise RuntimeError("this stack keeps no correlation keys (moto is not running)")
            # A file that arrived first is carried out now: the activity is already complete.
            if await self.register(key, waiting.task_token) is not None:
                activity.raise_complete_async()
        self.on_waiting(waiting)
        activity.raise_complete_async()


@workflow.defn(name="CompleterSample")
class SampleWorkflow:
    """Waits for one activity completed from outside and returns its result."""

    @workflow.run
    async def run(self, trigger: str, key: str = "") -> Any:
        return await workflow.execute_activity_method(
            SampleActivities.wait_for_completion,
            args=[trigger, key],
            activity_id=ACTIVITY_ID,
            start_to_close_timeout=timedelta(days=1),
            # A token is per attempt: a retry would orphan the commands already printed.
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
