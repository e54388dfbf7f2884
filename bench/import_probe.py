"""Run under ``python -X importtime``: load one function module (or import temporalio.client for
the floor) and print, as JSON, the wall time it took and which heavy packages it loaded."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import time

HEAVY = [
    "boto3",
    "botocore",
    "google.cloud.pubsub",
    "google.cloud.pubsub_v1",
    "google.api_core",
    "grpc",
    "temporalio",
    "functions_framework",
    "flask",
    "werkzeug",
    "aws_lambda_powertools",
    "pydantic",
    "cryptography",
    "cadence",
]

if __name__ == "__main__":
    target = sys.argv[1]
    started = time.perf_counter()
    if target.endswith(".py"):
        spec = importlib.util.spec_from_file_location("main", target)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        importlib.import_module(target)
    took = time.perf_counter() - started
    loaded = [name for name in HEAVY if name in sys.modules]
    print(json.dumps({"seconds": took, "heavy": loaded, "modules": len(sys.modules)}), flush=True)
