"""A per-process circuit breaker: while the engine is known down, answer at once.

One :class:`CircuitBreaker` lives in each :class:`completer.client.CompletionClient` (one
per process). It opens when a call finds the engine unreachable (an
:class:`~completer.errors.EngineUnavailable` with ``unreachable=True``: refused, reset,
dropped, unresolvable). While it is open, :meth:`CircuitBreaker.check` raises
``engine_unavailable`` without touching the network, and a background task probes the
engine every :data:`PROBE_INTERVAL_SECONDS`; the first successful probe, or the first
successful call, closes it. Throttling, timeouts and permanent errors never open it: an
engine that sheds load or is slow is reachable, and a bad request says nothing about it.
See docs/outages.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from completer.errors import EngineUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "OPEN_RETRY_AFTER_SECONDS",
    "PROBE_INTERVAL_SECONDS",
    "PROBE_TIMEOUT_SECONDS",
    "CircuitBreaker",
]

logger = logging.getLogger("completer")

PROBE_INTERVAL_SECONDS = 0.5
"""How often an open breaker probes the engine (at least once a second)."""
PROBE_TIMEOUT_SECONDS = 1.0
"""How long one probe may take before it counts as a failure."""
OPEN_RETRY_AFTER_SECONDS = 1
"""The ``Retry-After`` of an answer given by an open breaker: the next probe is that close."""


class CircuitBreaker:
    """Remembers that the engine is unreachable, and probes until it is back.

    Args:
        probe: A coroutine function that succeeds when the engine answers (any answer
            counts, even a refusal) and raises otherwise.
        name: The engine's name, for messages and logs.
        probe_interval: Seconds between probes while open.
        probe_timeout: Seconds one probe may take.
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        /,
        *,
        name: str,
        probe_interval: float = PROBE_INTERVAL_SECONDS,
        probe_timeout: float = PROBE_TIMEOUT_SECONDS,
    ) -> None:
        self._probe = probe
        self.name = name
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.opened_at: float | None = None
        self.probes = 0
        self._cause = ""
        self._prober: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        """True while the engine is known to be unreachable."""
        return self.opened_at is not None

    def check(self) -> None:
        """Refuse at once while open.

        Raises:
            EngineUnavailable: The breaker is open.
        """
        if self.opened_at is None:
            return
        down_for = time.monotonic() - self.opened_at
        raise EngineUnavailable(
            f"{self.name} has been unreachable for {down_for:.1f} s ({self._cause}); "
            f"the completer retries it every {self.probe_interval:g} s.",
            retry_after=OPEN_RETRY_AFTER_SECONDS,
            unreachable=True,
        )

    def record_failure(self, error: EngineUnavailable) -> None:
        """Open on an unreachable engine (call from a coroutine on the serving loop)."""
        if not error.unreachable:
            return
        self._cause = error.message[:200].rstrip(".")
        if self.opened_at is None:
            self.opened_at = time.monotonic()
            logger.info(
                "engine unreachable: answering engine_unavailable until a probe succeeds",
                extra={"completer": {"backend": self.name, "outcome": "breaker_open"}},
            )
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_back())

    def record_success(self) -> None:
        """Close: the engine answered."""
        if self.opened_at is None:
            return
        down_for = time.monotonic() - self.opened_at
        self.opened_at = None
        logger.info(
            "engine reachable again",
            extra={
                "completer": {
                    "backend": self.name,
                    "outcome": "breaker_closed",
                    "engine_ms": round(down_for * 1000, 1),
                }
            },
        )

    async def _probe_until_back(self) -> None:
        while self.opened_at is not None:
            await asyncio.sleep(self.probe_interval)
            if self.opened_at is None:
                return
            self.probes += 1
            try:
                async with asyncio.timeout(self.probe_timeout):
                    await self._probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("engine probe failed", exc_info=exc)
                continue
            self.record_success()

    async def close(self) -> None:
        """Stop probing (the client is closing)."""
        prober, self._prober = self._prober, None
        if prober is not None and not prober.done():
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await prober
