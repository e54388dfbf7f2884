"""The Cloud Storage function with the other engines: a real functions-framework process with
``COMPLETER_BACKEND=cadence`` (tests/support/cadence.py's frontend) or ``stepfunctions`` (moto
in server mode, a state machine waiting for its token), reading objects in the emulator."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from completer.dev.gcs_events import deliver, finalized_event
from tests.support.cadence import FakeFrontend, fake_frontend
from tests.support.gcs import GcsEmulator, gcs_emulator
from tests.support.stepfunctions import REGION, MotoStepFunctions, aws_env, moto_stepfunctions
from tests.test_backends_through_triggers import DOMAIN, base_env, closed_with, function_process

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


# The emulator is started (forked) before the in-process gRPC frontend: a fork while gRPC's
# threads run can abort the child (SIGABRT) on a busy machine.
async def test_gcs_function_with_cadence(gcs: GcsEmulator, frontend: FakeFrontend, tmp_path: Path):
    frontend.api.reset()
    by_token, by_ids = frontend.api.schedule_activity("scan"), frontend.api.schedule_activity("ok")
    env = base_env(
        COMPLETER_BACKEND="cadence",
        CADENCE_ADDRESS=frontend.address,
        CADENCE_DOMAIN=DOMAIN,
        **gcs.env(),
    )
    token = base64.b64encode(by_token.task_token).decode()
    scanned = upload(gcs, "in/scan.json", b'{"clean": true}', {"task-token": token})
    ids = {"workflow-id": by_ids.workflow_id, "activity-id": by_ids.activity_id}
    reviewed = upload(
        gcs, "in/review.json", b'{"reviewer": "ana"}', {**ids, "run-id": by_ids.run_id}
    )
    with function_process(SOURCE, env, tmp_path / "log", cloudevent=True) as url:
        assert await asyncio.to_thread(deliver, url, scanned) == 200
        assert await asyncio.to_thread(deliver, url, reviewed, mode="structured") == 200
        # The same upload again: the function's ledger answers its first outcome (replayed),
        # without the engine; nothing is completed twice.
        assert await asyncio.to_thread(deliver, url, scanned) == 200
    assert closed_with(by_token) == ("completed", {"clean": True})
    assert closed_with(by_ids) == ("completed", {"reviewer": "ana"})
    methods = [call.method for call in frontend.activity_calls]
    assert methods == ["RespondActivityTaskCompleted", "RespondActivityTaskCompletedByID"]
    assert all(call.request.domain == DOMAIN for call in frontend.activity_calls[1:2])
    assert token not in (tmp_path / "log").read_text()


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
