"""Engine outage and overload on the real Temporal dev server (see docs/outages.md).

A TCP proxy between the completer and the dev server plays the faults: a port that refuses,
a balancer that accepts and resets, a frontend that drops established connections and then
every new one, a server that stalls. An unreachable engine is ``engine_unavailable`` within
2 s whatever the RPC deadline, then answered at once by the circuit breaker until a probe
sees it back; a stalling one is ``engine_timeout``. Permanent errors and timeouts never open
the breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from completer import errors
from completer.backends.temporal import TemporalBackend
from completer.breaker import PROBE_INTERVAL_SECONDS
from completer.client import CompletionClient
from completer.handlers.exchange import HttpRequest
from completer.handlers.http import HttpHandler
from completer.handlers.worker import build_executor
from completer.models import CompletionRequest
from completer.settings import Settings
from completer.tokens import encode_token
from tests.support.proxy import Mode, TcpProxy
from tests.support.services import free_port
from tests.support.temporal import (
    TemporalServer,
    WaitingActivity,
    connect_when_ready,
    temporal_dev_server,
)

pytestmark = pytest.mark.temporal

# Long on purpose: an unreachable engine must be answered fast whatever the deadline.
LONG_DEADLINE = 30.0
FAIL_FAST = 2.0


def request(waiting: WaitingActivity, result: Any = "done", **fields: Any) -> CompletionRequest:
    if fields.get("action") in ("heartbeat", "cancel"):
        return CompletionRequest.build({"task_token": waiting.token_b64, **fields})
    return CompletionRequest.build({"task_token": waiting.token_b64, "result": result, **fields})


@pytest.fixture
def proxy(temporal_server: TemporalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """A started proxy to the dev server; TEMPORAL_ADDRESS points at it."""
    with TcpProxy(temporal_server.port) as proxy:
        monkeypatch.setenv("TEMPORAL_ADDRESS", proxy.address)
        yield proxy


@contextlib.asynccontextmanager
async def warm_client(deadline: float = LONG_DEADLINE) -> AsyncIterator[CompletionClient]:
    """A connected client that has already completed nothing but answered a probe."""
    async with CompletionClient.create(Settings(COMPLETER_RPC_TIMEOUT_SECONDS=deadline)) as client:
        await client.backend.probe()
        yield client


async def answer(client: CompletionClient, req: CompletionRequest) -> tuple[Any, float]:
    """The outcome or the public error of one request, and how long it took."""
    started = time.monotonic()
    try:
        outcome: Any = await client.execute(req)
    except errors.CompleterError as exc:
        outcome = exc
    return outcome, time.monotonic() - started


async def until_closed(client: CompletionClient, req: CompletionRequest, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        outcome, _ = await answer(client, req)
        if not isinstance(outcome, errors.EngineUnavailable) or time.monotonic() > deadline:
            return outcome
        await asyncio.sleep(0.05)


def assert_unavailable_fast(outcome: Any, elapsed: float) -> None:
    assert isinstance(outcome, errors.EngineUnavailable), outcome
    assert outcome.unreachable
    assert outcome.retry_after >= 1
    assert elapsed < FAIL_FAST, elapsed


# --- each way an engine can be unreachable --------------------------------------------------


@pytest.mark.parametrize("mode", ["refuse", "reset", "close"])
async def test_warm_client_engine_gone_is_unavailable_within_2s(
    proxy: TcpProxy, waiting: WaitingActivity, mode: Mode
):
    async with warm_client() as client:
        proxy.drop_connections(reset=mode == "reset")
        proxy.set_mode(mode)
        outcome, elapsed = await answer(client, request(waiting))
        assert_unavailable_fast(outcome, elapsed)
        assert client.breaker.is_open
        proxy.set_mode("forward")
        outcome = await until_closed(client, request(waiting), within=3)
    assert outcome.status.value == "completed"
    assert await waiting.handle.result() == "done"


async def test_dropped_connections_then_closed_ones_are_never_engine_timeout(
    proxy: TcpProxy, waiting: WaitingActivity
):
    # A frontend restart or a balancer drain: established connections are closed (FIN) and so
    # is every new one. The SDK's last retry ends in UNKNOWN "transport error" or, in about
    # one round of five here, CANCELLED "operation was canceled", which the completer once
    # read as its own deadline (engine_timeout). Several rounds, and the mapping itself is
    # pinned below.
    heartbeat = request(waiting, action="heartbeat")
    async with warm_client() as client:
        for _ in range(8):
            proxy.set_mode("forward")
            await until_closed(client, heartbeat, within=3)
            assert not client.breaker.is_open
            proxy.drop_connections(reset=False)
            proxy.set_mode("close")
            outcome, elapsed = await answer(client, heartbeat)
            assert_unavailable_fast(outcome, elapsed)
        proxy.set_mode("forward")
        outcome = await until_closed(client, request(waiting), within=3)
    assert outcome.status.value == "completed"


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (RPCStatusCode.CANCELLED, "operation was canceled", errors.EngineUnavailable),
        (RPCStatusCode.UNKNOWN, "transport error", errors.EngineUnavailable),
        (RPCStatusCode.UNAVAILABLE, "tcp connect error", errors.EngineUnavailable),
        (RPCStatusCode.CANCELLED, "Timeout expired", errors.EngineTimeout),
        (RPCStatusCode.DEADLINE_EXCEEDED, "context deadline exceeded", errors.EngineTimeout),
    ],
)
def test_what_the_sdk_says_for_a_lost_connection_and_for_a_deadline(
    status: RPCStatusCode, message: str, expected: type[errors.CompleterError]
):
    backend = TemporalBackend(Settings())
    error = backend.translate_error(RPCError(message, status, b""))
    assert type(error) is expected
    if isinstance(error, errors.EngineUnavailable):
        assert error.unreachable


def test_resource_exhausted_is_unavailable_with_retry_after_and_keeps_the_breaker_closed():
    backend = TemporalBackend(Settings())
    error = backend.translate_error(
        RPCError("namespace rate limit exceeded", RPCStatusCode.RESOURCE_EXHAUSTED, b"")
    )
    assert isinstance(error, errors.EngineUnavailable)
    assert error.retry_after >= 1
    assert not error.unreachable


async def test_cold_client_refused_reset_and_unresolvable_are_unavailable_within_2s(
    monkeypatch: pytest.MonkeyPatch, temporal_server: TemporalServer, waiting: WaitingActivity
):
    with TcpProxy(temporal_server.port) as resetting:
        resetting.set_mode("reset")
        for address in (
            f"127.0.0.1:{free_port()}",
            resetting.address,
            "no-such-host.invalid:7233",
        ):
            monkeypatch.setenv("TEMPORAL_ADDRESS", address)
            client = CompletionClient.create(Settings(COMPLETER_RPC_TIMEOUT_SECONDS=LONG_DEADLINE))
            try:
                outcome, elapsed = await answer(client, request(waiting))
                assert_unavailable_fast(outcome, elapsed)
            finally:
                await client.close()
    assert (await waiting.pending_activity()) is not None


async def test_stalling_engine_is_timeout_and_does_not_open_the_breaker(
    proxy: TcpProxy, waiting: WaitingActivity
):
    async with warm_client(deadline=1.0) as client:
        proxy.stalled = True
        outcome, elapsed = await answer(client, request(waiting, "late"))
        assert isinstance(outcome, errors.EngineTimeout), outcome
        assert 1.0 <= elapsed < 1.0 + 1.5
        assert not client.breaker.is_open
        proxy.stalled = False
        # The outcome was unknown: a retry completes it or finds it already done.
        outcome, _ = await answer(client, request(waiting, "late"))
        assert outcome.status.value == "completed" or isinstance(outcome, errors.ActivityNotFound)
    assert await waiting.handle.result() == "late"


# --- the breaker ----------------------------------------------------------------------------


async def test_breaker_answers_at_once_probes_and_one_success_closes_it(
    proxy: TcpProxy, waiting: WaitingActivity
):
    async with warm_client() as client:
        proxy.set_mode("refuse")
        proxy.drop_connections()
        first, _ = await answer(client, request(waiting))
        assert isinstance(first, errors.EngineUnavailable)
        assert client.breaker.is_open
        connections = proxy.connections
        # While open: at once, and without touching the network.
        for _ in range(20):
            outcome, elapsed = await answer(client, request(waiting))
            assert_unavailable_fast(outcome, elapsed)
            assert elapsed < 0.05, elapsed
        assert "unreachable" in outcome.message
        assert proxy.connections == connections
        # Probes at least once a second while down.
        probes = client.breaker.probes
        await asyncio.sleep(2.2)
        assert client.breaker.probes - probes >= 2
        assert client.breaker.is_open
        # The engine is back: a probe closes the breaker without any request.
        proxy.set_mode("forward")
        deadline = time.monotonic() + 2 * PROBE_INTERVAL_SECONDS + 1.5
        while client.breaker.is_open and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not client.breaker.is_open
        outcome, _ = await answer(client, request(waiting))
        assert outcome.status.value == "completed"
    assert await waiting.handle.result() == "done"


async def test_one_successful_call_closes_the_breaker(
    temporal_server: TemporalServer, waiting: WaitingActivity
):
    async with warm_client() as client:
        client.breaker.record_failure(errors.EngineUnavailable("test", unreachable=True))
        assert client.breaker.is_open
        client.breaker.record_success()
        assert not client.breaker.is_open
        outcome, _ = await answer(client, request(waiting))
        assert outcome.status.value == "completed"


async def test_permanent_errors_throttling_and_timeouts_never_open_the_breaker(
    temporal_server: TemporalServer, waiting: WaitingActivity
):
    settings = Settings(COMPLETER_RPC_TIMEOUT_SECONDS=5, COMPLETER_MAX_PAYLOAD_BYTES=64)
    async with CompletionClient.create(settings) as client:
        refused = [
            CompletionRequest.build({"task_token": "%%%", "result": 1}),  # invalid_request
            CompletionRequest.build({"task_token": "dG9rZW4", "result": 1}),  # engine refuses
            request(waiting, "x" * 100),  # payload_too_large
            request(waiting, action="cancel"),  # conflict: not requested
        ]
        codes = []
        for req in refused:
            outcome, _ = await answer(client, req)
            codes.append(outcome.code)
        assert codes == ["invalid_request", "invalid_request", "payload_too_large", "conflict"]
        client.breaker.record_failure(errors.EngineUnavailable("shedding", retry_after=2))
        assert not client.breaker.is_open
        await client.execute(request(waiting, "ok"))
        # A completed activity is activity_not_found: permanent, the breaker stays closed.
        outcome, _ = await answer(client, request(waiting, "again"))
        assert isinstance(outcome, errors.ActivityNotFound)
        assert not client.breaker.is_open
    assert await waiting.handle.result() == "ok"


async def test_breaker_stops_probing_when_the_client_closes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    client = CompletionClient.create(Settings(COMPLETER_RPC_TIMEOUT_SECONDS=LONG_DEADLINE))
    outcome, _ = await answer(client, CompletionRequest.build({"task_token": "dG9rZW4"}))
    assert isinstance(outcome, errors.EngineUnavailable)
    assert client.breaker.is_open
    await client.close()
    probes = client.breaker.probes
    await asyncio.sleep(3 * PROBE_INTERVAL_SECONDS)
    assert client.breaker.probes == probes


# --- the dev server's own rate limit under a burst -------------------------------------------

BURST_WORKFLOWS = 10
BURST_PER_WORKFLOW = 50
RATE_LIMIT = {"frontend.globalNamespaceRPS": "10"}

# (workflow_id, index) -> task token of that pending activity.
_BURST_TOKENS: dict[tuple[str, int], bytes] = {}


@activity.defn(name="burst_wait")
async def burst_wait(index: int) -> Any:
    """Hand out the task token and return pending, like wait_for_completion, many per run."""
    info = activity.info()
    _BURST_TOKENS[(info.workflow_id or "", index)] = info.task_token
    activity.raise_complete_async()


@workflow.defn
class ManyWaitingWorkflow:
    """Waits for ``count`` externally completed activities; returns their results in order."""

    @workflow.run
    async def run(self, count: int) -> list[Any]:
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        burst_wait,
                        index,
                        start_to_close_timeout=timedelta(minutes=10),
                        retry_policy=RetryPolicy(maximum_attempts=1),
                    )
                    for index in range(count)
                )
            )
        )


def burst_worker(client: Client, task_queue: str) -> Worker:
    # No workflow cache: no sticky queue that would outlive the first server.
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ManyWaitingWorkflow],
        activities=[burst_wait],
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_cached_workflows=0,
        max_concurrent_activities=BURST_WORKFLOWS * BURST_PER_WORKFLOW,
    )


async def start_burst_activities(address: str) -> tuple[str, dict[tuple[str, int], bytes]]:
    """Start the waiting activities on an unthrottled server (setup must not take minutes)."""
    client = await connect_when_ready(address)
    task_queue = f"burst-{uuid.uuid4()}"
    total = BURST_WORKFLOWS * BURST_PER_WORKFLOW
    async with burst_worker(client, task_queue):
        for n in range(BURST_WORKFLOWS):
            await client.start_workflow(
                ManyWaitingWorkflow.run,
                BURST_PER_WORKFLOW,
                id=f"burst-{n}-{uuid.uuid4().hex[:8]}",
                task_queue=task_queue,
            )
        async with asyncio.timeout(120):
            while len(_BURST_TOKENS) < total:
                await asyncio.sleep(0.1)
    tokens = dict(_BURST_TOKENS)
    _BURST_TOKENS.clear()
    return task_queue, tokens


async def test_burst_on_a_rate_limited_server_sheds_with_retry_after_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Through the HTTP function's own code: its handler over the chain every function builds
    # (keys -> ledger -> engine client), as one worker serves it. The activities are started
    # on the same database without the limit, then the server is restarted with
    # frontend.globalNamespaceRPS=10 (at 10 requests a second the setup alone would take a
    # minute). Every completion carries its attempt number, so the workflows' results say
    # which attempt completed each activity.
    with temporal_dev_server(tmp_path) as server:
        task_queue, tokens = await start_burst_activities(server.address)
    assert len(tokens) >= 500
    with temporal_dev_server(tmp_path, dynamic_config=RATE_LIMIT) as server:
        temporal = await connect_when_ready(server.address)
        monkeypatch.setenv("TEMPORAL_ADDRESS", server.address)
        worker = burst_worker(temporal, task_queue)
        settings = Settings(COMPLETER_RPC_TIMEOUT_SECONDS=10, COMPLETER_ALLOW_UNSIGNED=True)
        executor, _ledger = build_executor(settings)
        handler = HttpHandler(executor, settings=settings)
        answers: dict[tuple[str, int], list[int]] = {key: [] for key in tokens}
        shed_first_wave = 0
        started = time.monotonic()
        async with worker:
            try:

                async def complete(key: tuple[str, int], attempt: int) -> float | None:
                    body = {"task_token": encode_token(tokens[key]), "result": [*key, attempt]}
                    answer = await handler.handle(
                        HttpRequest(
                            "POST",
                            headers={"content-type": "application/json"},
                            query={},
                            body=json.dumps(body).encode(),
                        )
                    )
                    answers[key].append(answer.status)
                    if answer.status == 200:
                        return None
                    assert answer.status == 503, answer.body
                    assert answer.body["error"]["code"] == "engine_unavailable"
                    assert int(answer.headers["Retry-After"]) >= 1
                    return float(answer.headers["Retry-After"])

                pending = list(tokens)
                attempt = 0
                while pending:
                    attempt += 1
                    waits = await asyncio.gather(*(complete(key, attempt) for key in pending))
                    assert not executor.engine.breaker.is_open
                    pending = [key for key, wait in zip(pending, waits, strict=True) if wait]
                    if attempt == 1:
                        shed_first_wave = len(pending)
                    if pending:
                        await asyncio.sleep(min(w for w in waits if w))
                    assert time.monotonic() - started < 150, f"{len(pending)} still pending"
                elapsed = time.monotonic() - started
            finally:
                await executor.close()
            # 0 lost, 0 completed twice: each activity was answered 200 exactly once, and its
            # workflow got the result of exactly that attempt.
            completed_by = {}
            for key, seen in answers.items():
                assert seen.count(200) == 1, (key, seen)
                assert seen[-1] == 200
                completed_by[key] = len(seen)
            for workflow_id in {key[0] for key in tokens}:
                results = await temporal.get_workflow_handle(workflow_id).result()
                assert results == [
                    [workflow_id, index, completed_by[(workflow_id, index)]]
                    for index in range(BURST_PER_WORKFLOW)
                ]
        print(
            f"burst of {len(tokens)} through the HTTP function: {shed_first_wave} answered 503 "
            f"in the first wave, {attempt} waves, all completed in {elapsed:.1f} s"
        )
        assert shed_first_wave > 0, "the rate limit never answered RESOURCE_EXHAUSTED"
