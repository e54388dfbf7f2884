"""completer.handlers.gcs in-process: disposition of each outcome (the real-process runs are in
tests/test_gcs_function.py; here the executor, reader and dead-letter topic are recorders)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from completer.errors import (
    ActivityNotFound,
    CompleterError,
    EngineTimeout,
    EngineUnavailable,
    InternalError,
)
from completer.events.gcs import GcsObject
from completer.handlers.gcs import GcsHandler
from completer.ledger import Ledger
from completer.ledger.memory import MemoryStore
from completer.models import CompletionOutcome, CompletionRequest, Origin, Status
from completer.settings import Settings
from completer.storage.gcs import ObjectGone, StorageUnavailable

TOKEN = "Z29sZGVuLXRhc2stdG9rZW4tAAECLW5vdC1hLXJlYWwtb25l"


class Executor:
    def __init__(self, error: CompleterError | None = None) -> None:
        self.error = error
        self.calls: list[tuple[CompletionRequest, Origin | None]] = []

    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        self.calls.append((request, origin))
        if self.error is not None:
            raise self.error
        return CompletionOutcome(status=Status.COMPLETED)


class Reader:
    def __init__(self, content: bytes = b"{}", error: CompleterError | None = None) -> None:
        self.content, self.error = content, error
        self.limits: list[int] = []

    def read(self, obj: GcsObject, limit: int, /) -> bytes:
        self.limits.append(limit)
        if self.error is not None:
            raise self.error
        return self.content[: limit + 1]


class DeadLetters:
    def __init__(self) -> None:
        self.published: list[tuple[bytes, dict[str, str], str, str]] = []

    def publish(
        self, data: bytes, attributes: Any, *, error: CompleterError, source_message_id: str
    ) -> str:
        self.published.append((data, dict(attributes), error.code, source_message_id))
        return "dl-1"


def event(name: str = "in/a.json", metadata: dict[str, str] | None = None) -> CloudEvent:
    return CloudEvent(
        {
            "type": "google.cloud.storage.object.v1.finalized",
            "source": "//storage.googleapis.com/projects/_/buckets/b",
            "id": "42",
        },
        {
            "bucket": "b",
            "name": name,
            "generation": "7",
            "size": "2",
            "contentType": "application/json",
            "metadata": {"task-token": TOKEN} if metadata is None else metadata,
        },
    )


def handler(executor: Executor, reader: Reader | None = None) -> tuple[GcsHandler, DeadLetters]:
    letters = DeadLetters()
    built = GcsHandler(
        executor,
        settings=Settings(COMPLETER_GCS_INLINE_MAX_BYTES=100),
        reader=reader or Reader(),
        dead_letters=letters,  # type: ignore[arg-type]
    )
    return built, letters


async def test_completes_with_the_origin_and_reads_at_most_the_limit():
    executor = Executor()
    gcs, letters = handler(executor)
    assert await gcs.handle(event()) == "completed"
    [(request, origin)] = executor.calls
    assert request.result == {}
    assert origin == Origin("gcs", "gs://b/in/a.json#7")
    assert gcs.reader.limits == [100]  # type: ignore[attr-defined]
    assert letters.published == []


async def test_generation_gone_is_dead_lettered_with_the_event_data():
    gcs, letters = handler(Executor(), Reader(error=ObjectGone("gs://b/in/a.json#7 is gone")))
    assert await gcs.handle(event()) == "invalid_request"
    [(data, attributes, code, source)] = letters.published
    assert json.loads(data)["generation"] == "7"
    assert (attributes, code, source) == ({"source": "gs://b/in/a.json#7"}, "invalid_request", "42")


@pytest.mark.parametrize(
    "error", [StorageUnavailable("denied"), EngineUnavailable("down")], ids=["read", "engine"]
)
async def test_transient_errors_raise_and_dead_letter_nothing(error: CompleterError):
    reader = Reader(error=error) if isinstance(error, StorageUnavailable) else Reader()
    gcs, letters = handler(Executor(error if reader.error is None else None), reader)
    with pytest.raises(type(error)):
        await gcs.handle(event())
    assert letters.published == []


async def test_a_redelivered_event_answers_the_ledgers_first_outcome():
    executor = Executor()
    gcs, letters = handler(executor)
    gcs.executor = Ledger(MemoryStore()).wrap(executor)
    assert await gcs.handle(event()) == "completed"
    executor.error = ActivityNotFound("already completed")
    assert await gcs.handle(event()) == "completed"  # replayed: the engine is not asked
    assert letters.published == []
    # A different completion of the finished activity is a conflict, worth a dead letter.
    gcs.reader.content = b'{"other": 1}'  # type: ignore[attr-defined]
    assert await gcs.handle(event(name="in/b.json")) == "conflict"
    assert len(letters.published) == 1


async def test_a_long_name_fits_the_dead_letter_attribute_limit():
    name = "n/" + "é" * 600  # 1202 bytes: an allowed object name, over Pub/Sub's 1024
    gcs, letters = handler(Executor(), Reader(content=b"{nope"))
    assert await gcs.handle(event(name=name)) == "invalid_request"
    [(_, attributes, _, _)] = letters.published
    assert len(attributes["source"].encode()) <= 1024
    assert attributes["source"].endswith("...")


async def test_an_unbounded_event_id_is_cut_for_logs_and_the_dead_letter():
    long_id = event()
    long_id["id"] = "9" * 5000 + "\udc80"
    gcs, letters = handler(Executor(), Reader(content=b"{nope"))
    assert await gcs.handle(long_id) == "invalid_request"
    [(_, _, _, source)] = letters.published
    assert len(source.encode()) <= 256
    assert source.startswith("999")


async def test_a_lone_surrogate_is_refused_before_anything_is_read():
    executor, reader = Executor(), Reader()
    gcs, letters = handler(executor, reader)
    assert await gcs.handle(event(name="in/\ud800.json")) == "invalid_request"
    assert (executor.calls, reader.limits) == ([], [])
    [(data, attributes, _, _)] = letters.published
    assert attributes == {}
    assert b"\\ud800" in data


async def test_other_event_types_are_ignored():
    other = event()
    other["type"] = "google.cloud.storage.object.v1.deleted"
    executor = Executor()
    gcs, letters = handler(executor)
    assert await gcs.handle(other) == "ignored"
    assert (executor.calls, letters.published) == ([], [])


async def test_a_redelivery_after_an_unknown_outcome_is_acknowledged_as_a_duplicate():
    executor = Executor(EngineTimeout("no answer in time"))
    gcs, letters = handler(executor)
    with pytest.raises(EngineTimeout):
        await gcs.handle(event())
    executor.error = ActivityNotFound("already completed")  # the first attempt did it
    assert await gcs.handle(event()) == "activity_not_found"
    assert letters.published == []


async def test_an_unexpected_error_is_retried_as_internal_not_dropped():
    class Broken(Executor):
        async def execute(self, request: Any, /, *, origin: Any = None) -> CompletionOutcome:
            raise RuntimeError("a bug")

    gcs, letters = handler(Broken())
    with pytest.raises(InternalError) as info:
        await gcs.handle(event())
    assert isinstance(info.value.__cause__, RuntimeError)
    assert letters.published == []


async def test_a_failed_dead_letter_is_retried():
    class Down(DeadLetters):
        def publish(self, *args: Any, **kwargs: Any) -> str:
            raise InternalError("Pub/Sub is down")

    gcs = GcsHandler(
        Executor(),
        settings=Settings(COMPLETER_GCS_INLINE_MAX_BYTES=100),
        reader=Reader(content=b"{nope"),
        dead_letters=Down(),  # type: ignore[arg-type]
    )
    with pytest.raises(InternalError):
        await gcs.handle(event())
