"""The HTTP function against the direct client: warm latency, throughput, gunicorn settings,
the naive connect-per-request function, and the worker's memory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.harness import (
    HTTP_MAIN,
    NAIVE_MAIN,
    FunctionServer,
    Run,
    base_env,
    completion_body,
    direct_run,
    function_server,
    http_run,
    ratio,
    summary_ms,
)

Take = Callable[[int], list[bytes]]


def bodies(tokens: Sequence[bytes]) -> list[bytes]:
    return [completion_body(token, n) for n, token in enumerate(tokens)]


def all_ok(run: Run, ok: str) -> dict[str, int]:
    if set(run.statuses) != {ok}:
        print(f"  ! unexpected answers: {run.statuses}", flush=True)
    return run.statuses


class HttpCounter:
    """Counts the completions sent to one function process, to sample its memory on time."""

    def __init__(self, server: FunctionServer) -> None:
        self.server = server
        self.sent = 0
        self.samples: list[dict[str, Any]] = []

    def add(self, run: Run) -> None:
        self.sent += len(run.latencies)

    def sample(self, label: str) -> dict[str, Any]:
        entry = {"label": label, "completions": self.sent, **self.server.worker_memory()}
        self.samples.append(entry)
        print(f"  memory after {self.sent} requests ({label}): {entry}", flush=True)
        return entry


async def warm_latency(
    client: Client, port: int, take: Take, *, count: int, block: int, counter: HttpCounter
) -> dict[str, Any]:
    """Sequential completions, HTTP and direct alternating in blocks (drift hits both)."""
    http_all, direct_all = Run(), Run()
    # A few unmeasured requests open the connections and warm both paths.
    await asyncio.to_thread(http_run, port, bodies(take(20)), concurrency=1)
    await direct_run(client, take(20), concurrency=1)
    done = 0
    while done < count:
        size = min(block, count - done)
        http = await asyncio.to_thread(http_run, port, bodies(take(size)), concurrency=1)
        direct = await direct_run(client, take(size), concurrency=1)
        for whole, part in ((http_all, http), (direct_all, direct)):
            whole.latencies += part.latencies
            for status, n in part.statuses.items():
                whole.statuses[status] = whole.statuses.get(status, 0) + n
        counter.add(http)
        done += size
        if counter.sent >= 1000 and not counter.samples:
            counter.sample("warm latency")
    result: dict[str, Any] = {
        "http": {**summary_ms(http_all.latencies), "answers": all_ok(http_all, "200")},
        "direct": {**summary_ms(direct_all.latencies), "answers": all_ok(direct_all, "ok")},
        "raw_ms": {
            "http": [round(s * 1000, 3) for s in http_all.latencies],
            "direct": [round(s * 1000, 3) for s in direct_all.latencies],
        },
    }
    result["ratio"] = {
        q: ratio(result["http"][q], result["direct"][q]) for q in ("p50", "p90", "p99")
    }
    return result


async def throughput_pair(
    client: Client, port: int, take: Take, *, concurrency: int, count: int
) -> tuple[Run, Run]:
    http = await asyncio.to_thread(http_run, port, bodies(take(count)), concurrency=concurrency)
    direct = await direct_run(client, take(count), concurrency=concurrency)
    all_ok(http, "200")
    all_ok(direct, "ok")
    return http, direct


async def throughput(
    client: Client,
    port: int,
    take: Take,
    *,
    levels: Sequence[int],
    count: int,
    counter: HttpCounter,
) -> list[dict[str, Any]]:
    rows = []
    for concurrency in levels:
        http, direct = await throughput_pair(
            client, port, take, concurrency=concurrency, count=count
        )
        counter.add(http)
        row = {
            "concurrency": concurrency,
            "completions": count,
            "http_per_s": http.rate,
            "direct_per_s": direct.rate,
            "ratio": ratio(http.rate, direct.rate),
            "http_p50_ms": summary_ms(http.latencies)["p50"],
            "direct_p50_ms": summary_ms(direct.latencies)["p50"],
        }
        print(f"  throughput {row}", flush=True)
        rows.append(row)
    return rows


async def gunicorn_settings(
    client: Client,
    address: str,
    take: Take,
    logs: Path,
    *,
    settings: Sequence[dict[str, str]],
    concurrency: int,
    count: int,
) -> list[dict[str, Any]]:
    """The HTTP function under other WORKERS/THREADS values, at one concurrency."""
    rows = []
    for extra in settings:
        name = ",".join(f"{k}={v}" for k, v in extra.items()) or "default"
        env = base_env(address, **extra)
        log = logs / f"http-{name.replace(',', '-').replace('=', '')}.log"
        with function_server(HTTP_MAIN, env, log) as server:
            await asyncio.to_thread(http_run, server.port, bodies(take(16)), concurrency=8)
            http, direct = await throughput_pair(
                client, server.port, take, concurrency=concurrency, count=count
            )
        row = {
            "settings": name,
            "concurrency": concurrency,
            "http_per_s": http.rate,
            "direct_per_s": direct.rate,
            "ratio": ratio(http.rate, direct.rate),
        }
        print(f"  gunicorn {row}", flush=True)
        rows.append(row)
    return rows


async def naive(
    client: Client,
    address: str,
    take: Take,
    logs: Path,
    *,
    latency_count: int,
    levels: Sequence[int],
    count: int,
    ours: dict[str, Any],
    ours_throughput: list[dict[str, Any]],
) -> dict[str, Any]:
    """The connect-per-request function beside ours (ours measured earlier in the same run)."""
    with function_server(NAIVE_MAIN, base_env(address), logs / "naive.log") as server:
        await asyncio.to_thread(http_run, server.port, bodies(take(5)), concurrency=1)
        latency = await asyncio.to_thread(
            http_run, server.port, bodies(take(latency_count)), concurrency=1
        )
        all_ok(latency, "200")
        rows = []
        for concurrency in levels:
            run = await asyncio.to_thread(
                http_run, server.port, bodies(take(count)), concurrency=concurrency
            )
            all_ok(run, "200")
            mine = next(r for r in ours_throughput if r["concurrency"] == concurrency)
            rows.append(
                {
                    "concurrency": concurrency,
                    "naive_per_s": run.rate,
                    "ours_per_s": mine["http_per_s"],
                    "direct_per_s": mine["direct_per_s"],
                    "ours_vs_naive": ratio(mine["http_per_s"], run.rate),
                }
            )
    stats = summary_ms(latency.latencies)
    result = {
        "latency": {"naive": stats, "ours": {k: ours[k] for k in ("n", "p50", "p90", "p99")}},
        "latency_ratio_naive_vs_ours": {q: ratio(stats[q], ours[q]) for q in ("p50", "p90", "p99")},
        "throughput": rows,
        "raw_ms": [round(s * 1000, 3) for s in latency.latencies],
    }
    print(f"  naive {result['latency']} {rows}", flush=True)
    return result


async def memory_top_up(
    counter: HttpCounter,
    completed: Sequence[bytes],
    *,
    first: int,
    total: int,
    concurrency: int,
) -> None:
    """Drive the function to ``total`` requests with already-completed tokens (404 answers
    still parse, call Temporal and map the answer: the whole path)."""
    if counter.sent < first:
        run = await asyncio.to_thread(
            http_run,
            counter.server.port,
            bodies(_cycle(completed, first - counter.sent)),
            concurrency=concurrency,
        )
        counter.add(run)
    if not counter.samples:
        counter.sample("first")
    counter.sample("before top-up")
    missing = total - counter.sent
    if missing > 0:
        run = await asyncio.to_thread(
            http_run,
            counter.server.port,
            bodies(_cycle(completed, missing)),
            concurrency=concurrency,
        )
        counter.add(run)
        print(f"  top-up answers {run.statuses}", flush=True)
    counter.sample("final")


def _cycle(items: Sequence[bytes], count: int) -> list[bytes]:
    return [items[i % len(items)] for i in range(count)]
