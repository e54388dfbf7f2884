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
from completer.ledger import create_ledger

if TYPE_CHECKING:
    from completer.executor import Executor
    from completer.ledger import Decision, Ledger
    from completer.models import CompletionOutcome, CompletionRequest, Origin
    from completer.settings import Settings

__all__ = ["WorkerClient", "WorkerExecutor", "WorkerLedger", "build_executor"]


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


class WorkerLedger:
    """This process's completion ledger (see docs/ledger.md), made again by a forked worker.

    Like :class:`WorkerClient`: built at import so that a wrong ``COMPLETER_LEDGER`` fails
    the start, and built again, unconnected, by any other process that uses it (the
    Firestore client speaks gRPC, boto3's sessions are not fork-safe). Never call the store
    before the fork: once grpcio's threads run, a forked child that uses gRPC may crash.
    Every user of the ledger in one worker (the executor, the replay memory of signed
    webhooks, Pub/Sub message IDs, the approval pages) reads :attr:`ledger` and so shares
    one store client.
    """

    def __init__(self, settings: Settings) -> None:
        """Check ``COMPLETER_LEDGER`` and build the store's client, without calling it.

        Raises:
            ConfigurationError: The ledger URL names a store that cannot be used here.
        """
        self.settings = settings
        self._ledger = create_ledger(settings)
        self._pid = os.getpid()

    @property
    def ledger(self) -> Ledger:
        """This process's ledger (a forked worker gets its own, never its parent's)."""
        if self._pid != os.getpid():
            self._ledger = create_ledger(self.settings)
            self._pid = os.getpid()
        return self._ledger

    @property
    def shared(self) -> bool:
        """Whether every instance records in this ledger (the approval pages ask)."""
        return self.ledger.shared

    async def decision(self, request: CompletionRequest, /) -> Decision | None:
        """What this ledger holds as decided for ``request``'s activity (the approval pages)."""
        return await self.ledger.decision(request)

    async def close(self) -> None:
        """Close this process's store client (tests, and scripts that serve then stop)."""
        if self._pid == os.getpid():
            await self._ledger.close()


class WorkerExecutor:
    """The executor every function uses: correlation keys, then the ledger, then the engine.

    A request by ``correlation_key`` is resolved through the ledger's registry (or kept until
    the key is registered: ``buffered``); a repeated complete, fail or cancel answers the
    first outcome (``replayed``) and a different one is ``conflict``; see
    :class:`completer.correlation.CorrelationExecutor` and
    :class:`completer.ledger.LedgerExecutor`.
    """

    def __init__(self, client: Executor, ledger: WorkerLedger) -> None:
        self.client = client
        self.worker_ledger = ledger
        self._chain: Executor | None = None
        self._chain_ledger: Ledger | None = None

    @property
    def engine(self) -> CompletionClient:
        """This process's completion client (to connect it while a Lambda starts)."""
        client = self.client
        return client.client if isinstance(client, WorkerClient) else client  # type: ignore[return-value]

    def chain(self) -> Executor:
        """keys -> ledger -> engine, over this process's ledger (made again after a fork)."""
        ledger = self.worker_ledger.ledger
        if self._chain is None or self._chain_ledger is not ledger:
            from completer.correlation import build_executor as keys_ledger_engine

            self._chain = keys_ledger_engine(
                self.worker_ledger.settings, self.client, ledger=ledger
            )
            self._chain_ledger = ledger
        return self._chain

    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        """Carry out ``request`` through the keys, the ledger and the engine."""
        return await self.chain().execute(request, origin=origin)

    async def close(self) -> None:
        """Close this process's engine connection and ledger client."""
        close = getattr(self.client, "close", None)
        if close is not None:
            await close()
        await self.worker_ledger.close()


def build_executor(settings: Settings) -> tuple[WorkerExecutor, WorkerLedger]:
    """The one call a function file makes: its executor and the ledger behind it.

    Hand the ledger to whatever else in the function needs it (the replay memory of signed
    webhooks: :class:`completer.ledger.replays.LedgerReplayStore`; Pub/Sub message IDs;
    the approval pages' "was this decided, how, when": ``await ledger.ledger.decision(...)``).

    Raises:
        ConfigurationError: The backend or the ledger is misconfigured.
    """
    ledger = WorkerLedger(settings)
    return WorkerExecutor(WorkerClient(settings), ledger), ledger
