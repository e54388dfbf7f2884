"""Partner file drop by key: the file's name completes the activity, no token handed out.

The partner only knows the order number. The activity registers it as a correlation key
with ``completer.activity.register_async`` (in the shared ledger, ``COMPLETER_LEDGER``)
and tells the partner where to drop the file: ``s3://<bucket>/inbox/<order>.json``. The
S3 function, configured with ``COMPLETER_S3_KEY_PATTERN=inbox/{correlation_key}.json``,
reads the key out of the object key and completes the activity with the file's JSON. A
file dropped before the activity registered is kept for the key, and the registration
completes the activity at once.

Run it against AWS (or moto) with the S3 function deployed with the same ledger::

    export COMPLETER_LEDGER=dynamodb://completer-ledger
    .venv/bin/python examples/partner_drop_by_key.py --bucket partner-drop --order ORDER-1042
    aws s3 cp result.json s3://partner-drop/inbox/ORDER-1042.json   # the partner

``TEMPORAL_ADDRESS`` (default ``127.0.0.1:7233``) and ``TEMPORAL_NAMESPACE`` name the
server; the registration completes through them when a file was already waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from completer.activity import register_async

if TYPE_CHECKING:
    from completer.correlation import CorrelationExecutor

TASK_QUEUE = "completer-sample-drop"
DROP_SECONDS = 7 * 24 * 3600
INBOX = "inbox/{order}.json"


class DropActivities:
    """Activities that know the bucket the S3 function watches."""

    def __init__(
        self,
        *,
        bucket: str,
        announce: Callable[[str], None] = print,
        executor: CorrelationExecutor | None = None,
    ) -> None:
        self.bucket = bucket
        self.announce = announce
        # None: the chain is built from the environment's settings for each registration.
        self.executor = executor

    @activity.defn
    async def await_partner_file(self, order: str) -> Any:
        """Register ``order`` as this activity's key; completed when its file is dropped."""
        outcome = await register_async(order, ttl_seconds=DROP_SECONDS, executor=self.executor)
        if outcome is None:
            place = INBOX.format(order=order)
            self.announce(f"Ask the partner to drop the file at s3://{self.bucket}/{place}")
        else:
            self.announce(f"The partner's file was already there: {outcome.status}")
        activity.raise_complete_async()


@workflow.defn
class PartnerDropWorkflow:
    """Waits for the partner's file for ``order`` and returns its content."""

    @workflow.run
    async def run(self, order: str) -> Any:
        return await workflow.execute_activity_method(
            DropActivities.await_partner_file,
            order,
            start_to_close_timeout=timedelta(seconds=DROP_SECONDS),
            # A retry would be another activity: the key would name a task token of the past.
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


def build_worker(
    client: Client,
    *,
    bucket: str,
    task_queue: str = TASK_QUEUE,
    announce: Callable[[str], None] = print,
    executor: CorrelationExecutor | None = None,
) -> Worker:
    """A worker for this sample's workflow and activity."""
    activities = DropActivities(bucket=bucket, announce=announce, executor=executor)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PartnerDropWorkflow],
        activities=[activities.await_partner_file],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket", default="completer-uploads", help="watched by the S3 function")
    parser.add_argument("--order", default="ORDER-1042", help="the key the partner knows")
    args = parser.parse_args()
    if not os.environ.get("COMPLETER_LEDGER"):
        parser.error("set COMPLETER_LEDGER to the functions' shared ledger")
    # A runtime of our own, dropped when main() returns: temporalio's default one lives until
    # interpreter exit, where its threads can abort the process (PyGILState_Release).
    runtime = Runtime(telemetry=TelemetryConfig())
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        runtime=runtime,
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
    )
    async with build_worker(client, bucket=args.bucket):
        workflow_id = f"drop-{args.order}"
        print(f"Started workflow {workflow_id}; waiting for the partner's file...")
        result = await client.execute_workflow(
            PartnerDropWorkflow.run, args.order, id=workflow_id, task_queue=TASK_QUEUE
        )
        print(f"Workflow result: {result}")
    del client, runtime
    gc.collect()  # free the runtime's threads now, not during interpreter exit


if __name__ == "__main__":
    asyncio.run(main())
