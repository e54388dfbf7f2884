"""The HTTP function against the direct client: warm latency, throughput, gunicorn settings,
the naive connect-per-request function, and the worker's memory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.harness import (
    HTTP_MAIN,
    NAIVE_MAIN,
    Run,
    base_env,
    completion_body,
    cpu_seconds,
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


async def warm_latency(
    client: Client, port: int, take: Take, *, count: int, block: int
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
        done += size
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


@dataclass
class CpuMeter:
    """CPU milliseconds per completion of the processes on the path (2 cores are shared)."""

    pids: dict[str, int]

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    @staticmethod
    def per_completion(
        before: dict[str, float], after: dict[str, float], count: int
    ) -> dict[str, float]:
        return {name: round((after[name] - before[name]) * 1000 / count, 3) for name in before}


async def throughput_pair(
    client: Client,
    port: int,
    take: Take,
    *,
    concurrency: int,
    count: int,
    meter: CpuMeter | None = None,
) -> tuple[Run, Run]:
    start = meter.read() if meter else {}
    http = await asyncio.to_thread(http_run, port, bodies(take(count)), concurrency=concurrency)
    middle = meter.read() if meter else {}
    direct = await direct_run(client, take(count), concurrency=concurrency)
    end = meter.read() if meter else {}
    all_ok(http, "200")
    all_ok(direct, "ok")
    if meter:
        http.cpu_ms = meter.per_completion(start, middle, count)
        direct.cpu_ms = meter.per_completion(middle, end, count)
    return http, direct


async def throughput(
    client: Client,
    port: int,
    take: Take,
    *,
    levels: Sequence[int],
    count: int,
    function_pid: int,
    server_pid: int,
) -> list[dict[str, Any]]:
    meter = CpuMeter({"function": function_pid, "temporal": server_pid, "bench": os.getpid()})
    rows = []
    for concurrency in levels:
        http, direct = await throughput_pair(
            client, port, take, concurrency=concurrency, count=count, meter=meter
        )
        row = {
            "concurrency": concurrency,
            "completions": count,
            "http_per_s": http.rate,
            "direct_per_s": direct.rate,
            "ratio": ratio(http.rate, direct.rate),
            "http_p50_ms": summary_ms(http.latencies)["p50"],
            "direct_p50_ms": summary_ms(direct.latencies)["p50"],
            "cpu_ms_per_completion": {"http": http.cpu_ms, "direct": direct.cpu_ms},
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
