"""The completion client every trigger calls: validate, size-check, call the engine, classify.

:class:`CompletionClient` is async: it lives on the event loop that serves (the function's
worker loop, the Lambda's kept loop, or ``asyncio.run`` in a script) and is safe to call
concurrently from many tasks on it. Synchronous code runs it with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Self

from completer.backends import create_backend
from completer.breaker import CircuitBreaker
from completer.errors import (
    CompleterError,
    EngineTimeout,
    EngineUnavailable,
    InternalError,
    PayloadTooLarge,
)
from completer.models import Action, CompletionOutcome, CompletionRequest, Origin, Status
from completer.settings import Settings, get_settings

if TYPE_CHECKING:
    from types import TracebackType

    from completer.backends.base import Backend, Target

__all__ = ["CompletionClient"]

logger = logging.getLogger("completer")

# The engine call gets the RPC deadline; this margin covers encoding and the SDK's own
# bookkeeping so that its deadline, not ours, normally fires first.
_DEADLINE_MARGIN_SECONDS = 1.0


class CompletionClient:
    """Completes activities in one engine over one connection (async).

    Use :meth:`connect` (or ``async with``) to build one; :meth:`execute` is safe to call
    concurrently from many tasks on the same event loop. An unreachable engine opens the
    client's :attr:`breaker`: later requests answer ``engine_unavailable`` at once while a
    background probe waits for the engine to come back (see docs/outages.md).
    """

    def __init__(self, backend: Backend, *, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings
        self.breaker = CircuitBreaker(self._probe, name=backend.name)
        self._connected = False
        self._connect_lock = asyncio.Lock()

    @classmethod
    def create(cls, settings: Settings | None = None) -> CompletionClient:
        """Build a client for the configured backend without connecting yet.

        Raises:
            ConfigurationError: The settings or the backend's own configuration are wrong.
        """
        settings = settings or get_settings()
        return cls(create_backend(settings), settings=settings)

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> CompletionClient:
        """Build a client for the configured backend and connect it.

        Raises:
            ConfigurationError: The settings are wrong.
            EngineUnavailable: The engine cannot be reached.
        """
        client = cls.create(settings)
        await client.ensure_connected()
        return client

    async def ensure_connected(self) -> None:
        """Connect once; later calls return at once. A failed connect is retried next call."""
        if self._connected:
            return
        async with self._connect_lock:
            if self._connected:
                return
            try:
                async with asyncio.timeout(self.settings.rpc_timeout_seconds):
                    await self.backend.connect()
            except CompleterError:
                raise
            except TimeoutError as exc:
                raise EngineTimeout(
                    f"connecting to {self.backend.name} took longer than "
                    f"{self.settings.rpc_timeout_seconds:g} s."
                ) from exc
            except Exception as exc:
                raise self.backend.translate_error(exc) from exc
            self._connected = True

    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        """Carry out one completion request (``origin`` is for the logs only here).

        A refused completion is not logged here: the trigger's handler writes the one line
        of its event (see :mod:`completer.handlers.disposition`).

        Returns:
            The outcome (its status, and for heartbeats whether cancellation is requested).

        Raises:
            CompleterError: One of the public errors; ``transient`` says whether to retry.
        """
        started = time.perf_counter()
        outcome = await self._execute(request)
        logger.debug(
            "completion done",
            extra={
                "completer": {
                    "activity": request.describe_activity(),
                    "action": request.action.value,
                    "backend": self.backend.name,
                    "outcome": outcome.status.value,
                    "engine_ms": round((time.perf_counter() - started) * 1000, 1),
                }
            },
        )
        return outcome

    async def _execute(self, request: CompletionRequest) -> CompletionOutcome:
        target = self.backend.resolve_target(request)
        await self._check_size(request)
        self.breaker.check()
        try:
            await self.ensure_connected()
            outcome = await self._call_within_deadline(request, target)
        except EngineUnavailable as exc:
            self.breaker.record_failure(exc)
            raise
        self.breaker.record_success()
        return outcome

    async def _call_within_deadline(
        self, request: CompletionRequest, target: Target
    ) -> CompletionOutcome:
        try:
            async with asyncio.timeout(
                self.settings.rpc_timeout_seconds + _DEADLINE_MARGIN_SECONDS
            ):
                return await self._call(request, target)
        except CompleterError:
            raise
        except TimeoutError as exc:
            raise EngineTimeout(
                f"{self.backend.name} did not answer within "
                f"{self.settings.rpc_timeout_seconds:g} s; the outcome is unknown, retry."
            ) from exc
        except Exception as exc:
            raise self.backend.translate_error(exc) from exc

    async def _probe(self) -> None:
        await self.ensure_connected()
        await self.backend.probe()

    async def _check_size(self, request: CompletionRequest) -> None:
        limit = self.settings.max_payload_bytes
        try:
            size = await self.backend.encoded_size(request)
        except CompleterError:
            raise
        except Exception as exc:
            raise InternalError("the payload could not be encoded for the engine.") from exc
        if size > limit:
            what = {Action.COMPLETE: "result", Action.FAIL: "error details"}.get(
                request.action, "details"
            )
            raise PayloadTooLarge(
                f"the encoded {what} is {size} bytes, over the {limit}-byte limit of "
                f"{self.backend.name}; the activity is still waiting. Send a reference "
                "(a URL or object key) instead of the data."
            )

    async def _call(self, request: CompletionRequest, target: Target) -> CompletionOutcome:
        backend = self.backend
        if request.action is Action.COMPLETE:
            await backend.complete(target, request.result)
            return CompletionOutcome(status=Status.COMPLETED)
        if request.action is Action.FAIL:
            assert request.error is not None
            await backend.fail(target, request.error)
            return CompletionOutcome(status=Status.FAILED)
        if request.action is Action.HEARTBEAT:
            cancel_requested = await backend.heartbeat(target, request.details)
            return CompletionOutcome(
                status=Status.HEARTBEAT_RECORDED, cancel_requested=cancel_requested
            )
        await backend.cancel(target, request.details)
        return CompletionOutcome(status=Status.CANCELLED)

    async def close(self) -> None:
        """Stop probing and close the engine connection."""
        await self.breaker.close()
        self._connected = False
        await self.backend.close()

    async def __aenter__(self) -> Self:
        await self.ensure_connected()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
