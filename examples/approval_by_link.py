"""Human approval by link: the activity prints approve/reject links and waits.

The activity creates two signed, expiring links with ``completer.activity.approval_links``
(``completer.links`` underneath), hands them to a person (here: prints them), and returns
pending with ``activity.raise_complete_async()``. Opening a link shows a confirmation page
of the HTTP function; its button completes the activity ("approve") or fails it with a
non-retryable ``Rejected`` error ("reject"). The workflow prints the decision.

Run it against the local stack (``make run``) or any Temporal server::

    export COMPLETER_LINK_SECRET=...   # the HTTP function's link secret (32+ characters)
    .venv/bin/python examples/approval_by_link.py --url http://127.0.0.1:8080/ "Buy 3 laptops"

``TEMPORAL_ADDRESS`` (default ``127.0.0.1:7233``) and ``TEMPORAL_NAMESPACE`` name the
server. Without a browser, complete it with the CLI: ``completer complete -w <workflow id>
-a request-approval '{"approved": true}'``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from completer.activity import approval_links

TASK_QUEUE = "completer-sample-approval"
ACTIVITY_ID = "request-approval"


class ApprovalActivities:
    """Activities that need the link secret: it stays in the worker, never in history."""

    def __init__(
        self, *, base_url: str, link_secret: str, announce: Callable[[str], None] = print
    ) -> None:
        self.base_url = base_url
        self.link_secret = link_secret
        self.announce = announce

    @activity.defn
    async def request_approval(self, subject: str) -> dict[str, Any]:
        """Send approve/reject links for ``subject``; completed later by a click."""
        # No token or IDs given: the helpers use this activity's own task token.
        # The title and description are what the person reads above the button.
        links = approval_links(
            self.base_url,
            secret=self.link_secret,
            ttl_seconds=24 * 3600,
            title=f"Approve {subject}"[:200],
            description="The workflow waits for your decision; the links work for 24 hours.",
        )
        self.announce(
            f"Approval needed for {subject!r} (links work for 24 h):\n"
            f"  approve: {links.approve}\n"
            f"  reject:  {links.reject}"
        )
        activity.raise_complete_async()


@workflow.defn
class ApprovalWorkflow:
    """Asks a person to approve ``subject`` and returns the decision."""

    @workflow.run
    async def run(self, subject: str) -> str:
        try:
            result = await workflow.execute_activity_method(
                ApprovalActivities.request_approval,
                subject,
                activity_id=ACTIVITY_ID,
                start_to_close_timeout=timedelta(hours=24),
                # A task token is per attempt: a retry would make the sent links useless.
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == "Rejected":
                return f"rejected: {subject} ({cause.message})"
            raise
        return f"approved: {subject} ({result})"


def build_worker(
    client: Client,
    *,
    task_queue: str = TASK_QUEUE,
    base_url: str,
    link_secret: str,
    announce: Callable[[str], None] = print,
) -> Worker:
    """A worker for this sample's workflow and activity."""
    activities = ApprovalActivities(base_url=base_url, link_secret=link_secret, announce=announce)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ApprovalWorkflow],
        activities=[activities.request_approval],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("subject", nargs="?", default="Buy 3 laptops")
    parser.add_argument("--url", default="http://127.0.0.1:8080/", help="the HTTP function")
    args = parser.parse_args()
    secret = os.environ.get("COMPLETER_LINK_SECRET", "")
    if len(secret) < 32:
        raise SystemExit("set COMPLETER_LINK_SECRET to the HTTP function's (32+ characters).")
    # A runtime of our own, dropped when main() returns: temporalio's default one lives until
    # interpreter exit, where its threads can abort the process (PyGILState_Release).
    runtime = Runtime(telemetry=TelemetryConfig())
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        runtime=runtime,
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
    )
    async with build_worker(client, base_url=args.url, link_secret=secret):
        workflow_id = f"approval-{uuid.uuid4().hex[:8]}"
        print(f"Started workflow {workflow_id}; waiting for a decision...")
        decision = await client.execute_workflow(
            ApprovalWorkflow.run, args.subject, id=workflow_id, task_queue=TASK_QUEUE
        )
        print(f"Decision: {decision}")
    del client, runtime
    gc.collect()  # free the runtime's threads now, not during interpreter exit


if __name__ == "__main__":
    asyncio.run(main())
