"""Partner upload to Cloud Storage: the activity hands out a V4 signed URL and waits.

The activity creates a signed PUT URL with ``completer.activity.gcs_signed_upload``; the URL
only accepts an upload that carries the activity's task token in the
``x-goog-meta-task-token`` header (the header is signed). It prints the URL and a
ready-to-paste curl line, then returns pending. When the partner uploads, Eventarc sends the
``google.cloud.storage.object.v1.finalized`` event to the Cloud Storage function, which
completes the activity with the object: its parsed JSON (a small ``.json`` object) or a
reference ``{"uri": "gs://...", "bucket", "key", "generation", "size", ...}``. The workflow
prints that result.

Run it with a service-account key that may create objects in the bucket (it signs the URL)::

    export GOOGLE_APPLICATION_CREDENTIALS=uploader-key.json
    .venv/bin/python examples/partner_upload_gcs.py --bucket my-completer-uploads

``TEMPORAL_ADDRESS`` (default ``127.0.0.1:7233``) names the Temporal server. Without a key
(Cloud Run, GCE), pass ``--service-account-email``: the URL is then signed through the IAM
signBlob API, which needs ``roles/iam.serviceAccountTokenCreator`` on that account.
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
    from completer.activity import gcs_signed_upload

if TYPE_CHECKING:
    from google.cloud.storage import Client as StorageClient

TASK_QUEUE = "completer-sample-upload-gcs"
UPLOAD_SECONDS = 3600


class UploadActivities:
    """Activities that hold the storage client (and so the credentials that sign the URL)."""

    def __init__(
        self,
        *,
        storage: StorageClient,
        bucket: str,
        announce: Callable[[str], None] = print,
        api_access_endpoint: str | None = None,
    ) -> None:
        self.storage = storage
        self.bucket = bucket
        self.announce = announce
        self.api_access_endpoint = api_access_endpoint

    @activity.defn
    async def request_upload(self, order_id: str) -> Any:
        """Hand out an upload URL for ``order_id``; completed when the partner uploads."""
        upload = gcs_signed_upload(
            self.storage,
            bucket=self.bucket,
            # A .json name makes the object JSON whatever Content-Type the partner sends.
            name=f"orders/{order_id}.json",
            expires_in=UPLOAD_SECONDS,
            api_access_endpoint=self.api_access_endpoint,
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
    storage: StorageClient,
    bucket: str,
    task_queue: str = TASK_QUEUE,
    announce: Callable[[str], None] = print,
    api_access_endpoint: str | None = None,
) -> Worker:
    """A worker for this sample's workflow and activity."""
    activities = UploadActivities(
        storage=storage,
        bucket=bucket,
        announce=announce,
        api_access_endpoint=api_access_endpoint,
    )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PartnerUploadWorkflow],
        activities=[activities.request_upload],
    )


async def main() -> None:
    from google.cloud.storage import Client as StorageClient

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket", required=True, help="watched by the Cloud Storage function")
    parser.add_argument("--order", default=f"order-{uuid.uuid4().hex[:6]}")
    args = parser.parse_args()
    storage = StorageClient()
    # A runtime of our own, dropped when main() returns: temporalio's default one lives until
    # interpreter exit, where its threads can abort the process (PyGILState_Release).
    runtime = Runtime(telemetry=TelemetryConfig())
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        runtime=runtime,
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
    )
    async with build_worker(client, storage=storage, bucket=args.bucket):
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
