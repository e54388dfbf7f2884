"""The completion ledger on its three stores: in memory, the Firestore emulator, DynamoDB
on moto's server. One test body per behaviour, parametrised over the stores."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from completer.errors import (
    ActivityNotFound,
    CompleterError,
    Conflict,
    EngineTimeout,
    EngineUnavailable,
)
from completer.ledger import Answer, Ledger, LedgerStore, Record, RecordState
from completer.ledger.keys import ActivityNaming
from completer.ledger.memory import MemoryStore
from completer.models import CompletionOutcome, CompletionRequest, Origin, Status
from tests.conftest import LEDGER_COLLECTION as COLLECTION
from tests.conftest import LEDGER_TABLE as TABLE
from tests.support.services import free_port

STORES = ["memory", "firestore", "dynamodb"]
TOKEN = "CiQ2N2Y1YWJjZC0xMjM0LTU2NzgtOWFiYy1kZWYwMTIzNDU2NzgSBXdmLTQyGgNhY3Q"


def make_store(kind: str) -> LedgerStore:
    """A new store client on the shared backing service of ``kind``."""
    if kind == "firestore":
        from google.cloud import firestore

        from completer.ledger.firestore import FirestoreStore

        client = firestore.AsyncClient(project="completer-test")
        return FirestoreStore(
            f"firestore://(default)/{COLLECTION}",
            database="(default)",
            collection=COLLECTION,
            client=client,
            timeout=10,  # the emulator (Java) is slow now and then on a busy machine
        )
    from completer.ledger.dynamodb import DynamoDBStore

    return DynamoDBStore(f"dynamodb://{TABLE}", table=TABLE, timeout=10)


@dataclass
class Stores:
    """Ledgers of one test, each on its own client of one shared store."""

    kind: str
    scope: str
    memory: MemoryStore = field(default_factory=MemoryStore)
    opened: list[Ledger] = field(default_factory=list)

    def ledger(self, *, ttl_seconds: int = 3600, rpc_timeout_seconds: float = 5.0) -> Ledger:
        store = self.memory if self.kind == "memory" else make_store(self.kind)
        ledger = Ledger(
            store,
            ttl_seconds=ttl_seconds,
            rpc_timeout_seconds=rpc_timeout_seconds,
            scope=self.scope,
        )
        self.opened.append(ledger)
        return ledger


@pytest.fixture(params=STORES)
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    kind = request.param
    if kind == "firestore":
        request.getfixturevalue("firestore_host")
    elif kind == "dynamodb":
        request.getfixturevalue("dynamodb_endpoint")
    # A scope per test: keys of one test never meet another's in the shared store.
    result = Stores(kind=kind, scope=f"test-{uuid.uuid4().hex}")
    yield result
    for ledger in result.opened:
        await ledger.close()


# --- an engine stand-in that counts calls ----------------------------------------------------


@dataclass
class Engine:
    """Counts calls; completes after ``delay``; raises what ``fail_with`` says."""

    delay: float = 0.0
    calls: int = 0
    fail_with: list[CompleterError] = field(default_factory=list)

    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail_with:
            raise self.fail_with.pop(0)
        status = {"complete": Status.COMPLETED, "fail": Status.FAILED}.get(
            request.action.value, Status.CANCELLED
        )
        if request.action.value == "heartbeat":
            return CompletionOutcome(status=Status.HEARTBEAT_RECORDED, cancel_requested=False)
        return CompletionOutcome(status=status)


def by_token(result: Any = None, **extra: Any) -> CompletionRequest:
    return CompletionRequest.build({"task_token": TOKEN, "result": result, **extra})


HTTP = Origin("http", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")


# --- the semantics ---------------------------------------------------------------------------


async def test_identical_repeat_is_replayed_and_a_different_one_conflicts(stores: Stores):
    engine = Engine()
    first, second = stores.ledger().wrap(engine), stores.ledger().wrap(engine)

    outcome = await first.execute(by_token({"approved": True}), origin=HTTP)
    assert outcome == CompletionOutcome(status=Status.COMPLETED)

    # Another instance, the same request written differently (key order, 1.0 for 1).
    again = CompletionRequest.build({"result": {"approved": True}, "taskToken": TOKEN.rstrip("=")})
    replay = await second.execute(again, origin=Origin("pubsub", "1234"))
    assert replay.replayed is True
    assert replay.to_dict() == {"status": "completed", "replayed": True}
    assert engine.calls == 1

    with pytest.raises(Conflict) as refused:
        await second.execute(by_token({"approved": False}))
    assert engine.calls == 1
    message = refused.value.message
    assert "already completed at 20" in message
    assert "through http (msg_2KWPBgLlAfxdpx2AI54pPJ85f4W)" in message
    assert TOKEN not in message


async def test_sixteen_identical_requests_on_two_instances_make_one_engine_call(stores: Stores):
    engine = Engine(delay=0.3)
    instances = [stores.ledger().wrap(engine), stores.ledger().wrap(engine)]
    request = by_token({"order": 42})

    outcomes = await asyncio.gather(
        *(instances[i % 2].execute(request, origin=HTTP) for i in range(16))
    )

    assert engine.calls == 1
    assert all(o.status is Status.COMPLETED for o in outcomes)
    assert sum(not o.replayed for o in outcomes) == 1


async def test_a_transient_engine_error_releases_the_claim(stores: Stores):
    engine = Engine(fail_with=[EngineUnavailable("down"), EngineTimeout("slow")])
    executor = stores.ledger().wrap(engine)
    with pytest.raises(EngineUnavailable):
        await executor.execute(by_token(1))
    with pytest.raises(EngineTimeout):  # outcome unknown: released too, the engine decides
        await executor.execute(by_token(1))
    outcome = await executor.execute(by_token(1))
    assert (outcome.replayed, engine.calls) == (False, 3)


async def test_a_refusal_is_not_recorded(stores: Stores):
    engine = Engine(fail_with=[ActivityNotFound("gone")])
    executor = stores.ledger().wrap(engine)
    with pytest.raises(ActivityNotFound):
        await executor.execute(by_token(1))
    # A later request, even a different one, is the engine's to answer.
    assert (await executor.execute(by_token(2))).replayed is False
    assert engine.calls == 2


async def test_heartbeats_pass_through_unrecorded(stores: Stores):
    engine = Engine()
    executor = stores.ledger().wrap(engine)
    heartbeat = CompletionRequest.build({"task_token": TOKEN, "action": "heartbeat"})
    for _ in range(2):
        assert (await executor.execute(heartbeat)).replayed is False
    assert engine.calls == 2
    assert (await executor.execute(by_token(1))).replayed is False


async def test_records_expire(stores: Stores):
    engine = Engine()
    # Expiry is kept in whole seconds: a TTL of 3 leaves the repeat at least 2 s on a busy
    # machine (a 1 s TTL could expire between the two calls to the emulator).
    executor = stores.ledger(ttl_seconds=3).wrap(engine)
    await executor.execute(by_token(1))
    assert (await executor.execute(by_token(1))).replayed is True
    await asyncio.sleep(4.1)  # the store's own TTL deletion is lazy: the read checks expiry
    assert (await executor.execute(by_token(2))).replayed is False
    assert engine.calls == 2


async def test_an_abandoned_claim_is_taken_over(stores: Stores):
    ledger = stores.ledger()
    naming = ActivityNaming.of(by_token(1), scope=stores.scope)
    dead = Record(
        key=naming.key,
        state=RecordState.IN_PROGRESS,
        expires_at=int(time.time()) + 3600,
        fingerprint="x",
        in_progress_until_ms=int(time.time() * 1000) - 1,
    )
    assert await ledger.store.create(dead) is None
    engine = Engine()
    assert (await ledger.wrap(engine).execute(by_token(1))).replayed is False
    assert engine.calls == 1


async def test_waiting_for_a_claim_that_never_finishes_times_out(stores: Stores):
    ledger = stores.ledger(rpc_timeout_seconds=0.5)
    naming = ActivityNaming.of(by_token(1), scope=stores.scope)
    stuck = Record(
        key=naming.key,
        state=RecordState.IN_PROGRESS,
        expires_at=int(time.time()) + 3600,
        in_progress_until_ms=int(time.time() * 1000) + 60_000,
    )
    assert await ledger.store.create(stuck) is None
    engine = Engine()
    with pytest.raises(EngineTimeout):
        await ledger.wrap(engine).execute(by_token(1))
    assert engine.calls == 0


@dataclass
class Runs:
    """An engine with runs: IDs without a run ID name the current run's waiting activity."""

    current: str = "run-1"
    waiting: set[str] = field(default_factory=lambda: {"run-1"})
    results: dict[str, Any] = field(default_factory=dict)
    calls: int = 0
    delay: float = 0.0

    def new_run(self, run_id: str) -> None:
        self.current = run_id
        self.waiting.add(run_id)

    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        self.calls += 1
        await asyncio.sleep(self.delay)
        run = request.run_id or self.current
        if run not in self.waiting:
            raise ActivityNotFound("not waiting")
        self.waiting.discard(run)
        self.results[run] = request.result
        return CompletionOutcome(status=Status.COMPLETED)


async def test_a_new_run_with_the_same_workflow_id_is_not_answered_from_the_old_run(
    stores: Stores,
):
    engine = Runs()
    executor = stores.ledger().wrap(engine)

    def by_ids(result: Any) -> CompletionRequest:
        return CompletionRequest.build(
            {"workflow_id": "order-42", "activity_id": "approve", "result": result}
        )

    await executor.execute(by_ids("yes"))
    assert (await executor.execute(by_ids("yes"))).replayed is True  # the engine confirms
    with pytest.raises(Conflict):
        await executor.execute(by_ids("no"))

    engine.new_run("run-2")  # same business ID, a new run waits
    outcome = await executor.execute(by_ids("yes"))
    assert outcome.replayed is False
    assert engine.results == {"run-1": "yes", "run-2": "yes"}

    engine.new_run("run-3")
    assert (await executor.execute(by_ids("other"))).replayed is False
    assert engine.results["run-3"] == "other"

    # A run ID pins the record: no engine call for a repeat.
    pinned = CompletionRequest.build(
        {"workflow_id": "order-42", "run_id": "run-9", "activity_id": "a", "result": 1}
    )
    engine.waiting.add("run-9")
    await executor.execute(pinned)
    calls = engine.calls
    assert (await executor.execute(pinned)).replayed is True
    assert engine.calls == calls


async def test_identical_requests_by_ids_arriving_together_make_one_engine_call(
    stores: Stores,
):
    engine = Runs(delay=0.3)
    instances = [stores.ledger().wrap(engine), stores.ledger().wrap(engine)]
    request = CompletionRequest.build(
        {"workflow_id": "order-7", "activity_id": "approve", "result": "yes"}
    )
    outcomes = await asyncio.gather(*(instances[i % 2].execute(request) for i in range(16)))
    assert engine.calls == 1
    assert sum(not o.replayed for o in outcomes) == 1


async def test_awkward_input_is_kept_and_compared(stores: Stores):
    engine = Engine()
    executor = stores.ledger().wrap(engine)
    big = int("9" * 400)
    odd = Origin("http", "x" * 5000)
    await executor.execute(by_token({"n": big, "s": "\ud800", "f": 2.0}), origin=odd)
    again = await executor.execute(by_token({"f": 2, "s": "\ud800", "n": big}))
    assert again.replayed is True
    with pytest.raises(Conflict) as refused:
        await executor.execute(by_token({"n": big + 1, "s": "\ud800", "f": 2}))
    assert len(refused.value.message) < 400  # the source is cut, not echoed whole
    assert engine.calls == 1


# --- an unreachable ledger -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["firestore", "dynamodb"])
async def test_an_unreachable_ledger_is_engine_unavailable(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
):
    request.getfixturevalue("firestore_host" if kind == "firestore" else "dynamodb_endpoint")
    dead = f"127.0.0.1:{free_port()}"
    if kind == "firestore":
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", dead)
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://{dead}")
    ledger = Ledger(make_store(kind), scope="dead")
    engine = Engine()
    started = time.monotonic()
    try:
        with pytest.raises(EngineUnavailable) as refused:
            await ledger.wrap(engine).execute(by_token(1))
        with pytest.raises(EngineUnavailable):
            await ledger.deliveries.once("msg_1", _never, kind="webhook")
    finally:
        await ledger.close()
    assert engine.calls == 0
    assert "completion ledger" in refused.value.message
    assert time.monotonic() - started < 15


async def _never() -> Answer:
    raise AssertionError("must not be called")


# --- deliveries (webhook-id, Pub/Sub message ID) -------------------------------------------


async def test_a_delivery_gets_its_first_answer_on_another_instance(stores: Stores):
    calls = 0

    async def produce() -> Answer:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return Answer(404, {"error": {"code": "activity_not_found", "message": "gone"}})

    first, second = stores.ledger(), stores.ledger()
    answers = await asyncio.gather(
        first.deliveries.once("msg_1", produce, kind="webhook"),
        second.deliveries.once("msg_1", produce, kind="webhook"),
    )
    assert calls == 1
    assert sorted(replayed for _, replayed in answers) == [False, True]
    assert {a.status for a, _ in answers} == {404}
    assert await second.deliveries.recall("msg_1", kind="webhook") == answers[0][0]
    # The same ID from another kind of sender is another delivery.
    assert await second.deliveries.recall("msg_1", kind="pubsub") is None


async def test_a_transient_delivery_answer_is_not_kept(stores: Stores):
    ledger = stores.ledger()
    answers = iter([Answer(503, {"error": {"code": "engine_unavailable"}}), Answer(200, {})])

    async def produce() -> Answer:
        return next(answers)

    busy = Answer(503, {"error": {"code": "engine_unavailable"}})
    assert await ledger.deliveries.once("m", produce, kind="pubsub") == (busy, False)
    assert await ledger.deliveries.once("m", produce, kind="pubsub") == (Answer(200, {}), False)
    assert await ledger.deliveries.once("m", produce, kind="pubsub") == (Answer(200, {}), True)


# --- correlation keys ------------------------------------------------------------------------


async def test_correlation_key_primitives(stores: Stores):
    registry = stores.ledger().registry
    other = stores.ledger().registry
    registered = await registry.register(
        "invoice-7", activity={"task_token": TOKEN}, ttl_seconds=60
    )
    assert registered.public()["activity"] == {"token": registered.public()["activity"]["token"]}
    assert TOKEN not in str(registered.public())
    # Again for the same activity renews it; for another is refused, on any instance.
    await other.register("invoice-7", activity={"task_token": TOKEN}, ttl_seconds=60)
    with pytest.raises(Conflict):
        await other.register(
            "invoice-7", activity={"workflow_id": "w", "activity_id": "a"}, ttl_seconds=60
        )
    found = await other.lookup("invoice-7")
    assert found is not None
    assert found.activity == {"task_token": TOKEN}
    await other.consume("invoice-7", activity={"workflow_id": "w", "activity_id": "a"})
    assert await registry.lookup("invoice-7") is not None  # names another activity: kept
    await other.consume("invoice-7", activity={"task_token": TOKEN})
    assert await registry.lookup("invoice-7") is None
    await registry.register(
        "invoice-7", activity={"workflow_id": "w", "activity_id": "a"}, ttl_seconds=60
    )

    body = {"action": "complete", "result": {"paid": True}}
    kept = await registry.buffer("early-1", body, origin=HTTP, ttl_seconds=60)
    assert kept.body == body
    await other.buffer("early-1", dict(body), origin=None, ttl_seconds=60)  # the same again
    with pytest.raises(Conflict):
        await other.buffer("early-1", {"result": 2}, origin=None, ttl_seconds=60)
    taken = await other.take_buffered("early-1")
    assert taken is not None
    assert taken.origin == {"trigger": "http", "source": HTTP.source}
    assert await registry.take_buffered("early-1") is None

    await registry.buffer("early-2", body, origin=None, ttl_seconds=1)
    await registry.register("short", activity={"task_token": TOKEN}, ttl_seconds=1)
    await asyncio.sleep(2.1)
    assert await registry.peek_buffered("early-2") is None
    assert await registry.lookup("short") is None
    await other.register("short", activity={"workflow_id": "w", "activity_id": "b"}, ttl_seconds=60)


async def test_show_tells_what_was_done_without_the_token(stores: Stores):
    ledger = stores.ledger()
    await ledger.wrap(Engine()).execute(by_token({"a": 1}), origin=HTTP)
    shown = await ledger.show(task_token=TOKEN)
    assert shown is not None
    assert shown["state"] == "completed"
    assert shown["action"] == "complete"
    assert shown["origin"] == {"trigger": "http", "source": HTTP.source}
    assert shown["outcome"] == {"status": "completed", "cancel_requested": None}
    assert shown["activity"].startswith("token:")
    assert TOKEN not in str(shown)
    assert await ledger.show(workflow_id="w", activity_id="a") is None


# --- with the real completion client on the Temporal dev server -----------------------------


@pytest.mark.temporal
async def test_the_workflow_keeps_the_first_result(stores: Stores, settings: Any, waiting: Any):
    from completer.client import CompletionClient

    async with await CompletionClient.connect(settings) as client:
        first, second = stores.ledger().wrap(client), stores.ledger().wrap(client)
        request = CompletionRequest.build({"task_token": waiting.token_urlsafe, "result": "yes"})
        assert (await first.execute(request, origin=HTTP)).replayed is False
        with pytest.raises(Conflict):
            await second.execute(
                CompletionRequest.build({"task_token": waiting.token_b64, "result": "no"})
            )
        # The same token in the other base64 alphabet is the same request: replayed.
        again = CompletionRequest.build({"task_token": waiting.token_b64, "result": "yes"})
        assert (await second.execute(again)).replayed is True
    assert await waiting.handle.result() == "yes"


@pytest.mark.temporal
async def test_a_new_run_of_a_business_id_waits_for_its_own_completion(
    stores: Stores, settings: Any, temporal_client: Any, task_queue: str
):
    from completer.client import CompletionClient
    from tests.support.temporal import _TOKENS, WaitingWorkflow

    workflow_id = f"order-{uuid.uuid4().hex[:8]}"

    async def start_run() -> Any:
        handle = await temporal_client.start_workflow(
            WaitingWorkflow.run, "approve", id=workflow_id, task_queue=task_queue
        )
        for _ in range(500):
            if _TOKENS.pop(workflow_id, None) is not None:
                return handle
            await asyncio.sleep(0.02)
        raise TimeoutError("the activity did not start")

    request = CompletionRequest.build(
        {"workflow_id": workflow_id, "activity_id": "approve", "result": "yes"}
    )
    async with await CompletionClient.connect(settings) as client:
        executor = stores.ledger().wrap(client)
        run_1 = await start_run()
        assert (await executor.execute(request)).replayed is False
        assert await run_1.result() == "yes"
        assert (await executor.execute(request)).replayed is True  # the old run's answer

        run_2 = await start_run()  # the same workflow ID again: a new run waits
        assert (await executor.execute(request)).replayed is False
        assert await run_2.result() == "yes"
        assert run_2.result_run_id != run_1.result_run_id


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COMPLETER_LEDGER", "redis://localhost"),
        ("COMPLETER_LEDGER", "firestore://(default)"),
        ("COMPLETER_LEDGER", "firestore://(default)/a/b"),
        ("COMPLETER_LEDGER", "dynamodb://x"),
        ("COMPLETER_LEDGER_TTL_SECONDS", "0"),
        ("COMPLETER_LEDGER_TTL_SECONDS", "a week"),
    ],
)
def test_a_wrong_ledger_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
):
    from completer.errors import ConfigurationError
    from completer.settings import load_settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert str(info.value).startswith(f"{variable} is invalid")
    assert "\n" not in str(info.value)


def test_a_store_that_cannot_be_built_fails_at_start(monkeypatch: pytest.MonkeyPatch):
    from completer.errors import ConfigurationError
    from completer.ledger import create_ledger
    from completer.settings import Settings

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ConfigurationError) as info:
        create_ledger(Settings(COMPLETER_LEDGER="dynamodb://completer-ledger"))
    assert str(info.value).startswith("COMPLETER_LEDGER=dynamodb://completer-ledger cannot be used")


def test_the_factory_imports_only_the_configured_store(monkeypatch: pytest.MonkeyPatch):
    import subprocess
    import sys

    code = (
        "import sys; from completer.settings import load_settings; "
        "from completer.ledger import create_ledger; "
        "ledger = create_ledger(load_settings()); "
        "print(type(ledger.store).__name__, ledger.ttl_seconds, "
        "'google.cloud.firestore' in sys.modules, 'boto3' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLETER_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["MemoryStore", "604800", "False", "False"]
    env["COMPLETER_LEDGER"] = "dynamodb://completer-ledger"
    env["COMPLETER_LEDGER_TTL_SECONDS"] = "3600"
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["DynamoDBStore", "3600", "False", "True"]


# --- signed webhooks' webhook-id across instances ----------------------------------------------


def signed(webhook_id: str, body: bytes, *, name: str | None = "partner") -> Any:
    import hashlib

    from completer.signatures import SignedRequest, SigningKey

    return SignedRequest(
        webhook_id=webhook_id,
        timestamp=int(time.time()),
        key=SigningKey(name=name, key=b"k" * 24),
        body_digest=hashlib.sha256(body).hexdigest(),
    )


async def test_a_signed_webhook_replayed_on_another_instance_gets_the_first_answer(
    stores: Stores,
):
    from completer.ledger.replays import LedgerReplayStore
    from completer.signatures import RememberedAnswer, answer_once

    first = LedgerReplayStore(stores.ledger(), tolerance_seconds=300)
    other_instance = stores.ledger()
    # A function passes its worker's ledger as a callable (a forked worker makes its own).
    second = LedgerReplayStore(lambda: other_instance, tolerance_seconds=300)
    calls = 0

    async def carry_out() -> RememberedAnswer:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return RememberedAnswer(200, {"status": "completed"})

    request = signed("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", b'{"task_token":"x"}')
    # Both instances at once: one carries it out, the other waits for its answer.
    (a, a_replayed), (b, b_replayed) = await asyncio.gather(
        answer_once(first, request, carry_out), answer_once(second, request, carry_out)
    )
    assert calls == 1
    assert sorted([a_replayed, b_replayed]) == [False, True]
    assert a == b == RememberedAnswer(200, {"status": "completed"})
    # Later, on the second instance: the first answer, not carried out again.
    answer, replayed = await answer_once(second, request, carry_out)
    assert (answer.replayed(), replayed, calls) == (
        {"status": "completed", "replayed": True},
        True,
        1,
    )
    # The same id with another body is a conflict on any instance; another secret's
    # namespace does not meet this one.
    with pytest.raises(Conflict):
        await answer_once(first, signed(request.webhook_id, b"{}"), carry_out)
    other = signed(request.webhook_id, b"{}", name="other-partner")
    assert (await answer_once(first, other, carry_out))[1] is False


async def test_a_transient_signed_answer_is_released_for_the_retry(stores: Stores):
    from completer.ledger.replays import LedgerReplayStore
    from completer.signatures import RememberedAnswer, answer_once

    first = LedgerReplayStore(stores.ledger(), tolerance_seconds=300)
    second = LedgerReplayStore(stores.ledger(), tolerance_seconds=300)
    request = signed("msg-transient", b"{}")
    down = RememberedAnswer(503, {"error": {"code": "engine_unavailable"}})
    assert await answer_once(first, request, _constant(down)) == (down, False)
    done = RememberedAnswer(200, {"status": "completed"})
    assert await answer_once(second, request, _constant(done)) == (done, False)
    assert await answer_once(first, request, _constant(down)) == (done, True)


def _constant(answer: Any) -> Any:
    async def produce() -> Any:
        return answer

    return produce


async def test_an_unreachable_ledger_refuses_a_signed_webhook_before_carrying_it_out():
    from completer.ledger.replays import LedgerReplayStore
    from completer.signatures import answer_once

    class Down(MemoryStore):
        async def _create(self, record: Record) -> Record | None:
            raise OSError("connection refused")

    store = LedgerReplayStore(Ledger(Down()), tolerance_seconds=300)
    with pytest.raises(EngineUnavailable):
        await answer_once(store, signed("msg-down", b"{}"), _constant(None))


async def test_decision_says_whether_how_and_when_an_activity_was_decided(stores: Stores):
    ledger = stores.ledger()
    executor = ledger.wrap(Engine())
    assert await ledger.decision(by_token({"approved": True})) is None
    before = time.time()
    await executor.execute(by_token({"approved": True}), origin=Origin("http", "msg-1"))
    # Another instance on the same store sees it.
    decided = await stores.ledger().decision(by_token({"approved": True}))
    assert decided is not None
    assert (decided.status, decided.trigger, decided.source) == ("completed", "http", "msg-1")
    assert decided.same_request
    assert before - 1 <= decided.decided_at <= time.time() + 1
    other = await stores.ledger().decision(by_token({"approved": False}))
    assert other is not None
    assert not other.same_request
    by_ids = CompletionRequest.build({"workflow_id": "wf-42", "activity_id": "act", "result": 1})
    assert await ledger.decision(by_ids) is None
