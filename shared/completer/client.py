"""The completion client every trigger calls: validate, size-check, call the engine, classify.

:class:`CompletionClient` is the async core. :class:`SyncCompletionClient` is the face for
synchronous callers (Flask functions, Lambda handlers): it keeps one engine connection on
one long-lived event loop in a background thread, shared by every invocation and thread of
the process. :func:`default_client` returns that one instance per process.
"""

from __future__ import annotations

import asyncio
import atexit

# Imported before this module registers its fork hook: after a fork, hooks run in the order
# they were registered, and the executor's shutdown lock (held across fork) must be
# re-initialised before our warm-up thread submits to an executor, or that thread blocks
# on it forever (seen as a stuck engine in gunicorn workers).
import concurrent.futures.thread  # noqa: F401
import logging
import os
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
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
from completer.tokens import token_fingerprint

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from types import TracebackType
    from typing import Any

    from completer.backends.base import Backend, Target

__all__ = [
    "CompletionClient",
    "ProcessClient",
    "SyncCompletionClient",
    "default_client",
    "describe_activity",
]

logger = logging.getLogger("completer")

# The engine call gets the RPC deadline; this margin covers encoding and the SDK's own
# bookkeeping so that its deadline, not ours, normally fires first.
_DEADLINE_MARGIN_SECONDS = 1.0


def describe_activity(request: CompletionRequest) -> str:
    """A log-safe name for the request's activity: a token fingerprint, or its IDs."""
    if request.task_token is not None:
        return f"token:{token_fingerprint(request.task_token)}"
    return f"workflow:{request.workflow_id}/activity:{request.activity_id}"


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

        Returns:
            The outcome (its status, and for heartbeats whether cancellation is requested).

        Raises:
            CompleterError: One of the public errors; ``transient`` says whether to retry.
        """
        started = time.perf_counter()
        activity = describe_activity(request)
        try:
            outcome = await self._execute(request)
        except CompleterError as exc:
            logger.info(
                "completion refused",
                extra={
                    "completer": {
                        "activity": activity,
                        "action": request.action.value,
                        "backend": self.backend.name,
                        "outcome": exc.code,
                        "engine_ms": round((time.perf_counter() - started) * 1000, 1),
                    }
                },
            )
            raise
        logger.debug(
            "completion done",
            extra={
                "completer": {
                    "activity": activity,
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


class SyncCompletionClient:
    """The completion client for synchronous code, over one background event loop.

    The loop thread and the engine connection live as long as the process (or until
    :meth:`close`); every call from any thread goes through them. The first connection
    attempt starts at construction, so a warm instance never connects on a request; if
    the engine is down then, the next request tries again.
    """

    def __init__(self, settings: Settings | None = None, *, connect_now: bool = True) -> None:
        self._client = CompletionClient.create(settings)
        self.settings = self._client.settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="completer-loop", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._close_lock = threading.Lock()
        if connect_now:
            self._submit(self._warm_up())

    @property
    def backend_name(self) -> str:
        """The engine this client talks to."""
        return self._client.backend.name

    async def _warm_up(self) -> None:
        try:
            await self._client.ensure_connected()
        except CompleterError as exc:
            logger.warning(
                "engine not reachable at start; will retry on the first request",
                extra={"completer": {"backend": self.backend_name, "outcome": exc.code}},
            )

    def _submit(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def execute(self, request: CompletionRequest) -> CompletionOutcome:
        """Carry out one completion request (blocking; safe from many threads).

        Raises:
            CompleterError: One of the public errors.
        """
        if self._closed:
            raise InternalError("the completion client is closed.")
        future = self._submit(self._client.execute(request))
        # The coroutine enforces the deadline; this bound only guards against a stuck loop.
        bound = 2 * self.settings.rpc_timeout_seconds + 2 * _DEADLINE_MARGIN_SECONDS + 5
        try:
            outcome: CompletionOutcome = future.result(timeout=bound)
        except FutureTimeout as exc:
            future.cancel()
            raise EngineTimeout("the engine call did not finish in time.") from exc
        return outcome

    def ensure_connected(self) -> None:
        """Connect now if not yet connected (blocking).

        Raises:
            CompleterError: The engine cannot be reached.
        """
        self._submit(self._client.ensure_connected()).result()

    def close(self) -> None:
        """Close the connection and stop the loop thread; safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._submit(self._client.close()).result(timeout=5)
        except Exception:
            logger.debug("error while closing the engine client", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_default: SyncCompletionClient | None = None
_default_lock = threading.Lock()


def default_client() -> SyncCompletionClient:
    """The process's one completion client, created on first use and closed at exit.

    Raises:
        ConfigurationError: The configuration is wrong (call this at start-up to fail early).
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = SyncCompletionClient()
                atexit.register(_default.close)
    return _default


_warm_after_fork = False


class ProcessClient:
    """The completion client of a function entry point that a server may fork.

    functions-framework (gunicorn) imports the function, then forks its worker. An engine
    connection made before the fork is useless in the worker (gRPC and Temporal's runtime
    do not survive fork), and a gRPC channel opened in the parent even breaks the child's.
    So building this only checks the configuration (a wrong value fails at start), and
    the connection is made by the process that serves: at once after a fork, or on first
    use in a process that never forks.
    """

    def __init__(self) -> None:
        """Check the settings and the backend's configuration now, without connecting.

        Raises:
            ConfigurationError: The configuration is wrong.
        """
        global _warm_after_fork
        self.settings = get_settings()
        create_backend(self.settings)
        _warm_after_fork = True

    def execute(self, request: CompletionRequest) -> CompletionOutcome:
        """Carry out one completion request over this process's one connection."""
        return default_client().execute(request)


def _forget_default_after_fork() -> None:
    # A forked child inherits the client but not its loop thread: drop it, build its own.
    global _default, _default_lock
    if _default is not None:
        _default._closed = True  # its thread is gone; closing it would only wait
    _default = None
    _default_lock = threading.Lock()
    if _warm_after_fork:
        default_client()  # starts connecting in the background, before the first request


os.register_at_fork(after_in_child=_forget_default_after_fork)
