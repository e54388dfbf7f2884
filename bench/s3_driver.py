"""The S3 function in its own process, as Lambda runs it: import functions/s3/main.py, then call
``handler(event, context)`` for each event read from stdin (one JSON object a line).

For each event it prints one JSON line: the handler's answer, how long it took, the wall
clock when it returned, and the process's RSS (VmRSS, VmHWM in MiB). ``--once EVENT_FILE``
handles one event and exits (cold start).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any


def memory() -> dict[str, float]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values["rss" if name == "VmRSS" else "peak_rss"] = round(int(rest.split()[0]) / 1024, 1)
    return values


def load(main: str) -> Any:
    spec = importlib.util.spec_from_file_location("main", main)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def handle(module: Any, event: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    answer = module.handler(event, None)
    took = time.perf_counter() - started
    return {"answer": answer, "seconds": took, "done": time.time(), **memory()}


if __name__ == "__main__":
    module = load(sys.argv[1])
    if len(sys.argv) > 3 and sys.argv[2] == "--once":
        print(json.dumps(handle(module, json.loads(Path(sys.argv[3]).read_text()))), flush=True)
        sys.exit(0)
    print(json.dumps({"ready": time.time(), **memory()}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(handle(module, json.loads(line))), flush=True)
