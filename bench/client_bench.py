"""Where a warm completion's time goes, in one process and without HTTP: the SDK's own
``AsyncActivityHandle.complete``, our completion client, and the whole chain every function
builds (keys -> in-process ledger -> client), interleaved one completion of each at a time
so that the machine's load hits the three alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from bench.harness import summary_ms
from completer.tokens import encode_token

Take = Callable[[int], list[bytes]]
VARIANTS = ("direct", "client", "chain")


async def client_overhead(
    client: Client, address: str, take: Take, *, count: int
) -> dict[str, Any]:
    """``count`` sequential completions of each variant; their latency, and p50s added."""
    from completer.backends.temporal import TemporalBackend
    from completer.client import CompletionClient
    from completer.correlation import build_executor
    from completer.models import CompletionRequest
    from completer.settings import Settings

    settings = Settings(COMPLETER_BACKEND="temporal", COMPLETER_LEDGER=None)
    backend = TemporalBackend(settings)
    backend.connect_config = {**backend.connect_config, "target_host": address}
    ours = CompletionClient(backend, settings=settings)
    chain = build_executor(settings, ours)
    tokens = take(3 * (count + 10))
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        await ours.ensure_connected()
        for i in range(count + 10):
            result = {"approved": True, "n": i}
            direct, by_client, by_chain = tokens[3 * i : 3 * i + 3]
            started = time.perf_counter()
            await client.get_async_activity_handle(task_token=direct).complete(result)
            took = time.perf_counter() - started
            if i >= 10:  # the first ten warm each path up
                seconds["direct"].append(took)
            for name, executor, token in (("client", ours, by_client), ("chain", chain, by_chain)):
                started = time.perf_counter()
                request = CompletionRequest.build(
                    {"task_token": encode_token(token), "result": result}
                )
                await executor.execute(request)
                took = time.perf_counter() - started
                if i >= 10:
                    seconds[name].append(took)
    finally:
        await chain.ledger.close()
        await ours.close()
    latency = {name: summary_ms(values) for name, values in seconds.items()}
    return {
        **latency,
        "added_p50_ms": {
            name: round(latency[name]["p50"] - latency["direct"]["p50"], 3)
            for name in ("client", "chain")
        },
    }
