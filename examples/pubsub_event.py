"""Pub/Sub event: the activity prints the message that completes it, then waits.

The activity builds the attribute form of a completion message with
``completer.activity.pubsub_attributes`` (``task_token`` and ``action`` attributes; the
data is the result as JSON) and prints a ready-to-paste ``gcloud pubsub topics publish``
line. The Pub/Sub function, subscribed to the topic, completes the activity with the
data; the workflow prints it.

Run it against the local stack (``make run``: the Pub/Sub emulator behind the Pub/Sub
function) or a real project::

    .venv/bin/python examples/pubsub_event.py --project local-project --topic completions

For the emulator, point gcloud at it first:
``export CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=http://$PUBSUB_EMULATOR_HOST/``.
``TEMPORAL_ADDRESS`` (default ``127.0.0.1:7233``) names the Temporal server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shlex
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from completer.activity import pubsub_attributes

TASK_QUEUE = "completer-sample-pubsub"


def publish_command(
    *, project: str, topic: str, attributes: dict[str, str], data: Any = None
) -> str:
    """The ``gcloud`` line that publishes a completion message in the attribute form."""
    argv = [
        "gcloud",
        "pubsub",
        "topics",
        "publish",
        topic,
        f"--project={project}",
        "--attribute=" + ",".join(f"{name}={value}" for name, value in attributes.items()),
        f"--message={json.dumps(data)}",
    ]
    return shlex.join(argv)


class PubSubActivities:
    """Activities that know where completion messages are published."""

    def __init__(
        self, *, project: str, topic: str, announce: Callable[[str], None] = print
    ) -> None:
        self.project = project
        self.topic = topic
        self.announce = announce

    @activity.defn
    async def wait_for_event(self, job: str) -> Any:
        """Print how to complete this activity by Pub/Sub; completed by the message."""
        attributes = pubsub_attributes(action="complete")  # this activity's own token
        self.announce(
            f"Job {job!r} waits for a Pub/Sub message with attributes {attributes}.\n"
            "Publish its result with:\n  "
            + publish_command(
                project=self.project,
                topic=self.topic,
                attributes=attributes,
                data={"job": job, "status": "done"},
            )
        )
        activity.raise_complete_async()


@workflow.defn
class PubSubEventWorkflow:
    """Waits for a Pub/Sub message about ``job`` and returns its data."""

    @workflow.run
    async def run(self, job: str) -> Any:
        return await workflow.execute_activity_method(
            PubSubActivities.wait_for_event,
            job,
            start_to_close_timeout=timedelta(hours=1),
            # A task token is per attempt: a retry would orphan the printed message.
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


def build_worker(
    client: Client,
    *,
    project: str,
    topic: str,
    task_queue: str = TASK_QUEUE,
    announce: Callable[[str], None] = print,
) -> Worker:
    """A worker for this sample's workflow and activity."""
    activities = PubSubActivities(project=project, topic=topic, announce=announce)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PubSubEventWorkflow],
        activities=[activities.wait_for_event],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--project",
        default=os.environ.get("PUBSUB_PROJECT_ID")
        or os.environ.get("GOOGLE_CLOUD_PROJECT", "local-project"),
    )
    parser.add_argument("--topic", default="completions", help="the Pub/Sub function's topic")
    parser.add_argument("job", nargs="?", default=f"job-{uuid.uuid4().hex[:6]}")
    args = parser.parse_args()
    # A runtime of our own, dropped when main() returns: temporalio's default one lives until
    # interpreter exit, where its threads can abort the process (PyGILState_Release).
    runtime = Runtime(telemetry=TelemetryConfig())
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        runtime=runtime,
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
    )
    async with build_worker(client, project=args.project, topic=args.topic):
        workflow_id = f"pubsub-{args.job}"
        print(f"Started workflow {workflow_id}; waiting for the message...")
        result = await client.execute_workflow(
            PubSubEventWorkflow.run, args.job, id=workflow_id, task_queue=TASK_QUEUE
        )
        print(f"Workflow result: {result}")
    del client, runtime
    gc.collect()  # free the runtime's threads now, not during interpreter exit


if __name__ == "__main__":
    asyncio.run(main())
