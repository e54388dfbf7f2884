"""Payment by callback URL: the payment provider's webhook completes the activity.

The activity makes a callback URL with ``completer.activity.callback_url`` and hands it to
the payment provider as the webhook endpoint of this one payment (here: prints it), then
returns pending. When the provider POSTs its event (a Stripe-like
``payment_intent.succeeded``), the HTTP function completes the activity with what the
sealed ``select`` expression picks out of the event: the payment intent, ``data.object``.
A ``payment_intent.payment_failed`` event fails the activity instead (``fail_when``), with
error type ``CallbackFailed`` and the payment intent as details. The provider's retries
of the same event are answered ``replayed``; nothing completes twice.

Run it against the local stack (``make run``) or any Temporal server::

    export COMPLETER_LINK_SECRET=...   # the HTTP function's link secret (32+ characters)
    .venv/bin/python examples/payment_callback.py --url http://127.0.0.1:8080/ --amount 12000

then play the provider: ``curl -X POST -H 'Content-Type: application/json' -d @event.json
'<the printed URL>'``. ``TEMPORAL_ADDRESS`` (default ``127.0.0.1:7233``) and
``TEMPORAL_NAMESPACE`` name the server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
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
    from completer.activity import callback_url

TASK_QUEUE = "completer-sample-payment"
PAYMENT_SECONDS = 24 * 3600
SELECT = "data.object"
FAIL_WHEN = "type == 'payment_intent.payment_failed'"


class PaymentActivities:
    """Activities that know the HTTP function's URL and link secret."""

    def __init__(
        self, *, function_url: str, secret: str, announce: Callable[[str], None] = print
    ) -> None:
        self.function_url = function_url
        self.secret = secret
        self.announce = announce

    @activity.defn
    async def await_payment(self, amount: int) -> Any:
        """Hand the provider a webhook URL for this payment; completed by its event."""
        url = callback_url(
            self.function_url,
            secret=self.secret,
            ttl_seconds=PAYMENT_SECONDS,
            select=SELECT,
            fail_when=FAIL_WHEN,
        )
        self.announce(f"Create the payment of {amount} with this webhook URL:\n  {url}")
        activity.raise_complete_async()


@workflow.defn
class PaymentWorkflow:
    """Waits for the payment of ``amount`` and returns the provider's payment intent."""

    @workflow.run
    async def run(self, amount: int) -> Any:
        return await workflow.execute_activity_method(
            PaymentActivities.await_payment,
            amount,
            start_to_close_timeout=timedelta(seconds=PAYMENT_SECONDS + 600),
            # A task token is per attempt: a retry would orphan the handed-out URL.
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


def build_worker(
    client: Client,
    *,
    function_url: str,
    secret: str,
    task_queue: str = TASK_QUEUE,
    announce: Callable[[str], None] = print,
) -> Worker:
    """A worker for this sample's workflow and activity."""
    activities = PaymentActivities(function_url=function_url, secret=secret, announce=announce)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PaymentWorkflow],
        activities=[activities.await_payment],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/", help="the HTTP function")
    parser.add_argument("--amount", type=int, default=12000, help="in the currency's cents")
    args = parser.parse_args()
    secret = os.environ.get("COMPLETER_LINK_SECRET")
    if not secret:
        parser.error("set COMPLETER_LINK_SECRET to the HTTP function's link secret")
    # A runtime of our own, dropped when main() returns: temporalio's default one lives until
    # interpreter exit, where its threads can abort the process (PyGILState_Release).
    runtime = Runtime(telemetry=TelemetryConfig())
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        runtime=runtime,
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
    )
    async with build_worker(client, function_url=args.url, secret=secret):
        workflow_id = f"payment-{uuid.uuid4().hex[:6]}"
        print(f"Started workflow {workflow_id}; waiting for the provider's webhook...")
        result = await client.execute_workflow(
            PaymentWorkflow.run, args.amount, id=workflow_id, task_queue=TASK_QUEUE
        )
        print(f"Workflow result: {result}")
    del client, runtime
    gc.collect()  # free the runtime's threads now, not during interpreter exit


if __name__ == "__main__":
    asyncio.run(main())
