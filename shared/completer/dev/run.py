"""``completer dev`` (``make run``): the whole stack on 127.0.0.1 until Ctrl-C.

For each trigger a sample workflow waits; its activity prints ready-to-paste commands that
complete it through that trigger. When a workflow finishes, its result is printed and a
new one starts for the same trigger. The ``key`` workflow's activity registers an order
number as its correlation key: a file named by it (``inbox/<order>.json``) completes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from typing import Any

from completer.dev.processes import ServiceFailed
from completer.dev.sample import SampleWorkflow, Waiting
from completer.dev.stack import (
    BUCKET,
    LINK_DESCRIPTION,
    LINK_TITLE,
    TASK_QUEUE,
    Endpoints,
    Ports,
    Stack,
    key_object,
)

__all__ = ["describe_result", "run_dev"]


def _say(text: str = "") -> None:
    print(text, flush=True)


def describe_result(exc: BaseException) -> str:
    """A workflow failure in one line: the application error's message and type."""
    from temporalio.exceptions import ActivityError, ApplicationError

    cause: BaseException | None = exc.__cause__ or getattr(exc, "cause", None)
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.message} ({cause.type})" if cause.type else cause.message
    return str(cause or exc)


class DevSession:
    """Prints commands for each waiting activity and keeps one workflow per trigger."""

    def __init__(self) -> None:
        self.endpoints: Endpoints | None = None
        self.pending: list[Waiting] = []

    def on_waiting(self, waiting: Waiting) -> None:
        if self.endpoints is None:
            self.pending.append(waiting)
            return
        self.announce(waiting)

    def announce(self, waiting: Waiting) -> None:
        ends = self.endpoints
        assert ends is not None
        lines = [f"[{waiting.trigger}] workflow {waiting.workflow_id} is waiting."]
        if waiting.trigger == "http":
            lines += [
                "  Complete it with a JSON request (the local function takes unsigned JSON: "
                "COMPLETER_ALLOW_UNSIGNED=true):",
                f"    {ends.http_command(waiting)}",
            ]
            lines += [
                "  or as a partner's webhook, through a callback URL (result: data.object):",
                f"    {ends.callback_command(waiting)}",
            ]
        elif waiting.trigger == "link":
            approve, reject = ends.links(waiting)
            lines += [
                f"  Links titled “{LINK_TITLE}” ({LINK_DESCRIPTION})",
                "  Open one in a browser: its page asks to confirm; only its button completes,",
                "  then the browser lands on a receipt, and the used link shows the decision.",
                f"    approve: {approve}",
                f"    reject:  {reject}",
                "  or confirm without a browser (answers 303, to the receipt):",
                f"    {ends.link_post_command(approve)}",
            ]
        elif waiting.trigger == "pubsub":
            lines += ["  Publish a message with its token as an attribute:"]
            lines += [f"    {command}" for command in ends.pubsub_commands(waiting)]
        elif waiting.trigger == "s3":
            lines += ["  Upload a file with its token as metadata:"]
            lines += [f"    {command}" for command in ends.s3_commands(waiting)]
        elif waiting.trigger == "key":
            lines += [
                f"  Its activity registered the correlation key {waiting.key}: a partner who knows",
                f"  only the order number drops s3://{BUCKET}/{key_object(waiting.key)} (no token,",
                "  no metadata; the S3 function's COMPLETER_S3_KEY_PATTERN reads the key):",
            ]
            lines += [f"    {command}" for command in ends.key_commands(waiting)]
        elif waiting.trigger == "gcs":
            lines += [
                "  Upload a file with its token as metadata (no local Eventarc exists: a poller",
                "  posts the CloudEvent Eventarc would send for each finished upload):",
            ]
            lines += [f"    {command}" for command in ends.gcs_commands(waiting)]
        _say("\n".join(lines) + "\n")

    async def keep_waiting(self, client: Any, trigger: str) -> None:
        """Run one workflow for ``trigger`` after another, printing each result."""
        from temporalio.client import WorkflowFailureError

        while True:
            suffix = uuid.uuid4().hex[:6]
            key = f"ORDER-{suffix.upper()}" if trigger == "key" else ""
            handle = await client.start_workflow(
                SampleWorkflow.run,
                args=[trigger, key],
                id=f"dev-{trigger}-{suffix}",
                task_queue=TASK_QUEUE,
            )
            try:
                result = json.dumps(await handle.result())
                _say(f"[{trigger}] workflow {handle.id} completed with result: {result}")
            except WorkflowFailureError as exc:
                _say(f"[{trigger}] workflow {handle.id} failed: {describe_result(exc)}")


async def run_dev(ports: Ports) -> int:
    """Run the stack until SIGINT or SIGTERM; returns the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    session = DevSession()
    stack = Stack(ports=ports, on_waiting=session.on_waiting, say=_say)
    status = 0
    try:
        async with stack.running() as endpoints:
            _say("\nactivity-completer dev stack on 127.0.0.1")
            for line in endpoints.summary():
                _say(line)
            _say(
                f"  Link secret       export COMPLETER_LINK_SECRET=$(cat "
                f"{endpoints.link_secret_file})   # for `completer link` and examples/"
            )
            _say("Ctrl-C stops everything.\n")
            session.endpoints = endpoints
            for waiting in session.pending:
                session.announce(waiting)
            tasks = [
                asyncio.create_task(session.keep_waiting(stack.client, trigger))
                for trigger in endpoints.triggers()
            ]
            watch = asyncio.create_task(_watch(stack, stop))
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait(
                [*tasks, watch, stopping], return_when=asyncio.FIRST_COMPLETED
            )
            for task in [*tasks, watch, stopping]:
                task.cancel()
            for task in done:
                if task is not stopping and (error := task.exception()) is not None:
                    raise error
            for task in [*tasks, watch]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    except ServiceFailed as exc:
        _say(f"\nThe stack stopped: {exc}")
        status = 1
    if stop.is_set():
        _say("Stopped.")
    return status


async def _watch(stack: Stack, stop: asyncio.Event) -> None:
    while not stop.is_set():
        message = stack.exited()
        if message:
            raise ServiceFailed(message)
        await asyncio.sleep(1)
