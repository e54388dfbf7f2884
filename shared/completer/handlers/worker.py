"""The completion client of the process that serves: one per worker process, made there.

functions-framework imports the function, then gunicorn forks its worker; a connection (gRPC,
Temporal's runtime) made before the fork does not survive it. So the client is checked at
import (a wrong configuration fails the start) and made, unconnected, again by any process
that is not the one that built it: keyed by PID, no fork hook. It connects on its first use,
on the serving worker's own event loop.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from completer.client import CompletionClient

if TYPE_CHECKING:
    from completer.models import CompletionOutcome, CompletionRequest, Origin
    from completer.settings import Settings

__all__ = ["WorkerClient"]


class WorkerClient:
    """An :class:`~completer.executor.Executor` over this process's one completion client."""

    def __init__(self, settings: Settings) -> None:
        """Check the settings and the backend's configuration now, without connecting.

        Raises:
            ConfigurationError: The configuration is wrong.
        """
        self.settings = settings
        self._client = CompletionClient.create(settings)
        self._pid = os.getpid()

    @property
    def client(self) -> CompletionClient:
        """This process's client (a forked worker gets its own, never its parent's)."""
        if self._pid != os.getpid():
            self._client = CompletionClient.create(self.settings)
            self._pid = os.getpid()
        return self._client

    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        """Carry out ``request`` over this process's connection (connecting on first use)."""
        return await self.client.execute(request, origin=origin)

    async def close(self) -> None:
        """Close this process's connection (tests, and scripts that serve then stop)."""
        if self._pid == os.getpid():
            await self._client.close()
