"""The completion ledger's cost: warm latency of the HTTP function with each ledger against
none (same run, blocks alternating), and the store operations one completion makes."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.harness import (
    HTTP_MAIN,
    ROOT,
    Run,
    base_env,
    function_server,
    http_run,
    summary_ms,
)
from bench.http_bench import all_ok, bodies

NO_LEDGER_MAIN = ROOT / "bench" / "no_ledger" / "main.py"
TABLE = "completer-ledger-bench"
COLLECTION = "completer-ledger-bench"
PROJECT = "completer-bench"

Take = Callable[[int], list[bytes]]


@contextlib.contextmanager
def ledger_services(logs: Path) -> Iterator[dict[str, dict[str, str]]]:
    """The ledgers to measure: the environment of each variant (missing services skipped)."""
    from tests.support.firestore import emulator_binary, firestore_emulator
    from tests.support.moto_server import FAKE_CREDENTIALS, REGION, moto_server

    aws = {
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
    with contextlib.ExitStack() as stack:
        variants: dict[str, dict[str, str]] = {"none": {}, "memory": {}}
        if emulator_binary() is not None:
            host = stack.enter_context(firestore_emulator(logs))
            variants["firestore"] = {
                "COMPLETER_LEDGER": f"firestore://(default)/{COLLECTION}",
                "FIRESTORE_EMULATOR_HOST": host,
                "GOOGLE_CLOUD_PROJECT": PROJECT,
            }
        endpoint = stack.enter_context(moto_server())
        _create_table(endpoint, aws)
        variants["dynamodb"] = {
            "COMPLETER_LEDGER": f"dynamodb://{TABLE}",
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
            **aws,
        }
        yield variants


def _create_table(endpoint: str, aws: dict[str, str]) -> None:
    import boto3

    from completer.ledger.dynamodb import create_table

    client: Any = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=aws["AWS_REGION"],
        aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"],
    )
    create_table(TABLE, client=client)


async def warm_latency(
    address: str, take: Take, logs: Path, variants: dict[str, dict[str, str]], *, count: int
) -> dict[str, Any]:
    """Sequential completions through each variant, in alternating blocks of 20."""
    runs = {name: Run() for name in variants}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                function_server(
                    NO_LEDGER_MAIN if name == "none" else HTTP_MAIN,
                    base_env(address, **env),
                    logs / f"ledger-{name}.log",
                )
            )
            for name, env in variants.items()
        }
        for server in servers.values():  # open the connections, warm every path
            await asyncio.to_thread(http_run, server.port, bodies(take(20)), concurrency=1)
        done = 0
        while done < count:
            size = min(20, count - done)
            for name, server in servers.items():
                part = await asyncio.to_thread(
                    http_run, server.port, bodies(take(size)), concurrency=1
                )
                runs[name].latencies += part.latencies
                for status, n in part.statuses.items():
                    runs[name].statuses[status] = runs[name].statuses.get(status, 0) + n
            done += size
    result: dict[str, Any] = {
        name: {**summary_ms(run.latencies), "answers": all_ok(run, "200")}
        for name, run in runs.items()
    }
    base = result["none"]["p50"]
    result["added_p50_ms"] = {
        name: round(result[name]["p50"] - base, 3) for name in variants if name != "none"
    }
    return result


class _Counting:
    """Counts the store operations a ledger makes (wraps the store's primitives)."""

    def __init__(self, store: Any) -> None:
        self.counts: dict[str, int] = {}
        for name in ("_create", "_get", "_replace", "_delete"):
            original = getattr(store, name)
            setattr(store, name, self._counted(name.lstrip("_"), original))

    def _counted(self, name: str, original: Any) -> Any:
        async def call(*args: Any) -> Any:
            self.counts[name] = self.counts.get(name, 0) + 1
            return await original(*args)

        return call

    def take(self) -> dict[str, int]:
        counts, self.counts = dict(sorted(self.counts.items())), {}
        return counts


async def operations(variants: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Store operations per completion, per repeat and per conflict, counted on each store."""
    import os

    from completer.errors import Conflict
    from completer.ledger import Ledger, create_store, parse_ledger_url
    from completer.models import CompletionOutcome, CompletionRequest, Origin, Status

    class Engine:
        async def execute(
            self, request: CompletionRequest, /, *, origin: Origin | None = None
        ) -> CompletionOutcome:
            return CompletionOutcome(status=Status.COMPLETED)

    found: dict[str, Any] = {}
    for name, env in variants.items():
        if "COMPLETER_LEDGER" not in env:
            continue
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            store = create_store(parse_ledger_url(env["COMPLETER_LEDGER"]), timeout=10)
            counter = _Counting(store)
            async with Ledger(store, scope=f"bench-{uuid.uuid4().hex}") as ledger:
                executor = ledger.wrap(Engine())
                token = uuid.uuid4().hex
                first = CompletionRequest.build({"task_token": token, "result": {"n": 1}})
                other = CompletionRequest.build({"task_token": token, "result": {"n": 2}})
                started = time.perf_counter()
                await executor.execute(first)
                found[name] = {"first": counter.take()}
                await executor.execute(first)
                found[name]["repeat"] = counter.take()
                with contextlib.suppress(Conflict):
                    await executor.execute(other)
                found[name]["conflict"] = counter.take()
                found[name]["seconds"] = round(time.perf_counter() - started, 3)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return found
