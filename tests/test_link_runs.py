"""Links by IDs seal the workflow's run ID (docs/security.md): they never complete a later run.

On a real Temporal dev server: a link made for run 1 of a workflow ID is refused on run 2 of
the same workflow ID, which keeps waiting.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from completer.activity import approval_links, approval_links_async, lookup_run_id
from completer.client import CompletionClient
from completer.errors import ActivityNotFound, InvalidRequest, Unauthorized
from completer.links import _fernet, create_link, open_link
from completer.models import Status
from completer.settings import Settings
from completer.tokens import encode_token
from tests.support.temporal import _TOKENS, WaitingWorkflow

SECRET = "link-secret-for-tests-" + "x" * 16
BASE = "https://fn.example/complete"

pytestmark = pytest.mark.temporal


def sealed(url: str) -> str:
    return parse_qs(urlsplit(url).query)["link"][0]


async def start_run(
    client: Client, task_queue: str, workflow_id: str, activity_id: str
) -> tuple[WorkflowHandle[Any, Any], bytes]:
    handle = await client.start_workflow(
        WaitingWorkflow.run, activity_id, id=workflow_id, task_queue=task_queue
    )
    async with asyncio.timeout(20):
        while workflow_id not in _TOKENS:
            await asyncio.sleep(0.02)
    return handle, _TOKENS.pop(workflow_id)


async def test_id_link_of_run_1_is_refused_on_run_2(
    temporal_client: Client, task_queue: str, settings: Settings
):
    workflow_id, activity_id = f"wf-{uuid.uuid4()}", "approve"
    run_1, _ = await start_run(temporal_client, task_queue, workflow_id, activity_id)
    links = await approval_links_async(
        BASE,
        secret=SECRET,
        workflow_id=workflow_id,
        activity_id=activity_id,
        client=temporal_client,
    )
    approve = open_link(sealed(links.approve), secret=SECRET, choice="approve")
    reject = open_link(sealed(links.reject), secret=SECRET, choice="reject")
    assert approve.request.run_id == run_1.result_run_id
    async with CompletionClient.create(settings) as completer:
        outcome = await completer.execute(approve.request)
        assert outcome.status is Status.COMPLETED
        assert await run_1.result() == {"approved": True}

        # Run 2 reuses the workflow ID and the activity ID: the links of run 1 are dead.
        run_2, token_2 = await start_run(temporal_client, task_queue, workflow_id, activity_id)
        assert run_2.result_run_id != run_1.result_run_id
        for used in (approve, reject):
            with pytest.raises(ActivityNotFound):
                await completer.execute(used.request)
        assert (await run_2.describe()).raw_description.pending_activities

        # Run 2's own link (its run looked up now) completes run 2.
        links_2 = await approval_links_async(
            BASE,
            secret=SECRET,
            workflow_id=workflow_id,
            activity_id=activity_id,
            client=temporal_client,
        )
        opened_2 = open_link(sealed(links_2.reject), secret=SECRET, choice="reject")
        assert opened_2.request.run_id == run_2.result_run_id
        assert (await completer.execute(opened_2.request)).status is Status.FAILED
    assert token_2  # run 2 handed out its own token too


async def test_lookup_of_an_unknown_workflow_is_activity_not_found(temporal_client: Client):
    with pytest.raises(ActivityNotFound):
        await lookup_run_id(f"no-such-{uuid.uuid4()}", client=temporal_client)


async def test_lookup_outside_an_activity_needs_a_client():
    with pytest.raises(InvalidRequest, match="Temporal client"):
        await lookup_run_id("wf")


def test_sync_links_by_ids_need_the_run_id_outside_the_activity():
    with pytest.raises(InvalidRequest, match="run ID"):
        approval_links(BASE, secret=SECRET, workflow_id="wf", activity_id="a")
    with pytest.raises(InvalidRequest, match="run_id"):
        create_link(BASE, secret=SECRET, choice="approve", workflow_id="wf", activity_id="a")


def test_token_links_need_no_run_id():
    token = encode_token(b"opaque-token")
    links = approval_links(BASE, secret=SECRET, task_token=token)
    assert open_link(sealed(links.approve), secret=SECRET).request.task_token == token


def test_a_sealed_id_link_without_run_id_is_refused_when_opened():
    # What a link made before run IDs were sealed holds: it could complete any later run.
    body = {"v": 1, "c": "approve", "x": 2**40, "r": {"workflow_id": "wf", "activity_id": "a"}}
    fernet: Fernet = _fernet(SECRET)
    old = fernet.encrypt(json.dumps(body).encode()).decode()
    with pytest.raises(Unauthorized, match="one workflow run"):
        open_link(old, secret=SECRET, choice="approve")


@activity.defn(name="make_links_by_ids")
async def make_links_by_ids(use_async: bool) -> dict[str, str]:
    """An activity that makes links naming itself by IDs (no run ID given)."""
    info = activity.info()
    common: dict[str, Any] = {
        "secret": SECRET,
        "workflow_id": info.workflow_id,
        "activity_id": info.activity_id,
    }
    if use_async:
        links = await approval_links_async(BASE, **common)
    else:
        links = approval_links(BASE, **common)
    return {"approve": links.approve, "run_id": info.workflow_run_id or ""}


@workflow.defn(sandboxed=False)
class MakesLinks:
    @workflow.run
    async def run(self, use_async: bool) -> dict[str, str]:
        result: dict[str, str] = await workflow.execute_activity(
            make_links_by_ids,
            use_async,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
        return result


@pytest.mark.parametrize("use_async", [False, True])
async def test_links_made_inside_the_activity_seal_its_own_run(
    temporal_client: Client, use_async: bool
):
    queue = f"links-{uuid.uuid4()}"
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[MakesLinks],
        activities=[make_links_by_ids],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        made = await temporal_client.execute_workflow(
            MakesLinks.run, use_async, id=f"wf-{uuid.uuid4()}", task_queue=queue
        )
    opened = open_link(sealed(made["approve"]), secret=SECRET, choice="approve")
    assert made["run_id"]
    assert opened.request.run_id == made["run_id"]
