"""A replayed signed request is carried out once (docs/security.md), on a real Temporal server.

The pieces the HTTP handler chains: verify the signature, answer once per webhook-id, parse,
check the secret's scope, execute. A replayed signed "fail by IDs" fails the activity once,
and a request outside its secret's scope is 403 and completes nothing.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.client import WorkflowFailureError

from completer.client import CompletionClient
from completer.errors import CompleterError
from completer.models import parse_request
from completer.settings import Settings
from completer.signatures import (
    MemoryReplayStore,
    RememberedAnswer,
    SignatureVerifier,
    SignedRequest,
    answer_once,
    check_scope,
)
from tests.support.temporal import WaitingActivity

pytestmark = pytest.mark.temporal


def signed(secret: str, body: bytes, msg_id: str) -> dict[str, str]:
    now = int(time.time())
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}


@pytest.fixture
def secrets() -> tuple[str, str]:
    return tuple("whsec_" + base64.b64encode(os.urandom(24)).decode() for _ in range(2))  # type: ignore[return-value]


async def handle(
    client: CompletionClient,
    verifier: SignatureVerifier,
    store: MemoryReplayStore,
    body: bytes,
    headers: dict[str, str],
) -> tuple[int, dict[str, Any]]:
    """What the HTTP handler does with a signed JSON request, transport aside."""
    signature: SignedRequest = verifier.verify(body, headers)

    async def carry_out() -> RememberedAnswer:
        try:
            request = parse_request(body)
            check_scope(signature.scope, request)
            outcome = await client.execute(request)
        except CompleterError as exc:
            return RememberedAnswer(exc.http_status, exc.to_dict())
        return RememberedAnswer(200, outcome.to_dict())

    answer, replayed = await answer_once(store, signature, carry_out)
    return answer.status, answer.replayed() if replayed else answer.body


async def test_replayed_signed_fail_by_ids_fails_once(
    waiting: WaitingActivity, settings: Settings, secrets: tuple[str, str]
):
    both = Settings(
        COMPLETER_BACKEND="temporal",
        COMPLETER_SIGNING_SECRETS=f"acme={secrets[0]} beta={secrets[1]}",
        COMPLETER_SIGNING_SCOPES=json.dumps({"beta": {"workflow_id_prefixes": ["beta-"]}}),
    )
    verifier = SignatureVerifier.from_settings(both)
    assert verifier is not None
    store = MemoryReplayStore(tolerance_seconds=both.signature_tolerance_seconds)
    body = json.dumps(
        {
            "workflow_id": waiting.workflow_id,
            "activity_id": waiting.activity_id,
            "error": {"message": "declined", "type": "Declined", "non_retryable": True},
        }
    ).encode()
    async with CompletionClient.create(settings) as client:
        # The beta secret may only touch beta-… workflows: 403, nothing completed.
        beta = signed(secrets[1], body, "msg_beta")
        assert (await handle(client, verifier, store, body, beta))[0] == 403
        assert (await waiting.pending_activity()) is not None

        headers = signed(secrets[0], body, "msg_fail_1")
        first = await handle(client, verifier, store, body, headers)
        again = await handle(client, verifier, store, body, headers)
    assert first == (200, {"status": "failed"})
    assert again == (200, {"status": "failed", "replayed": True})
    with pytest.raises(WorkflowFailureError):
        await waiting.handle.result()
    history = [event async for event in waiting.handle.fetch_history_events()]
    failures = [e for e in history if e.HasField("activity_task_failed_event_attributes")]
    assert len(failures) == 1
