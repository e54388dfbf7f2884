"""Connecting while a function starts, so a wrong engine configuration stops the start.

Some configuration only the engine can judge: a ``CADENCE_DOMAIN`` the cluster does not have
is refused by ``DescribeDomain`` when the client connects. A Lambda function connects during
its init phase (module import) with :func:`connect_during_init`: that mistake fails the cold
start with one sentence, and every warm invocation reuses the connection. An engine that is
merely unreachable at that moment is not a configuration error: the start goes on and the
first invocation connects (and answers ``engine_unavailable`` if the engine is still down).

functions-framework builds its ASGI app without a start-up hook, so the GCP functions connect
on their worker's first request instead; see docs/engines/cadence.md.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
from typing import TYPE_CHECKING

from completer.errors import CompleterError, ConfigurationError

if TYPE_CHECKING:
    from completer.client import CompletionClient

__all__ = ["INIT_CONNECT_SECONDS", "connect_during_init"]

logger = logging.getLogger("completer")

# Lambda gives the init phase 10 s in all; a stalled engine must not use them up.
INIT_CONNECT_SECONDS = 5.0


def connect_during_init(
    client: CompletionClient,
    loop: asyncio.AbstractEventLoop,
    *,
    timeout: float = INIT_CONNECT_SECONDS,
) -> None:
    """Connect ``client`` on ``loop`` (the loop every later invocation runs on).

    Args:
        client: The process's completion client.
        loop: The event loop the function keeps across invocations.
        timeout: How long the connection may take before the start goes on without it.

    Raises:
        SystemExit: The engine refused the configuration (one sentence naming the
            variable); the start fails.
    """
    # An engine SDK's threads still running when the interpreter finalizes can abort it
    # (Temporal's runtime does): a process that exits normally (a script, a test) closes first.
    atexit.register(_close, client, loop)
    try:
        loop.run_until_complete(asyncio.wait_for(client.ensure_connected(), timeout))
    except ConfigurationError as exc:
        raise SystemExit(f"activity-completer: {exc}") from None
    except (CompleterError, TimeoutError) as exc:
        reason = exc.message if isinstance(exc, CompleterError) else f"no answer in {timeout:g} s"
        logger.warning(
            "engine not connected at start; the first invocation connects",
            extra={"completer": {"backend": client.backend.name, "reason": reason}},
        )


def _close(client: CompletionClient, loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_closed() or loop.is_running():
        return
    with contextlib.suppress(Exception):
        loop.run_until_complete(client.close())
