"""The completion client's limits and faults, on the real Temporal dev server.

Payload limits, an unreachable engine, an engine slower than the deadline (a TCP proxy
that stalls), one connection reused by the sync face, the workers' data converter, and a
clean exit of a process that used the sync face.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from temporalio.client import Client

from completer import errors
from completer.client import CompletionClient
from completer.models import CompletionRequest
from completer.settings import Settings
from tests.support import codec
from tests.support.proxy import TcpProxy
from tests.support.services import free_port
from tests.support.temporal import TemporalServer, WaitingActivity, start_waiting, waiting_worker

pytestmark = pytest.mark.temporal

LIMIT = 2 * 1024 * 1024


def request(**fields: Any) -> CompletionRequest:
    return CompletionRequest.build(fields)


async def eventually(call: Any, *, within: float = 3.0) -> Any:
    """Retry ``call`` while it answers engine_unavailable, for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except errors.EngineUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def result_of_encoded_size(client: CompletionClient, size: int, token: str) -> str:
    """A string result whose encoded payload is exactly ``size`` bytes."""
    n = size - 64
    for _ in range(200):
        measured = await client.backend.encoded_size(request(task_token=token, result="x" * n))
        if measured == size:
            return "x" * n
        n += size - measured
    raise AssertionError("could not hit the size exactly")


async def test_payload_limit_boundary_default_2mib(settings: Settings, waiting: WaitingActivity):
    async with CompletionClient.create(settings) as client:
        assert client.settings.max_payload_bytes == LIMIT
        over = await result_of_encoded_size(client, LIMIT + 1, waiting.token_b64)
        with pytest.raises(errors.PayloadTooLarge, match="still waiting"):
            await client.execute(request(task_token=waiting.token_b64, result=over))
        # Refused before the engine: the activity still waits and takes a fitting result.
        assert (await waiting.pending_activity()) is not None
        at_limit = await result_of_encoded_size(client, LIMIT, waiting.token_b64)
        await client.execute(request(task_token=waiting.token_b64, result=at_limit))
    assert await waiting.handle.result() == at_limit


async def test_payload_limit_applies_to_heartbeat_details_and_error_details(
    temporal_server: TemporalServer, waiting: WaitingActivity
):
    settings = Settings(COMPLETER_MAX_PAYLOAD_BYTES=100)
    async with CompletionClient.create(settings) as client:
        big = {"blob": "y" * 200}
        with pytest.raises(errors.PayloadTooLarge):
            await client.execute(
                request(task_token=waiting.token_b64, action="heartbeat", details=big)
            )
        with pytest.raises(errors.PayloadTooLarge):
            await client.execute(
                request(task_token=waiting.token_b64, error={"message": "m", "details": big})
            )
        await client.execute(request(task_token=waiting.token_b64, result="small"))
    assert await waiting.handle.result() == "small"


async def test_engine_unreachable_is_unavailable_within_deadline(monkeypatch, temporal_server):
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    settings = Settings(COMPLETER_RPC_TIMEOUT_SECONDS=2)
    client = CompletionClient.create(settings)
    try:
        started = time.monotonic()
        with pytest.raises(errors.EngineUnavailable) as info:
            await client.execute(request(task_token="dG9rZW4", result=1))
        assert time.monotonic() - started < 2 + 1.5
        assert info.value.http_status == 503
        assert info.value.transient
        # Validation still comes first: a bad request is refused without any engine.
        with pytest.raises(errors.InvalidRequest):
            await client.execute(request(task_token="%%%", result=1))
    finally:
        await client.close()  # its breaker would probe the dead address for the session


async def test_engine_slower_than_deadline_is_timeout(
    temporal_server: TemporalServer, monkeypatch, waiting: WaitingActivity
):
    with TcpProxy(temporal_server.port) as proxy:
        monkeypatch.setenv("TEMPORAL_ADDRESS", proxy.address)
        settings = Settings(COMPLETER_RPC_TIMEOUT_SECONDS=1)
        async with CompletionClient.create(settings) as client:
            proxy.stalled = True
            started = time.monotonic()
            with pytest.raises(errors.EngineTimeout) as info:
                await client.execute(request(task_token=waiting.token_b64, result="late"))
            elapsed = time.monotonic() - started
            assert elapsed < 1 + 1.5, elapsed
            assert info.value.http_status == 504
            assert info.value.transient
            proxy.stalled = False
            # The outcome was unknown: a retry either completes or finds it already done.
            with contextlib.suppress(errors.ActivityNotFound):
                await client.execute(request(task_token=waiting.token_b64, result="late"))
    assert await waiting.handle.result() == "late"


async def test_one_client_reuses_one_connection(
    temporal_server: TemporalServer, monkeypatch, new_waiting
):
    activities = [await new_waiting() for _ in range(5)]
    with TcpProxy(temporal_server.port) as proxy:
        monkeypatch.setenv("TEMPORAL_ADDRESS", proxy.address)
        async with CompletionClient.create(Settings()) as client:
            for i, act in enumerate(activities):
                outcome = await client.execute(request(task_token=act.token_b64, result=i))
                assert outcome.status.value == "completed"
        assert proxy.connections == 1
    assert [await a.handle.result() for a in activities] == list(range(5))


async def test_one_client_is_safe_from_many_tasks(settings: Settings, new_waiting):
    activities = [await new_waiting() for _ in range(8)]
    async with CompletionClient.create(settings) as client:
        outcomes = await asyncio.gather(
            *(
                client.execute(request(task_token=a.token_b64, result=a.workflow_id))
                for a in activities
            )
        )
    assert {o.status.value for o in outcomes} == {"completed"}
    assert [await a.handle.result() for a in activities] == [a.workflow_id for a in activities]


async def test_client_survives_engine_down_at_start(
    temporal_server: TemporalServer, monkeypatch, waiting
):
    proxy = TcpProxy(temporal_server.port)
    monkeypatch.setenv("TEMPORAL_ADDRESS", proxy.address)  # nothing listens yet
    client = CompletionClient.create(Settings(COMPLETER_RPC_TIMEOUT_SECONDS=2))
    try:
        with pytest.raises(errors.EngineUnavailable):
            await client.execute(request(task_token=waiting.token_b64, result=0))
        with proxy:
            # The breaker answers at once until its probe (every 0.5 s) sees the engine back.
            outcome = await eventually(
                lambda: client.execute(request(task_token=waiting.token_b64, result="back"))
            )
    finally:
        await client.close()
    assert outcome.status.value == "completed"
    assert await waiting.handle.result() == "back"


async def test_workers_data_converter_is_used(temporal_server: TemporalServer, monkeypatch):
    coded = await Client.connect(temporal_server.address, data_converter=codec.data_converter)
    async with waiting_worker(coded) as queue:
        waiting = await start_waiting(coded, queue)
        monkeypatch.setenv("COMPLETER_DATA_CONVERTER", "tests.support.codec:data_converter")
        async with CompletionClient.create(Settings()) as client:
            await client.execute(request(task_token=waiting.token_b64, result={"secret": "plans"}))
        assert await waiting.handle.result() == {"secret": "plans"}
        # What the server stored is the codec's output, not readable JSON.
        plain = Client(coded.service_client, namespace="default")
        history = await plain.get_workflow_handle(waiting.workflow_id).fetch_history()
        completed = [
            e.activity_task_completed_event_attributes
            for e in history.events
            if e.HasField("activity_task_completed_event_attributes")
        ]
        payload = completed[0].result.payloads[0]
        assert payload.metadata["encoding"] == codec.ENCODING
        assert b"plans" not in payload.data


SCRIPT = """
import asyncio, os
from completer import CompletionClient, CompletionRequest

async def main():
    async with await CompletionClient.connect() as client:
        request = CompletionRequest.build(
            {"task_token": os.environ["TOKEN"], "result": "from-subprocess"}
        )
        return await client.execute(request)

print(asyncio.run(main()).status.value)
"""


async def test_script_with_asyncio_run_exits_zero(temporal_server: TemporalServer, waiting):
    env = {**os.environ, "TOKEN": waiting.token_b64}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "completed"
    assert await waiting.handle.result() == "from-subprocess"


UNREACHABLE_SCRIPT = """
import asyncio
from completer import CompletionClient, CompletionRequest, EngineUnavailable

async def main():
    client = CompletionClient.create()
    try:
        await client.execute(CompletionRequest.build({"task_token": "dG9rZW4", "result": 1}))
    except EngineUnavailable:
        print("engine_unavailable")
    finally:
        await client.close()

asyncio.run(main())
"""


async def test_process_exits_zero_after_engine_unreachable():
    # temporalio's Rust threads outliving the interpreter aborted such a process at exit
    # (PyGILState_Release ... finalizing) about one run in twenty; run it several times.
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "COMPLETER_RPC_TIMEOUT_SECONDS": "2",
    }
    for _ in range(5):
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", UNREACHABLE_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "engine_unavailable"
