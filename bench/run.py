"""`make bench`: run every measurement side by side in one run and write bench/results/.

    python -m bench.run                 # the full run (what `make bench` does)
    python -m bench.run --size smoke    # tiny counts: checks the harness in seconds
    python -m bench.run --only http,cold --out /tmp/bench

Starts its own Temporal dev server, moto server and (when installed) Pub/Sub emulator on free
127.0.0.1 ports, and stops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.support.temporal import connect_when_ready

from bench import client_bench, cold, http_bench, ledger_bench, memory, paths, report
from bench.delay_proxy import DelayingProxy
from bench.harness import (
    HTTP_MAIN,
    NAIVE_MAIN,
    PUBSUB_MAIN,
    ROOT,
    S3_MAIN,
    base_env,
    completion_body,
    dev_server,
    function_server,
    load_average,
    log_entries,
    machine,
    summary_ms,
)
from bench.tokens import make_tokens

PHASES = (
    "imports",
    "cold",
    "client",
    "http",
    "naive",
    "gunicorn",
    "memory",
    "pubsub",
    "s3",
    "s3batch",
    "ledger",
)
# The engine latency the S3 batch phase adds with a delaying proxy (a remote engine).
S3_BATCH_DELAY_SECONDS = 0.05
FLOOR_AIO_MAIN = Path(__file__).resolve().parent / "floor_aio" / "main.py"


@dataclass(frozen=True)
class Size:
    latency: int
    latency_block: int
    levels: tuple[int, ...]
    throughput: int
    gunicorn: int
    naive_latency: int
    naive_levels: tuple[int, ...]
    naive_throughput: int
    cold_repeats: int
    import_repeats: int
    memory: tuple[int, ...]
    pubsub_messages: int
    s3_uploads: int
    s3_memory: tuple[int, ...]
    s3_batch_singles: int = 11
    s3_batches: int = 5
    ledger: int = 400
    client: int = 500


SIZES = {
    "full": Size(
        latency=2000,
        latency_block=200,
        levels=(1, 8, 32, 64),
        throughput=800,
        gunicorn=600,
        naive_latency=300,
        naive_levels=(8, 32),
        naive_throughput=300,
        cold_repeats=5,
        import_repeats=3,
        memory=(1000, 2500, 5000, 10_000),
        pubsub_messages=500,
        s3_uploads=300,
        s3_memory=(1000, 5000),
    ),
    "quick": Size(
        latency=600,
        latency_block=200,
        levels=(1, 8, 32, 64),
        throughput=400,
        gunicorn=300,
        naive_latency=100,
        naive_levels=(8, 32),
        naive_throughput=100,
        cold_repeats=3,
        import_repeats=1,
        memory=(1000, 3000),
        pubsub_messages=200,
        s3_uploads=100,
        s3_memory=(300, 1000),
    ),
    "smoke": Size(
        latency=40,
        latency_block=20,
        levels=(1, 8),
        throughput=30,
        gunicorn=20,
        naive_latency=5,
        naive_levels=(8,),
        naive_throughput=10,
        cold_repeats=1,
        import_repeats=1,
        memory=(50, 100),
        pubsub_messages=10,
        s3_uploads=10,
        s3_memory=(20, 40),
        s3_batch_singles=3,
        s3_batches=1,
        ledger=40,
        client=20,
    ),
}

# The functions are async (gunicorn's uvicorn worker: one event loop per worker, no threads):
# the one setting that changes how they serve is the number of worker processes.
GUNICORN_SETTINGS: list[dict[str, str]] = [{"WORKERS": "2"}]


def tokens_needed(size: Size, phases: set[str]) -> int:
    need = 0
    if "cold" in phases:
        need += 5 * size.cold_repeats + 10
    if "http" in phases:
        need += 2 * (size.latency + 20) + 2 * size.throughput * len(size.levels)
    if "naive" in phases:
        need += 5 + size.naive_latency + size.naive_throughput * len(size.naive_levels)
    if "gunicorn" in phases:
        need += len(GUNICORN_SETTINGS) * (2 * size.gunicorn + 16)
    if "memory" in phases:
        need += 2 * memory.fresh_needed(size.memory)
    if "pubsub" in phases:
        need += 2 * size.pubsub_messages + 10
    if "s3" in phases:
        need += 2 * size.s3_uploads
    if "s3batch" in phases:
        need += size.s3_batch_singles + 10 * size.s3_batches
    if "ledger" in phases:
        need += 4 * (20 + size.ledger)
    if "client" in phases:
        need += 3 * (size.client + 10)
    return need


class TokenPool:
    def __init__(self, tokens: list[bytes]) -> None:
        self._tokens = tokens
        self.used: list[bytes] = []

    def take(self, count: int) -> list[bytes]:
        if count > len(self._tokens):
            raise RuntimeError(f"the bench ran out of waiting activities ({count} wanted)")
        taken, self._tokens = self._tokens[:count], self._tokens[count:]
        self.used += taken
        return taken


async def bench(size: Size, phases: set[str], out: Path, logs: Path) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {
        "size": next(name for name, s in SIZES.items() if s == size),
        "counts": asdict(size),
        "machine": machine(),
        "load_average_start": load_average(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(f"machine: {json.dumps(results['machine'])}", flush=True)
    print(f"load average: {results['load_average_start']}", flush=True)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(dev_server(logs))
        address = server.address
        client = await connect_when_ready(address)
        with_moto = {"cold", "s3", "s3batch"} & phases
        moto = stack.enter_context(paths.moto_server(logs)) if with_moto else None
        emulator_task = None
        if "pubsub" in phases:
            emulator_task = asyncio.create_task(asyncio.to_thread(_start_emulator, stack, logs))
        need = tokens_needed(size, phases)
        made = time.perf_counter()
        pool = TokenPool(await make_tokens(client, need))
        made = time.perf_counter() - made
        results["waiting_activities"] = {"count": need, "seconds": round(made, 1)}
        print(f"{need} waiting activities in {made:.1f} s", flush=True)

        uploads = None
        s3_keys: list[str] = []
        cold_keys: list[str] = []
        single_keys: list[str] = []
        batch_keys: list[str] = []
        if moto is not None:
            if "cold" in phases:
                cold_keys = [f"cold-{i}.json" for i in range(size.cold_repeats)]
            s3_keys = [f"upload-{i}.json" for i in range(size.s3_uploads)] if "s3" in phases else []
            if "s3batch" in phases:
                single_keys = [f"single-{i}.json" for i in range(size.s3_batch_singles)]
                batch_keys = [f"batched-{i}.json" for i in range(10 * size.s3_batches)]
            every = cold_keys + s3_keys + single_keys + batch_keys
            keyed = dict(zip(every, pool.take(len(every)), strict=True))
            uploads = await asyncio.to_thread(paths.make_uploads, moto, keyed)

        if "imports" in phases:
            print("== import cost", flush=True)
            aws = moto.env if moto else {}
            results["imports"] = {
                name: cold.import_cost(
                    target, base_env(address, **aws), repeats=size.import_repeats
                )
                for name, target in [
                    ("floor", "temporalio.client"),
                    ("http", str(HTTP_MAIN)),
                    ("pubsub", str(PUBSUB_MAIN)),
                    ("s3", str(S3_MAIN)),
                ]
            }
            for name, entry in results["imports"].items():
                print(f"  import {name}: {entry}", flush=True)

        if "cold" in phases:
            print("== cold start", flush=True)
            assert moto is not None
            assert uploads is not None
            tokens = pool.take(5 * size.cold_repeats)
            s3_events = [json.loads(uploads.messages[key]["Body"]) for key in cold_keys]
            runs = {
                "floor": lambda i: cold.floor_once(address, tokens[i]),
                "http": lambda i: cold.http_once(
                    address, tokens[size.cold_repeats + i], logs / f"cold-http-{i}.log"
                ),
                "pubsub": lambda i: cold.pubsub_once(
                    address, tokens[2 * size.cold_repeats + i], logs / f"cold-pubsub-{i}.log"
                ),
                "naive": lambda i: cold.http_once(
                    address,
                    tokens[3 * size.cold_repeats + i],
                    logs / f"cold-naive-{i}.log",
                    source=NAIVE_MAIN,
                ),
                "s3": lambda i: cold.s3_once(
                    address, moto.env, s3_events[i], logs / f"cold-s3-{i}.log"
                ),
                # The floor of an async function: hello-world on the same framework face.
                "floor_aio": lambda i: cold.http_once(
                    address,
                    tokens[4 * size.cold_repeats + i],
                    logs / f"cold-floor-aio-{i}.log",
                    source=FLOOR_AIO_MAIN,
                ),
            }
            results["cold_start"] = await asyncio.to_thread(
                cold.cold_starts, runs, repeats=size.cold_repeats
            )

        if {"http", "naive"} & phases:
            with function_server(HTTP_MAIN, base_env(address), logs / "http-function.log") as http:
                http_pid = http.worker_pid()
                results["http_worker"] = {
                    "worker": "uvicorn (one event loop)",
                    "workers_default": 1,
                }
                if "http" in phases:
                    print("== warm latency", flush=True)
                    results["latency"] = await http_bench.warm_latency(
                        client,
                        http.port,
                        pool.take,
                        count=size.latency,
                        block=size.latency_block,
                    )
                    # The function logs engine_ms: the time inside the completion client (the
                    # hop to its loop thread, the size check, the SDK call) for each request.
                    engine = [
                        float(e["engine_ms"]) / 1000
                        for e in log_entries(http.log_path)
                        if "engine_ms" in e
                    ][20 : 20 + size.latency]
                    results["latency"]["http_engine"] = summary_ms(engine)
                    print(f"  latency http {results['latency']['http']}", flush=True)
                    print(f"  inside the client {results['latency']['http_engine']}", flush=True)
                    print(f"  latency direct {results['latency']['direct']}", flush=True)
                    print(f"  ratio {results['latency']['ratio']}", flush=True)
                    print("== throughput", flush=True)
                    results["throughput"] = await http_bench.throughput(
                        client,
                        http.port,
                        pool.take,
                        levels=size.levels,
                        count=size.throughput,
                        function_pid=http_pid,
                        server_pid=server.pid,
                    )
                if "naive" in phases and "http" in phases:
                    print("== naive function", flush=True)
                    results["naive"] = await http_bench.naive(
                        client,
                        address,
                        pool.take,
                        logs,
                        latency_count=size.naive_latency,
                        levels=size.naive_levels,
                        count=size.naive_throughput,
                        ours=results["latency"]["http"],
                        ours_throughput=results["throughput"],
                    )

        if "gunicorn" in phases:
            print("== gunicorn settings", flush=True)
            results["gunicorn"] = await http_bench.gunicorn_settings(
                client,
                address,
                pool.take,
                logs,
                settings=GUNICORN_SETTINGS,
                concurrency=32,
                count=size.gunicorn,
            )

        if "memory" in phases:
            print("== memory", flush=True)
            results["memory"] = {
                "http": await memory.steady_memory(
                    HTTP_MAIN,
                    address,
                    pool.take(memory.fresh_needed(size.memory)),
                    logs / "memory-http.log",
                    body=completion_body,
                    checkpoints=size.memory,
                ),
                "pubsub": await memory.steady_memory(
                    PUBSUB_MAIN,
                    address,
                    pool.take(memory.fresh_needed(size.memory)),
                    logs / "memory-pubsub.log",
                    body=cold.pubsub_push_body,
                    checkpoints=size.memory,
                    cloudevent=True,
                ),
            }

        if "pubsub" in phases:
            print("== Pub/Sub path", flush=True)
            assert emulator_task is not None
            emulator = await emulator_task
            if isinstance(emulator, str):
                results["pubsub"] = {"skipped": emulator}
                print(f"  skipped: {emulator}", flush=True)
            else:
                results["pubsub"] = await paths.pubsub_path(
                    client,
                    address,
                    emulator,
                    pool.take,
                    logs,
                    count=size.pubsub_messages,
                    direct_concurrency=8,
                )

        if "s3" in phases:
            print("== S3 path", flush=True)
            assert moto is not None
            assert uploads is not None
            results["s3"] = await paths.s3_path(
                client,
                address,
                moto,
                uploads,
                s3_keys,
                pool.take,
                logs,
                memory_counts=size.s3_memory,
            )

        if "client" in phases:
            print("== completion client against the SDK, in-process", flush=True)
            results["client"] = await client_bench.client_overhead(
                client, address, pool.take, count=size.client
            )
            print(f"  client {results['client']}", flush=True)

        if "s3batch" in phases:
            print("== S3 batch of 10 against one record (engine +50 ms)", flush=True)
            assert moto is not None
            assert uploads is not None
            engine_port = int(address.rsplit(":", 1)[1])
            with DelayingProxy(engine_port, delay=S3_BATCH_DELAY_SECONDS) as slow_engine:
                results["s3_batch"] = await asyncio.to_thread(
                    paths.s3_batch_run,
                    slow_engine.address,
                    moto,
                    uploads,
                    single_keys,
                    batch_keys,
                    logs,
                )
            results["s3_batch"]["added_engine_latency_ms"] = S3_BATCH_DELAY_SECONDS * 1000
            print(f"  s3 batch {results['s3_batch']}", flush=True)

        if "ledger" in phases:
            print("== completion ledger", flush=True)
            with ledger_bench.ledger_services(logs) as variants:
                results["ledger"] = {
                    "latency": await ledger_bench.warm_latency(
                        address, pool.take, logs, variants, count=size.ledger
                    ),
                    "operations": await ledger_bench.operations(variants),
                }
            print(f"  ledger {results['ledger']}", flush=True)

    results["load_average_end"] = load_average()
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def _start_emulator(stack: contextlib.ExitStack, logs: Path) -> Any:
    from tests.support.pubsub import emulator_binary, pubsub_emulator

    if emulator_binary() is None:
        return "the Pub/Sub emulator is not installed (gcloud component pubsub-emulator)"
    return stack.enter_context(pubsub_emulator(logs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma list of {PHASES}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    phases = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = phases - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {sorted(unknown)}")
    if "naive" in phases:
        phases.add("http")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="completer-bench-") as tmp:
        logs = Path(tmp)
        try:
            results = asyncio.run(bench(SIZES[args.size], phases, args.out, logs))
        except BaseException:
            print(f"bench failed; logs were in {logs}:", file=sys.stderr)
            for log in sorted(logs.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}", file=sys.stderr)
            raise
    written = report.write(results, args.out)
    print("\n" + written["markdown"].read_text())
    for path in written.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
