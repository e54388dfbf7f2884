"""The cold-start floor: a bare script that imports temporalio, connects and completes once.

Usage: python bench/floor.py ADDRESS TOKEN_BASE64. Prints the wall clock (time.time()) at
the moment the completion returned, then exits.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import sys
import time

from temporalio.client import Client
from temporalio.runtime import Runtime, TelemetryConfig


async def main(address: str, token: bytes) -> None:
    # An own runtime freed before exit: temporalio's default one, alive at interpreter exit,
    # can abort the process (PyGILState_Release ... finalizing) after the work is done.
    runtime = Runtime(telemetry=TelemetryConfig())
    client = await Client.connect(address, runtime=runtime)
    await client.get_async_activity_handle(task_token=token).complete({"n": 0})
    del client, runtime
    gc.collect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], base64.b64decode(sys.argv[2])))
    print(f"done {time.time():.6f}", flush=True)
