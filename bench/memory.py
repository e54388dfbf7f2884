"""Memory of a function process under a steady load: a fresh process, the same mix of requests
from the first to the last, RSS sampled at checkpoints (growth between them shows a leak)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.harness import base_env, function_server, http_run

# One request in ten completes a fresh activity; the other nine name an activity completed
# before, which Temporal answers with NOT_FOUND: parsing, the engine call, the error mapping
# and the log line all still run (an activity can be completed only once).
FRESH_EVERY = 10
REPEATED = 200


def request_tokens(tokens: Sequence[bytes], first: int, count: int) -> list[bytes]:
    """The tokens of requests ``first`` .. ``first + count - 1`` of the steady mix."""
    chosen = []
    for k in range(first, first + count):
        index = k // FRESH_EVERY if k % FRESH_EVERY == 0 else (k // FRESH_EVERY) % REPEATED
        chosen.append(tokens[min(index, len(tokens) - 1)])
    return chosen


async def steady_memory(
    source: Path,
    address: str,
    tokens: Sequence[bytes],
    log: Path,
    *,
    body: Callable[[bytes, int], bytes],
    checkpoints: Sequence[int],
    cloudevent: bool = False,
    concurrency: int = 8,
) -> list[dict[str, Any]]:
    """Drive a fresh function process to each checkpoint; sample its worker's memory there."""
    samples: list[dict[str, Any]] = []
    answers: dict[str, int] = {}
    with function_server(source, base_env(address), log, cloudevent=cloudevent) as server:
        server.worker_pid()
        sent = 0
        for checkpoint in checkpoints:
            count = checkpoint - sent
            bodies = [body(t, sent + i) for i, t in enumerate(request_tokens(tokens, sent, count))]
            run = await asyncio.to_thread(http_run, server.port, bodies, concurrency=concurrency)
            for status, n in run.statuses.items():
                answers[status] = answers.get(status, 0) + n
            sent = checkpoint
            samples.append(
                {
                    "completions": sent,
                    "answers": dict(answers),
                    "requests_per_s": run.rate,
                    **server.worker_memory(),
                }
            )
            print(f"  memory {source.parent.name}: {samples[-1]}", flush=True)
    return samples


def fresh_needed(checkpoints: Sequence[int]) -> int:
    return max(checkpoints) // FRESH_EVERY + 1
