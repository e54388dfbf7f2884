"""The cold-start floor: a bare script that imports temporalio, connects and completes once.

Usage: python bench/floor.py ADDRESS TOKEN_BASE64. Prints the wall clock (time.time()) at
the moment the completion returned, then exits.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time

from temporalio.client import Client


async def main(address: str, token: bytes) -> None:
    client = await Client.connect(address)
    await client.get_async_activity_handle(task_token=token).complete({"n": 0})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], base64.b64decode(sys.argv[2])))
    print(f"done {time.time():.6f}", flush=True)
