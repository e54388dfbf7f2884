"""The Cloud Storage function with the other engines: a real functions-framework process with
``COMPLETER_BACKEND=cadence`` (tests/support/cadence.py's frontend) or ``stepfunctions`` (moto
in server mode, a state machine waiting for its token), reading objects in the emulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from completer.dev.gcs_events import deliver, finalized_event
from tests.support.cadence import FakeFrontend, fake_frontend
from tests.support.gcs import GcsEmulator, gcs_emulator
from tests.support.stepfunctions import REGION, MotoStepFunctions, aws_env, moto_stepfunctions
from tests.test_backends_through_triggers import DOMAIN, base_env, function_process

pytestmark = pytest.mark.moto

SOURCE = "functions/gcs/main.py"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
async def frontend() -> AsyncIterator[FakeFrontend]:
    async with fake_frontend() as frontend:
        yield frontend


@pytest.fixture(scope="module")
def sfn() -> Iterator[MotoStepFunctions]:
    yield from moto_stepfunctions()


def upload(gcs: GcsEmulator, name: str, content: bytes, metadata: dict[str, str]) -> Any:
    bucket = gcs.bucket()
    blob = bucket.blob(name)
    blob.metadata = metadata
    blob.upload_from_string(content, content_type="application/json")
    return finalized_event(blob._properties)


async def test_gcs_function_with_cadence(frontend: FakeFrontend, gcs: GcsEmulator, tmp_path: Path):
    frontend.api.reset()
    env = base_env(
        COMPLETER_BACKEND="cadence",
        CADENCE_ADDRESS=frontend.address,
        CADENCE_DOMAIN=DOMAIN,
        **gcs.env(),
    )
    event = upload(
        gcs, "in/review.json", b'{"reviewer": "ana"}', {"workflow-id": "wf-1", "activity-id": "a"}
    )
    with function_process(SOURCE, env, tmp_path / "log", cloudevent=True) as url:
        assert await asyncio.to_thread(deliver, url, event) == 200
    call = frontend.api.calls[-1]
    assert call.method == "RespondActivityTaskCompletedByID"
    assert (call.request.workflow_execution.workflow_id, call.request.activity_id) == ("wf-1", "a")
    assert call.request.domain == DOMAIN
    assert json.loads(call.request.result.data) == {"reviewer": "ana"}


async def test_gcs_function_with_stepfunctions(
    sfn: MotoStepFunctions, gcs: GcsEmulator, tmp_path: Path
):
    done, failed = sfn.start_waiting(), sfn.start_waiting()
    env = base_env(
        COMPLETER_BACKEND="stepfunctions", AWS_REGION=REGION, **aws_env(sfn.endpoint), **gcs.env()
    )
    ok = upload(gcs, "in/ok.json", b'{"n": 1}', {"task-token": done.task_token})
    error = b'{"message": "scan found malware", "type": "Infected"}'
    bad = upload(gcs, "in/bad.json", error, {"task-token": failed.task_token, "action": "fail"})
    with function_process(SOURCE, env, tmp_path / "log", cloudevent=True) as url:
        assert await asyncio.to_thread(deliver, url, ok, mode="structured") == 200
        assert await asyncio.to_thread(deliver, url, bad) == 200
    finished = await done.finished()
    assert (finished["status"], json.loads(finished["output"])) == ("SUCCEEDED", {"n": 1})
    refused = await failed.finished()
    assert (refused["status"], refused.get("error")) == ("FAILED", "Infected")
