"""Partner upload: the activity hands out a presigned S3 URL and waits for the file.

The activity creates a presigned PUT URL with ``completer.activity.presigned_upload``;
the URL only accepts an upload that carries the activity's task token in the
``x-amz-meta-task-token`` header (the header is part of the signature). It prints the
URL and a ready-to-paste curl line, then returns pending. When the partner uploads, S3
notifies the S3 function, which completes the activity with the object: its parsed JSON
(a small ``application/json`` object or ``.json`` key) or a reference
``{"uri": "s3://...", "bucket", "key", "size", ...}``. The workflow prints that result.

Run it against the local stack (``make run``: moto S3 behind the S3 function) or AWS::

    export AWS_ENDPOINT_URL_S3=http://127.0.0.1:5000   # moto of `make run`; omit for AWS
    .venv/bin/python examples/partner_upload.py --bucket completer-uploads

``TEMPORAL_ADDRESS`` (default ``127.0.0.1:7233``) names the Temporal server; AWS
credentials and region come from the usual AWS variables.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from completer.activity import presigned_upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TASK_QUEUE = "completer-sample-upload"
UPLOAD_SECONDS = 3600


class UploadActivities:
    """Activities that hold the S3 client (and so the credentials that sign the URL)."""

    def __init__(
        self, *, s3: S3Client, bucket: str, announce: Callable[[str], None] = print
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.announce = announce

    @activity.defn
    async def request_upload(self, order_id: str) -> Any:
        """Hand out an upload URL for ``order_id``; completed when the partner uploads."""
        upload = presigned_upload(
            self.s3,
            bucket=self.bucket,
            key=f"orders/{order_id}.json",
            content_type="application/json",
            expires_in=UPLOAD_SECONDS,
        )
        self.announce(
            f"Send the partner this upload (valid {UPLOAD_SECONDS // 60} min):\n"
            f"  {upload.method} {upload.url}\n"
            f"  with headers {upload.headers}\n"
            f"  e.g.: {upload.curl('result.json')}"
        )
        activity.raise_complete_async()


@workflow.defn
class PartnerUploadWorkflow:
    """Waits for a partner's file for ``order_id`` and returns what the upload carried."""

    @workflow.run
    async def run(self, order_id: str) -> Any:
        return await workflow.execute_activity_method(
            UploadActivities.request_upload,
            order_id,
            start_to_close_timeout=timedelta(seconds=UPLOAD_SECONDS + 600),
            # A task token is per attempt: a retry would orphan the handed-out URL.
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


def build_worker(
    client: Client,
    *,
    s3: S3Client,
    bucket: str,
    task_queue: str = TASK_QUEUE,
    announce: Callable[[str], None] = print,
) -> Worker:
    """A worker for this sample's workflow and activity."""
    activities = UploadActivities(s3=s3, bucket=bucket, announce=announce)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PartnerUploadWorkflow],
        activities=[activities.request_upload],
    )


async def main() -> None:
    import boto3
    from botocore.config import Config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket", default="completer-uploads", help="watched by the S3 function")
    parser.add_argument("--order", default=f"order-{uuid.uuid4().hex[:6]}")
    args = parser.parse_args()
    # SigV4 makes the token header part of the signature (SigV2 would put it in the URL).
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    # A runtime of our own, dropped when main() returns: temporalio's default one lives until
    # interpreter exit, where its threads can abort the process (PyGILState_Release).
    runtime = Runtime(telemetry=TelemetryConfig())
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        runtime=runtime,
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
    )
    async with build_worker(client, s3=s3, bucket=args.bucket):
        workflow_id = f"upload-{args.order}"
        print(f"Started workflow {workflow_id}; waiting for the upload...")
        result = await client.execute_workflow(
            PartnerUploadWorkflow.run, args.order, id=workflow_id, task_queue=TASK_QUEUE
        )
        print(f"Workflow result: {result}")
    del client, runtime
    gc.collect()  # free the runtime's threads now, not during interpreter exit


if __name__ == "__main__":
    asyncio.run(main())
