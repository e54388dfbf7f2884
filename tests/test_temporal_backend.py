"""The completion client against a real Temporal dev server and a real waiting activity."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError as TemporalActivityError
from temporalio.exceptions import ApplicationError, CancelledError

from completer import errors
from completer.client import CompletionClient
from completer.models import CompletionRequest, Status
from completer.settings import Settings
from tests.support.temporal import WaitingActivity

pytestmark = pytest.mark.temporal


@pytest.fixture
async def client(settings: Settings) -> Any:
    async with CompletionClient.create(settings) as client:
        yield client


async def run(client: CompletionClient, **fields: Any) -> Any:
    return await client.execute(CompletionRequest.build(fields))


async def test_complete_by_token_reaches_the_workflow(client, waiting: WaitingActivity):
    result = {"approved": True, "by": "ana", "amount": 12.5, "tags": ["a", "ü"], "none": None}
    outcome = await run(client, task_token=waiting.token_b64, result=result)
    assert outcome.status is Status.COMPLETED
    assert await waiting.handle.result() == result


@pytest.mark.parametrize("form", ["standard", "standard-unpadded", "urlsafe", "urlsafe-padded"])
async def test_token_alphabets_and_padding(client, waiting: WaitingActivity, form: str):
    token = {
        "standard": waiting.token_b64,
        "standard-unpadded": waiting.token_b64.rstrip("="),
        "urlsafe": waiting.token_urlsafe,
        "urlsafe-padded": waiting.token_urlsafe + "=" * (-len(waiting.token_urlsafe) % 4),
    }[form]
    await run(client, taskToken=token, result=form)
    assert await waiting.handle.result() == form


async def test_complete_by_ids(client, waiting: WaitingActivity):
    await run(client, workflow_id=waiting.workflow_id, activity_id=waiting.activity_id, result=7)
    assert await waiting.handle.result() == 7


async def test_complete_by_ids_with_run_id_camel_case(client, waiting: WaitingActivity):
    await run(
        client,
        workflowId=waiting.workflow_id,
        runId=waiting.run_id,
        activityId=waiting.activity_id,
        result="by-ids",
    )
    assert await waiting.handle.result() == "by-ids"


async def test_null_result_when_absent(client, waiting: WaitingActivity):
    await run(client, task_token=waiting.token_b64)
    assert await waiting.handle.result() is None


async def test_fail_arrives_as_application_error(client, waiting: WaitingActivity):
    outcome = await run(
        client,
        task_token=waiting.token_b64,
        error={
            "message": "rejected by reviewer",
            "type": "Rejected",
            "details": {"reviewer": "bo", "reason": "budget"},
            "nonRetryable": True,
        },
    )
    assert outcome.status is Status.FAILED
    with pytest.raises(WorkflowFailureError) as info:
        await waiting.handle.result()
    activity_error = info.value.cause
    assert isinstance(activity_error, TemporalActivityError)
    cause = activity_error.cause
    assert isinstance(cause, ApplicationError)
    assert cause.message == "rejected by reviewer"
    assert cause.type == "Rejected"
    assert cause.non_retryable is True
    assert cause.details == ({"reviewer": "bo", "reason": "budget"},)


async def test_fail_defaults_retryable_without_type(client, waiting: WaitingActivity):
    await run(client, task_token=waiting.token_b64, action="fail", error={"message": "boom"})
    with pytest.raises(WorkflowFailureError) as info:
        await waiting.handle.result()
    activity_error = info.value.cause
    assert isinstance(activity_error, TemporalActivityError)
    cause = activity_error.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.message, cause.type, cause.non_retryable, cause.details) == (
        "boom",
        None,
        False,
        (),
    )


async def test_heartbeat_details_are_visible_and_no_cancel(client, waiting: WaitingActivity):
    outcome = await run(
        client, task_token=waiting.token_b64, action="heartbeat", details={"progress": 40}
    )
    assert outcome.status is Status.HEARTBEAT_RECORDED
    assert outcome.cancel_requested is False
    assert outcome.to_dict() == {"status": "heartbeat_recorded", "cancel_requested": False}
    pending = await waiting.pending_activity()
    payloads = pending.heartbeat_details.payloads
    assert len(payloads) == 1
    assert payloads[0].data == b'{"progress":40}'


async def test_cancel_before_request_is_conflict_then_works(client, waiting: WaitingActivity):
    with pytest.raises(errors.Conflict):
        await run(client, task_token=waiting.token_b64, action="cancel")
    await waiting.handle.cancel()
    # The cancellation request reaches the activity through a heartbeat.
    for _ in range(100):
        beat = await run(client, task_token=waiting.token_b64, action="heartbeat")
        if beat.cancel_requested:
            break
        await asyncio.sleep(0.05)
    assert beat.cancel_requested is True
    outcome = await run(
        client, task_token=waiting.token_b64, action="cancel", details={"why": "asked"}
    )
    assert outcome.status is Status.CANCELLED
    with pytest.raises(WorkflowFailureError) as info:
        await waiting.handle.result()
    assert isinstance(info.value.cause, CancelledError)


async def test_cancel_by_ids_after_request(client, waiting: WaitingActivity):
    await waiting.handle.cancel()
    ids = {"workflow_id": waiting.workflow_id, "activity_id": waiting.activity_id}
    for _ in range(100):
        if (await run(client, action="heartbeat", **ids)).cancel_requested:
            break
        await asyncio.sleep(0.05)
    assert (await run(client, action="cancel", **ids)).status is Status.CANCELLED


async def test_second_completion_is_not_found_and_first_result_kept(
    client, waiting: WaitingActivity
):
    await run(client, task_token=waiting.token_b64, result="first")
    with pytest.raises(errors.ActivityNotFound):
        await run(client, task_token=waiting.token_b64, result="second")
    with pytest.raises(errors.ActivityNotFound):
        await run(client, task_token=waiting.token_b64, error={"message": "late"})
    assert await waiting.handle.result() == "first"


async def test_concurrent_duplicates_complete_once(client, waiting: WaitingActivity):
    results = await asyncio.gather(
        *(run(client, task_token=waiting.token_b64, result=i) for i in range(8)),
        return_exceptions=True,
    )
    wins = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, errors.ActivityNotFound) for r in losses)
    assert await waiting.handle.result() == wins[0]


async def test_unknown_ids_are_not_found(client):
    with pytest.raises(errors.ActivityNotFound):
        await run(client, workflow_id="no-such-workflow", activity_id="1", result=1)


async def test_garbage_token_is_invalid_request(client):
    with pytest.raises(errors.InvalidRequest):
        await run(client, task_token="bm90IGEgdG9rZW4=", result=1)


async def test_completed_workflow_is_not_found(client, waiting: WaitingActivity):
    await run(client, task_token=waiting.token_b64, result=1)
    await waiting.handle.result()
    with pytest.raises(errors.ActivityNotFound):
        await run(
            client, workflow_id=waiting.workflow_id, activity_id=waiting.activity_id, result=2
        )
