"""The handlers' shared parts without any service: the one disposition policy, the neutral
HTTP request's capped read, and the shape of the package (pure parsers, no import cycle)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from completer import errors
from completer.events.pubsub import MESSAGE_PUBLISHED, PushRequest
from completer.handlers.disposition import Disposition, judge, log_verdict
from completer.handlers.exchange import HttpRequest
from completer.handlers.pubsub import PubSubHandler
from completer.models import CompletionOutcome, Origin, Status

# --- the disposition policy ---------------------------------------------------------------------


def test_success_is_acknowledged():
    verdict = judge(CompletionOutcome(status=Status.COMPLETED))
    assert (verdict.disposition, verdict.outcome, verdict.error) == (
        Disposition.ACKNOWLEDGE,
        "completed",
        None,
    )


@pytest.mark.parametrize(
    "error",
    [
        errors.EngineUnavailable("down"),
        errors.EngineTimeout("slow"),
        errors.InternalError("oops"),
    ],
)
def test_transient_errors_are_retried(error: errors.CompleterError):
    verdict = judge(error)
    assert (verdict.disposition, verdict.outcome, verdict.error) == (
        Disposition.RETRY,
        error.code,
        error,
    )


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidRequest("bad"),
        errors.PayloadTooLarge("big"),
        errors.ActivityNotFound("gone"),
        errors.Conflict("not now"),
        errors.Unauthorized("unsigned"),
    ],
)
def test_permanent_errors_are_dead_lettered(error: errors.CompleterError):
    assert judge(error).disposition is Disposition.DEAD_LETTER


def test_not_found_after_this_instance_did_it_is_a_duplicate():
    verdict = judge(errors.ActivityNotFound("gone"), done_before=True)
    assert (verdict.disposition, verdict.duplicate) == (Disposition.ACKNOWLEDGE, True)
    # Only not-found: any other permanent error still goes to the dead letter.
    assert judge(errors.Conflict("x"), done_before=True).disposition is Disposition.DEAD_LETTER


def test_anything_unexpected_is_internal_and_retried():
    verdict = judge(KeyError("a message that may quote the input"))
    assert isinstance(verdict.error, errors.InternalError)
    assert verdict.disposition is Disposition.RETRY
    assert "quote" not in verdict.error.message


def test_one_log_line_with_outcome_and_disposition(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("completer.test")
    with caplog.at_level(logging.DEBUG, logger="completer.test"):
        log_verdict(logger, "done", judge(ValueError("secret input")), {"key": "k"}, cause=None)
        log_verdict(logger, "done", judge(errors.ActivityNotFound("gone")), {})
    first, second = (r.completer for r in caplog.records)  # type: ignore[attr-defined]
    assert first == {
        "key": "k",
        "outcome": "internal",
        "disposition": "retry",
        "reason": "an unexpected error occurred; retry.",
    }
    assert (second["outcome"], second["disposition"]) == ("activity_not_found", "dead_letter")
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.WARNING]


# --- the neutral HTTP request ---------------------------------------------------------------


async def test_streamed_body_read_stops_at_limit_plus_one():
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 10
            yield b"x" * 10

    request = HttpRequest("post", headers={"content-type": "Application/JSON; charset=utf-8"})
    assert request.method == "POST"
    assert request.media_type == "application/json"
    streamed = HttpRequest("POST", body=chunks())
    assert len(await streamed.read(95)) == 96
    assert pulled == 100  # ten chunks, not a thousand
    assert await streamed.read(95) == b""


@pytest.mark.parametrize(
    ("value", "expected"), [("12", 12), ("", None), ("-1", None), ("9" * 400, None)]
)
def test_content_length_is_a_number_or_none(value: str, expected: int | None):
    assert HttpRequest("POST", headers={"content-length": value}).content_length == expected


# --- the shape of the package ---------------------------------------------------------------

_PROBE = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("completer"))))
"""


def loaded_by(*modules: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout))


def test_parsers_import_neither_the_client_nor_a_handler():
    loaded = loaded_by("completer.events.http", "completer.events.pubsub", "completer.events.s3")
    assert "completer.client" not in loaded
    assert not [m for m in loaded if m.startswith(("completer.handlers", "completer.backends"))]


def test_link_pages_and_the_http_handler_do_not_import_each_other():
    assert "completer.handlers.http" not in loaded_by("completer.handlers.links")
    assert "completer.handlers.links" not in loaded_by("completer.handlers.http")


# --- Pub/Sub: a redelivery after an unknown outcome ---------------------------------------------


class ScriptedEngine:
    """An executor that answers from a script: here the engine's answers are the input."""

    def __init__(self, *answers: CompletionOutcome | errors.CompleterError) -> None:
        self.answers = list(answers)
        self.origins: list[Any] = []

    async def execute(self, request: Any, /, *, origin: Any = None) -> CompletionOutcome:
        self.origins.append(origin)
        answer = self.answers.pop(0)
        if isinstance(answer, errors.CompleterError):
            raise answer
        return answer


class RecordingDeadLetters:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def publish(self, data: bytes, attributes: Any, *, error: Any, source_message_id: str) -> str:
        self.sent.append(error.code)
        return "dl-1"


def push(message_id: str) -> PushRequest:
    message = {"messageId": message_id, "data": "", "attributes": {"task_token": "dG9rZW4"}}
    return PushRequest(data={"message": message}, attributes={"type": MESSAGE_PUBLISHED})


async def test_redelivery_after_engine_timeout_that_finds_it_done_is_not_dead_lettered():
    engine = ScriptedEngine(errors.EngineTimeout("slow"), errors.ActivityNotFound("gone"))
    letters = RecordingDeadLetters()
    handler = PubSubHandler(engine, dead_letters=letters)  # type: ignore[arg-type]
    with pytest.raises(errors.EngineTimeout):
        await handler.handle(push("m-7"))
    await handler.handle(push("m-7"))  # acknowledged: the first attempt did complete it
    assert letters.sent == []
    assert engine.origins == [Origin(trigger="pubsub", source="m-7")] * 2


async def test_not_found_for_a_message_never_tried_here_is_dead_lettered():
    letters = RecordingDeadLetters()
    handler = PubSubHandler(ScriptedEngine(errors.ActivityNotFound("gone")), dead_letters=letters)  # type: ignore[arg-type]
    await handler.handle(push("m-8"))
    assert letters.sent == ["activity_not_found"]


# --- Pub/Sub: message IDs and repeats through the ledger ----------------------------------------


def ledgered(engine: ScriptedEngine, store: Any = None) -> tuple[PubSubHandler, Any]:
    from completer.ledger import Ledger
    from completer.ledger.memory import MemoryStore

    ledger = Ledger(store or MemoryStore(), scope="test")
    letters = RecordingDeadLetters()
    handler = PubSubHandler(ledger.wrap(engine), dead_letters=letters, ledger=lambda: ledger)  # type: ignore[arg-type]
    return handler, letters


async def test_a_redelivered_message_id_is_acknowledged_without_being_handled_again():
    engine = ScriptedEngine(errors.ActivityNotFound("never asked twice"))
    handler, letters = ledgered(engine)
    await handler.handle(push("m-9"))  # the refusal is dead-lettered once
    await handler.handle(push("m-9"))  # the redelivery gets the first answer: acknowledged
    assert letters.sent == ["activity_not_found"]
    assert len(engine.origins) == 1


async def test_the_same_completion_in_another_message_is_replayed_not_dead_lettered(
    caplog: pytest.LogCaptureFixture,
):
    engine = ScriptedEngine(CompletionOutcome(status=Status.COMPLETED))
    handler, letters = ledgered(engine)
    caplog.set_level(logging.INFO, logger="completer.pubsub")
    await handler.handle(push("m-10"))
    await handler.handle(push("m-11"))
    assert letters.sent == []
    assert len(engine.origins) == 1
    lines = [r.completer for r in caplog.records if hasattr(r, "completer")]
    assert [(line["message_id"], line.get("replayed")) for line in lines] == [
        ("m-10", None),
        ("m-11", True),
    ]


async def test_an_unreachable_ledger_redelivers_the_message_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
):
    from completer.ledger.memory import MemoryStore

    class Down(MemoryStore):
        async def _create(self, record: Any) -> Any:
            raise OSError("connection refused")

    engine = ScriptedEngine()
    handler, letters = ledgered(engine, Down())
    caplog.set_level(logging.INFO, logger="completer.pubsub")
    with pytest.raises(errors.EngineUnavailable):
        await handler.handle(push("m-12"))
    assert (engine.origins, letters.sent) == ([], [])
    lines = [r.completer for r in caplog.records if hasattr(r, "completer")]
    assert [(line["outcome"], line["disposition"]) for line in lines] == [
        ("engine_unavailable", "retry")
    ]
