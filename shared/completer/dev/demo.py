"""``completer demo`` (``make demo``): the local stack, end to end, in one scripted run.

Starts the stack on free ports, starts one sample workflow per case, completes each
through its trigger, and prints a table of what every workflow saw:

- ``http``: a JSON ``POST`` to the HTTP function;
- ``callback``: a partner's own payload (a Stripe-like event) POSTed to a callback URL whose
  ``select`` picks ``data.object`` as the result; the same POST again is answered as before;
- ``callback fails``: a failed-payment event, which the URL's ``fail_when`` turns into the
  ``CallbackFailed`` error;
- ``link approve``: an approval link, its GET (which must not complete), its POST (answered
  ``303 See Other`` to a receipt, which is then opened twice) and its GET again (the
  function's ledger shows the decision instead of the button);
- ``link reject``: a reject link: the workflow fails with the preset ``Rejected`` error;
- ``pubsub``: a message in the attribute form published to the emulator's topic;
- ``s3``: an upload to moto whose notification the S3 function handles;
- ``s3 key``: the activity registers an order number as its correlation key; a file named
  ``inbox/<order>.json``, with no token or metadata, completes it;
- ``s3 key, early``: the file is dropped before the workflow starts; the S3 function keeps it
  for the key (``buffered``) and the activity's registration completes it at once;
- ``gcs``: an upload to gcp-storage-emulator, whose finalized CloudEvent the local stack's
  poller (in Eventarc's place) posts to the Cloud Storage function.

The exit status is 0 only when every case saw its expected result. Without the Pub/Sub
emulator its case is skipped with the reason, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from completer.callbacks import CALLBACK_FAILED
from completer.dev.processes import ServiceFailed
from completer.dev.run import describe_result
from completer.dev.sample import SampleWorkflow, Waiting
from completer.dev.stack import (
    AWS_LOCAL,
    BUCKET,
    GCS_BUCKET,
    GCS_PROJECT,
    TASK_QUEUE,
    UPLOAD_PREFIX,
    Endpoints,
    Ports,
    Stack,
    key_object,
)

__all__ = ["run_demo"]

CASE_TIMEOUT_SECONDS = 45


def _say(text: str = "") -> None:
    print(text, flush=True)


@dataclass
class Case:
    """One workflow of the demo: how it is completed and what it must return."""

    name: str
    trigger: str
    expected: str
    key: str = ""
    early: bool = False
    """Complete before the workflow starts (a file waiting for the key it will register)."""
    seen: str = "-"
    verdict: str = "FAIL"
    note: str = ""


def _http(method: str, url: str, *, body: bytes | None = None, content_type: str = "") -> int:
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - our own URL
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our own URL  # nosec B310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our own URL  # nosec B310
        return str(response.read().decode("utf-8"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 303 itself is what the demo checks


def _post_form(url: str, body: bytes) -> tuple[int, str]:
    """POST a form without following redirects: the status and the ``Location``."""
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 - our own URL
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return int(response.status), str(response.headers.get("Location", ""))
    except urllib.error.HTTPError as exc:
        return int(exc.code), str(exc.headers.get("Location", ""))


class Demo:
    """Completes each case's waiting activity through its trigger."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[Waiting]] = {}
        self.endpoints: Endpoints | None = None

    def on_waiting(self, waiting: Waiting) -> None:
        future = self.waiting.get(waiting.workflow_id)
        if future is not None and not future.done():
            future.set_result(waiting)

    async def http(self, waiting: Waiting) -> None:
        ends = self._ends()
        body = json.dumps({"task_token": waiting.task_token, "result": {"via": "http"}})
        status = await asyncio.to_thread(
            _http, "POST", ends.http, body=body.encode(), content_type="application/json"
        )
        _expect(status, 200, "the HTTP function")

    async def callback(self, waiting: Waiting, *, paid: bool) -> None:
        ends = self._ends()
        url = ends.callback_url(waiting)
        kind = "payment_intent.succeeded" if paid else "payment_intent.payment_failed"
        event = {"type": kind, "data": {"object": {"id": "pi_demo", "via": "callback"}}}
        body = json.dumps(event).encode()
        for attempt in ("", " again"):  # the partner retries: the first answer again
            status = await asyncio.to_thread(
                _http, "POST", url, body=body, content_type="application/json"
            )
            _expect(status, 200, f"the callback URL{attempt}")

    async def key_upload(self, waiting: Waiting) -> None:
        ends = self._ends()
        assert ends.s3 is not None
        await asyncio.to_thread(_upload_by_key, ends.s3, waiting.key)

    async def early_key_upload(self, waiting: Waiting, *, keys: Any) -> None:
        """Drop the file, then wait until the S3 function keeps it for the key."""
        await self.key_upload(waiting)
        while True:  # the ledger is polled: nothing here is told when the S3 function is done
            if await keys.waiting_for(waiting.key):
                return
            await asyncio.sleep(0.2)

    async def link(self, waiting: Waiting, *, choice: str, client: Any) -> None:
        ends = self._ends()
        approve, reject = ends.links(waiting)
        url = approve if choice == "approve" else reject
        page = await asyncio.to_thread(_page, url)
        if '<form method="post">' not in page:
            raise AssertionError("the link's GET did not show a confirmation page")
        # A GET (what a mail scanner does) must leave the activity waiting.
        description = await client.get_workflow_handle(waiting.workflow_id).describe()
        if not description.raw_description.pending_activities:
            raise AssertionError("the link's GET completed the activity")
        sealed = parse_qs(urlsplit(url).query)["link"][0]
        form = urlencode({"link": sealed}).encode()
        status, location = await asyncio.to_thread(_post_form, url, form)
        _expect(status, 303, "the link's confirmation")
        # Post/Redirect/Get: the browser lands on the receipt; reopening it changes nothing.
        receipt = urljoin(url, location)
        if "receipt=" not in location:
            raise AssertionError("the link's confirmation did not redirect to a receipt")
        shown = [await asyncio.to_thread(_page, receipt) for _ in range(2)]
        if "Done: you chose" not in shown[0] or shown[0] != shown[1]:
            raise AssertionError("the receipt did not show the same decision twice")
        if "This was already decided" not in await asyncio.to_thread(_page, url):
            raise AssertionError("the used link did not show the decision")

    async def pubsub(self, waiting: Waiting) -> None:
        ends = self._ends()
        assert ends.pubsub_emulator is not None
        await asyncio.to_thread(_publish, ends.pubsub_emulator, ends.topic, waiting.task_token)

    async def s3(self, waiting: Waiting) -> None:
        ends = self._ends()
        assert ends.s3 is not None
        await asyncio.to_thread(_upload, ends.s3, waiting)

    async def gcs(self, waiting: Waiting) -> None:
        ends = self._ends()
        assert ends.gcs_emulator is not None
        await asyncio.to_thread(_upload_gcs, ends.gcs_emulator, waiting)

    def _ends(self) -> Endpoints:
        assert self.endpoints is not None
        return self.endpoints


def _expect(status: int, wanted: int, what: str) -> None:
    if status != wanted:
        raise AssertionError(f"{what} answered {status}, not {wanted}")


def _publish(emulator: str, topic: str, token: str) -> None:
    import grpc
    from google.pubsub_v1 import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.types import PubsubMessage

    publisher = PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator))
    )
    try:
        data = json.dumps({"via": "pubsub"}).encode()
        message = PubsubMessage(data=data, attributes={"task_token": token})
        publisher.publish(topic=topic, messages=[message], timeout=30)
    finally:
        publisher.transport.close()  # type: ignore[no-untyped-call]


def _s3(endpoint: str) -> Any:
    """A boto3 S3 client for moto at ``endpoint`` (any credentials do)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=AWS_LOCAL["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_LOCAL["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_LOCAL["AWS_SECRET_ACCESS_KEY"],
    )


def _upload(endpoint: str, waiting: Waiting) -> None:
    _s3(endpoint).put_object(
        Bucket=BUCKET,
        Key=f"{UPLOAD_PREFIX}{waiting.workflow_id}.json",
        Body=json.dumps({"via": "s3"}).encode(),
        ContentType="application/json",
        Metadata={"task-token": waiting.task_token},
    )


def _upload_by_key(endpoint: str, key: str) -> None:
    """A partner's file named by the order number alone: no token, no metadata."""
    _s3(endpoint).put_object(
        Bucket=BUCKET,
        Key=key_object(key),
        Body=json.dumps({"order": key, "via": "key"}).encode(),
        ContentType="application/json",
    )


def _upload_gcs(emulator: str, waiting: Waiting) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client

    client = Client(
        project=GCS_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=emulator),
    )
    blob = client.bucket(GCS_BUCKET).blob(f"{waiting.workflow_id}.json")
    blob.metadata = {"task-token": waiting.task_token}
    blob.upload_from_string(json.dumps({"via": "gcs"}).encode(), content_type="application/json")


async def _run_case(
    case: Case, client: Any, demo: Demo, complete: Callable[[Waiting], Awaitable[None]]
) -> None:
    from temporalio.client import WorkflowFailureError

    workflow_id = f"demo-{case.name.replace(',', '').replace(' ', '-')}-{uuid.uuid4().hex[:6]}"
    demo.waiting[workflow_id] = asyncio.get_running_loop().create_future()
    handle = None
    try:
        async with asyncio.timeout(CASE_TIMEOUT_SECONDS):
            if case.early:
                # Only the key is known yet: the file goes first, the workflow after.
                await complete(Waiting(case.trigger, workflow_id, "", "", key=case.key))
            handle = await client.start_workflow(
                SampleWorkflow.run,
                args=[case.trigger, case.key],
                id=workflow_id,
                task_queue=TASK_QUEUE,
            )
            if not case.early:
                await complete(await demo.waiting[workflow_id])
            try:
                case.seen = "completed " + json.dumps(await handle.result())
            except WorkflowFailureError as exc:
                case.seen = "failed: " + describe_result(exc)
    except TimeoutError:
        case.note = f"no result within {CASE_TIMEOUT_SECONDS} s"
    except Exception as exc:  # noqa: BLE001 - every case gets a row, whatever went wrong
        case.note = str(exc) or type(exc).__name__
    if case.seen == case.expected:
        case.verdict = "ok"
    elif handle is not None:
        await _terminate(handle)


async def _terminate(handle: Any) -> None:
    with contextlib.suppress(Exception):  # it may already be closed
        await handle.terminate("the demo gave up on it")


def _table(cases: list[Case]) -> list[str]:
    headers = ("case", "trigger", "expected", "workflow saw", "")
    rows = [(c.name, c.trigger, c.expected, c.seen, c.verdict) for c in cases]
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for case, row in zip(cases, rows, strict=True):
        line = "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append(line.rstrip() + (f"   ({case.note})" if case.note else ""))
    return lines


async def run_demo(ports: Ports) -> int:
    """Run the demo; returns 0 only when every case saw its expected result."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    demo = Demo()
    stack = Stack(
        ports=ports,
        on_waiting=demo.on_waiting,
        prefer_default_ports=False,
        require_pubsub=in_ci,
        say=_say,
    )
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)
    cases = [
        Case("http", "http", 'completed {"via": "http"}'),
        Case("callback", "http", 'completed {"id": "pi_demo", "via": "callback"}'),
        Case(
            "callback fails",
            "http",
            f"failed: the callback reported a failure (its fail_when matched the body). "
            f"({CALLBACK_FAILED})",
        ),
        Case("link approve", "link", 'completed {"approved": true, "via": "link"}'),
        Case("link reject", "link", "failed: rejected (Rejected)"),
        Case("pubsub", "pubsub", 'completed {"via": "pubsub"}'),
        Case("s3 upload", "s3", 'completed {"via": "s3"}'),
        Case("s3 key", "key", 'completed {"order": "ORDER-1042", "via": "key"}', "ORDER-1042"),
        Case(
            "s3 key, early",
            "key",
            'completed {"order": "ORDER-1043", "via": "key"}',
            "ORDER-1043",
            early=True,
        ),
        Case("gcs upload", "gcs", 'completed {"via": "gcs"}'),
    ]
    try:
        async with stack.running() as endpoints:
            demo.endpoints = endpoints
            for line in endpoints.summary():
                _say(line)
            client = stack.client
            actions: dict[str, Callable[[Waiting], Awaitable[None]] | None] = {
                "http": demo.http,
                "callback": lambda w: demo.callback(w, paid=True),
                "callback fails": lambda w: demo.callback(w, paid=False),
                "link approve": lambda w: demo.link(w, choice="approve", client=client),
                "link reject": lambda w: demo.link(w, choice="reject", client=client),
                "pubsub": demo.pubsub if endpoints.pubsub_emulator else None,
                "s3 upload": demo.s3 if endpoints.s3 else None,
                "s3 key": demo.key_upload if endpoints.s3 else None,
                "s3 key, early": (
                    (lambda w: demo.early_key_upload(w, keys=stack.keys)) if endpoints.s3 else None
                ),
                "gcs upload": demo.gcs if endpoints.gcs_emulator else None,
            }
            runs = []
            for case in cases:
                action = actions[case.name]
                if action is None:
                    missing = {
                        "pubsub": endpoints.pubsub_missing,
                        "s3": endpoints.s3_missing,
                        "key": endpoints.s3_missing,
                        "gcs": endpoints.gcs_missing,
                    }[case.trigger]
                    case.verdict, case.note = "skipped", missing
                    continue
                runs.append(_run_case(case, client, demo, action))
            await asyncio.gather(*runs)
    except ServiceFailed as exc:
        _say(f"The stack did not start: {exc}")
        return 1
    _say("")
    for line in _table(cases):
        _say(line)
    failed = [c for c in cases if c.verdict not in ("ok", "skipped")]
    skipped = [c for c in cases if c.verdict == "skipped"]
    if failed:
        _say(f"\n{len(failed)} of {len(cases)} cases failed.")
        return 1
    if skipped and in_ci:
        _say("\nCI=true but some cases were skipped.")
        return 1
    _say(f"\nAll {len(cases) - len(skipped)} workflows saw the expected result.")
    return 0
