"""examples/partner_upload_gcs.py runs: its activity announces a signed Cloud Storage URL, the
partner's curl line uploads to the emulator, and the Cloud Storage handler completes it."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import CloudEvent
from examples import partner_upload_gcs
from temporalio.client import Client

from completer.client import CompletionClient
from completer.dev.gcs_events import finalized_event
from completer.handlers.gcs import GcsHandler
from completer.settings import Settings
from completer.storage.gcs import GcsReader
from tests.support.gcs import GcsEmulator, gcs_emulator, service_account_key, signing_client

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


async def test_partner_upload_gcs(
    temporal_client: Client, settings: Settings, gcs: GcsEmulator, tmp_path: Path
):
    bucket = gcs.bucket()
    announced: list[str] = []
    queue = f"tq-upload-gcs-{uuid.uuid4().hex[:8]}"
    order = f"order-{uuid.uuid4().hex[:8]}"
    worker = partner_upload_gcs.build_worker(
        temporal_client,
        storage=signing_client(service_account_key()[1]),
        bucket=bucket.name,
        task_queue=queue,
        announce=announced.append,
        api_access_endpoint=gcs.host,
    )
    async with worker:
        handle = await temporal_client.start_workflow(
            partner_upload_gcs.PartnerUploadWorkflow.run,
            order,
            id=f"upload-{order}",
            task_queue=queue,
        )
        for _ in range(1000):
            if announced:
                break
            await asyncio.sleep(0.02)
        curl = announced[0].split("e.g.: ", 1)[1].strip()
        (tmp_path / "result.json").write_text('{"lines": 12, "total": 99.5}')
        # The partner pastes the printed line as is.
        await asyncio.to_thread(
            subprocess.run,
            ["/bin/sh", "-c", curl],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=30,
        )
        # Cloud Storage keeps x-goog-meta-* headers as the object's metadata; the emulator's
        # XML upload drops them, so set them from the very headers the curl line sent.
        words = shlex.split(curl)
        sent = [words[i + 1] for i, word in enumerate(words) if word == "-H"]
        metadata = dict(
            header.removeprefix("x-goog-meta-").split(": ", 1)
            for header in sent
            if header.startswith("x-goog-meta-")
        )
        assert set(metadata) == {"task-token"}
        blob = gcs.client.bucket(bucket.name).blob(f"orders/{order}.json")
        blob.metadata = metadata
        blob.patch()
        # What Eventarc and the Cloud Storage function do with the finished upload.
        async with CompletionClient.create(settings) as client:
            handler = GcsHandler(client, settings=settings, reader=GcsReader(gcs.client))
            assert await handler.handle(_event(blob._properties)) == "completed"
        assert await asyncio.wait_for(handle.result(), 30) == {"lines": 12, "total": 99.5}


def _event(resource: dict[str, Any]) -> CloudEvent:
    event = finalized_event(resource)
    data = event.pop("data")
    return CloudEvent(event, data)
