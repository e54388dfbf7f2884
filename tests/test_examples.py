"""The samples in examples/ run: their own worker, workflow and activity, completed from outside.

Each sample's activity announces how to complete it (links, a curl line, a gcloud line);
each test takes exactly what was announced, completes the activity the way the matching
trigger would, through completer's client, and checks the workflow's result.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from examples import approval_by_link, partner_upload, pubsub_event
from temporalio.client import Client
from temporalio.worker import Worker

from completer.client import CompletionClient
from completer.links import open_link
from completer.models import CompletionRequest, parse_json
from completer.settings import Settings
from tests.support.moto_server import moto_server, s3_client
from tests.support.services import venv_tool

ROOT = Path(__file__).resolve().parent.parent
LINK_SECRET = "e" * 40
BUCKET = "completer-uploads"


class Announcements:
    """Collects what a sample's activity announces; waits for the next one."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        self.lines.append(text)

    async def next(self, timeout: float = 20) -> str:
        for _ in range(int(timeout / 0.02)):
            if self.lines:
                return self.lines.pop(0)
            await asyncio.sleep(0.02)
        raise TimeoutError("the sample's activity announced nothing")


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    async with worker:
        yield


async def complete(settings: Settings, request: CompletionRequest) -> None:
    async with CompletionClient.create(settings) as client:
        await client.execute(request)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- approval by link -------------------------------------------------------------------


@pytest.mark.temporal
@pytest.mark.parametrize(
    ("choice", "decision"),
    [
        ("approve", "approved: Buy 3 laptops ({'approved': True})"),
        ("reject", "rejected: Buy 3 laptops (rejected)"),
    ],
)
async def test_approval_by_link(
    temporal_client: Client, settings: Settings, choice: str, decision: str
):
    announced = Announcements()
    queue = unique("tq-approval")
    worker = approval_by_link.build_worker(
        temporal_client,
        task_queue=queue,
        base_url="http://127.0.0.1:8080/",
        link_secret=LINK_SECRET,
        announce=announced,
    )
    async with running(worker):
        handle = await temporal_client.start_workflow(
            approval_by_link.ApprovalWorkflow.run,
            "Buy 3 laptops",
            id=unique("approval"),
            task_queue=queue,
        )
        text = await announced.next()
        match = re.search(rf"{choice}:\s+(\S+)", text)
        assert match is not None, text
        query = parse_qs(urlsplit(match.group(1)).query)
        # What the HTTP function does on the confirmation page's POST.
        opened = open_link(query["link"][0], secret=LINK_SECRET, choice=query["choice"][0])
        await complete(settings, opened.request)
        assert await handle.result() == decision


# --- partner upload ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.mark.temporal
@pytest.mark.moto
async def test_partner_upload(
    temporal_client: Client, settings: Settings, moto_endpoint: str, tmp_path: Path
):
    s3 = s3_client(moto_endpoint)
    announced = Announcements()
    queue = unique("tq-upload")
    order = unique("order")
    worker = partner_upload.build_worker(
        temporal_client, s3=s3, bucket=BUCKET, task_queue=queue, announce=announced
    )
    async with running(worker):
        handle = await temporal_client.start_workflow(
            partner_upload.PartnerUploadWorkflow.run, order, id=unique("upload"), task_queue=queue
        )
        text = await announced.next()
        curl = text.split("e.g.: ", 1)[1].strip()
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
        # What the S3 function does with the object: metadata names the activity,
        # a small JSON object is the result.
        key = f"orders/{order}.json"
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentType"] == "application/json"
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        request = CompletionRequest.build(
            {"task_token": head["Metadata"]["task-token"], "result": parse_json(body)}
        )
        await complete(settings, request)
        assert await handle.result() == {"lines": 12, "total": 99.5}


# --- Pub/Sub event ----------------------------------------------------------------------


def published(text: str) -> tuple[dict[str, str], Any]:
    """The attributes and data of the printed ``gcloud pubsub topics publish`` line."""
    line = next(line for line in text.splitlines() if "gcloud pubsub topics publish" in line)
    argv = shlex.split(line)
    attributes_arg = next(arg for arg in argv if arg.startswith("--attribute="))
    message_arg = next(arg for arg in argv if arg.startswith("--message="))
    attributes = dict(
        pair.split("=", 1) for pair in attributes_arg.removeprefix("--attribute=").split(",")
    )
    return attributes, json.loads(message_arg.removeprefix("--message="))


@pytest.mark.temporal
async def test_pubsub_event(temporal_client: Client, settings: Settings):
    announced = Announcements()
    queue = unique("tq-pubsub")
    worker = pubsub_event.build_worker(
        temporal_client,
        project="local-project",
        topic="completions",
        task_queue=queue,
        announce=announced,
    )
    async with running(worker):
        handle = await temporal_client.start_workflow(
            pubsub_event.PubSubEventWorkflow.run, "job-7", id=unique("pubsub"), task_queue=queue
        )
        attributes, data = published(await announced.next())
        assert set(attributes) == {"task_token", "action"}
        # The Pub/Sub function's attribute form: attributes name it, the data is the result.
        await complete(settings, CompletionRequest.build({**attributes, "result": data}))
        assert await handle.result() == {"job": "job-7", "status": "done"}


@pytest.mark.temporal
async def test_pubsub_sample_runs_as_a_script(temporal_client: Client):
    """The sample run as its docstring says; the completer CLI completes it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "pubsub_event.py"),
        "--project",
        "local-project",
        unique("job"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    try:
        output = ""
        async with asyncio.timeout(60):
            while "gcloud pubsub topics publish" not in output:
                line = await process.stdout.readline()
                assert line, f"the sample exited early:\n{output}"
                output += line.decode()
            attributes, data = published(output)
            completer = venv_tool("completer")
            assert completer is not None
            done = await asyncio.create_subprocess_exec(
                completer,
                "complete",
                json.dumps(data),
                env={**os.environ, "COMPLETER_TASK_TOKEN": attributes["task_token"]},
                stdout=asyncio.subprocess.PIPE,
            )
            assert await done.wait() == 0
            rest = (await process.stdout.read()).decode()
            assert await process.wait() == 0, output + rest
        assert "Workflow result: {'job':" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("sample", ["approval_by_link", "partner_upload", "pubsub_event"])
def test_each_sample_has_help(sample: str):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{sample}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
