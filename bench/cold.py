"""Cold start (process start to first successful completion) and import cost of each function."""

from __future__ import annotations

import base64
import json
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.services import free_port, running

from bench.harness import (
    HTTP_MAIN,
    PUBSUB_MAIN,
    PYTHON,
    ROOT,
    S3_MAIN,
    HttpPoster,
    base_env,
    completion_body,
    framework_argv,
    log_entries,
    ratio,
)

FLOOR = ROOT / "bench" / "floor.py"
S3_DRIVER = ROOT / "bench" / "s3_driver.py"
IMPORT_PROBE = ROOT / "bench" / "import_probe.py"
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def floor_once(address: str, token: bytes) -> float:
    started = time.time()
    done = subprocess.run(
        [PYTHON, str(FLOOR), address, base64.b64encode(token).decode()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout.split()[-1]) - started


def _poll_post(port: int, body: bytes, deadline: float) -> int:
    """POST as soon as the port accepts; returns the status of the first answered request."""
    while time.time() < deadline:
        poster = HttpPoster(port)
        try:
            return poster.post(body)
        except (ConnectionRefusedError, ConnectionResetError, OSError):
            time.sleep(0.005)
        finally:
            poster.close()
    raise TimeoutError("the function never answered")


def http_once(address: str, token: bytes, log: Path, *, source: Path = HTTP_MAIN) -> float:
    port = free_port()
    started = time.time()
    with running(framework_argv(source, port), env=base_env(address), log_path=log, cwd=ROOT):
        status = _poll_post(port, completion_body(token, 0), started + 60)
        took = time.time() - started
    if status != 200:
        raise RuntimeError(f"cold HTTP completion answered {status}: {log.read_text()[-1500:]}")
    return took


def pubsub_push_body(token: bytes, n: int) -> bytes:
    """The raw push request Pub/Sub sends (functions-framework converts it to a CloudEvent)."""
    message_id = uuid.uuid4().hex
    return json.dumps(
        {
            "message": {
                "attributes": {"task_token": base64.b64encode(token).decode()},
                "data": base64.b64encode(json.dumps({"n": n}).encode()).decode(),
                "messageId": message_id,
                "publishTime": "2026-01-01T00:00:00.000Z",
            },
            "subscription": "projects/completer-bench/subscriptions/bench",
        }
    ).encode()


def pubsub_once(address: str, token: bytes, log: Path) -> float:
    port = free_port()
    argv = framework_argv(PUBSUB_MAIN, port, cloudevent=True)
    started = time.time()
    with running(argv, env=base_env(address), log_path=log, cwd=ROOT):
        status = _poll_post(port, pubsub_push_body(token, 0), started + 60)
        took = time.time() - started
    handled = [e for e in log_entries(log) if e.get("outcome") == "completed"]
    if status != 200 or not handled:
        raise RuntimeError(f"cold Pub/Sub completion failed ({status}): {log.read_text()[-1500:]}")
    return took


def s3_once(address: str, aws: dict[str, str], event: dict[str, Any], log: Path) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(event, handle)
    started = time.time()
    with open(log, "w") as stderr:
        done = subprocess.run(
            [PYTHON, str(S3_DRIVER), str(S3_MAIN), "--once", handle.name],
            env=base_env(address, **aws),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=120,
            check=True,
        )
    Path(handle.name).unlink()
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    handled = [e for e in log_entries(log) if e.get("outcome") == "completed"]
    if not handled:
        raise RuntimeError(f"cold S3 completion failed: {log.read_text()[-1500:]}")
    return float(answer["done"]) - started


def cold_starts(
    runs: dict[str, Callable[[int], float]], *, repeats: int
) -> dict[str, dict[str, Any]]:
    """Each kind ``repeats`` times, interleaved (floor, http, ...), so load drift hits all."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for attempt in range(repeats):
        for name, once in runs.items():
            times[name].append(once(attempt))
    floor = statistics.median(times["floor"])
    result = {}
    for name, values in times.items():
        median = statistics.median(values)
        result[name] = {
            "median_ms": round(median * 1000, 1),
            "min_ms": round(min(values) * 1000, 1),
            "runs_ms": [round(v * 1000, 1) for v in values],
            "vs_floor": ratio(median, floor),
        }
        if "floor_aio" in times:
            result[name]["vs_floor_aio"] = ratio(median, statistics.median(times["floor_aio"]))
        print(f"  cold {name}: {result[name]}", flush=True)
    return result


def import_cost(target: str, env: dict[str, str], *, repeats: int) -> dict[str, Any]:
    """``python -X importtime`` on one function module: total, heaviest packages, heavy set."""
    best: dict[str, Any] | None = None
    for _ in range(repeats):
        done = subprocess.run(
            [PYTHON, "-X", "importtime", str(IMPORT_PROBE), target],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            cwd=ROOT,
        )
        probe = json.loads(done.stdout.strip().splitlines()[-1])
        top: dict[str, int] = {}
        for line in done.stderr.splitlines():
            match = _IMPORTTIME.match(line)
            # One space after the bar: a top-level import (nested ones are indented further).
            if match and len(match.group(3)) == 1:
                package = match.group(4).split(".")[0]
                top[package] = top.get(package, 0) + int(match.group(2))
        heaviest = sorted(top.items(), key=lambda item: -item[1])[:6]
        entry = {
            "load_ms": round(probe["seconds"] * 1000, 1),
            "import_ms": round(sum(top.values()) / 1000, 1),
            "heaviest_ms": {name: round(us / 1000, 1) for name, us in heaviest},
            "heavy_modules": probe["heavy"],
            "modules": probe["modules"],
        }
        if best is None or entry["load_ms"] < best["load_ms"]:
            best = entry
    assert best is not None
    return best
