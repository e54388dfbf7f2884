"""The ledger: a store plus its settings, and the services built on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from completer.errors import CompleterError, EngineTimeout
from completer.ledger.base import RecordState
from completer.ledger.deliveries import DeliveryLog
from completer.ledger.executor import LedgerExecutor
from completer.ledger.keys import ActivityNaming
from completer.ledger.registry import CorrelationRegistry

if TYPE_CHECKING:
    from types import TracebackType

    from completer.executor import Executor
    from completer.ledger.base import LedgerStore

__all__ = ["DEFAULT_TTL_SECONDS", "Decision", "Ledger"]

logger = logging.getLogger("completer")

DEFAULT_TTL_SECONDS = 604_800
"""Seven days: how long a carried-out request is remembered by default."""

_IN_PROGRESS_MARGIN_SECONDS = 5.0
_WAIT_MARGIN_SECONDS = 2.0
_POLL_FIRST_SECONDS = 0.05
_POLL_MAX_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Decision:
    """What the ledger holds as carried out for one activity (for pages and tools).

    Attributes:
        action: ``complete``, ``fail`` or ``cancel``.
        status: The outcome's status (``completed``, ``failed``, ``cancelled``).
        at: When it was carried out (ISO 8601, UTC).
        trigger: Through which trigger (``http``, ``pubsub``, ``s3``, ``gcs``), if known.
        fingerprint: The hash of the request that did it; equal for identical requests.
    """

    action: str
    status: str
    at: str
    trigger: str | None
    fingerprint: str


class Ledger:
    """What the completer carried out, kept in one store, and the services over it.

    Attributes:
        store: Where records live.
        ttl_seconds: How long a carried-out request is kept.
        scope: Prefix of every key (the backend name), so that one table shared by
            several engines never mixes their activities.
        wait_seconds: How long a request waits for an identical one in progress.
        in_progress_seconds: How long a claim holds before it counts as abandoned.
        deliveries: First answers per ``webhook-id`` and Pub/Sub message ID.
        registry: Correlation keys and early-arrival requests.
    """

    def __init__(
        self,
        store: LedgerStore,
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        rpc_timeout_seconds: float = 10.0,
        scope: str = "",
    ) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.scope = scope
        # An engine call may take a connect and a call, each within the RPC deadline.
        self.wait_seconds = 2 * rpc_timeout_seconds + _WAIT_MARGIN_SECONDS
        self.in_progress_seconds = 2 * rpc_timeout_seconds + _IN_PROGRESS_MARGIN_SECONDS
        self.deliveries = DeliveryLog(self)
        self.registry = CorrelationRegistry(self)

    def wrap(self, inner: Executor) -> LedgerExecutor:
        """An executor that carries out requests through ``inner`` once each."""
        return LedgerExecutor(inner, ledger=self)

    async def show(
        self,
        *,
        task_token: str | None = None,
        workflow_id: str | None = None,
        activity_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any] | None:
        """What the ledger holds for an activity (no raw token), or None.

        Raises:
            EngineUnavailable: The store cannot be reached.
        """
        naming = ActivityNaming.from_fields(
            scope=self.scope,
            task_token=task_token,
            workflow_id=workflow_id,
            activity_id=activity_id,
            run_id=run_id,
        )
        record = await self.store.get(naming.key)
        if record is None:
            return None
        return {
            "state": "in_progress" if record.state is RecordState.IN_PROGRESS else "completed",
            **record.data,
            "expires_at": record.expires_at,
        }

    async def decision(
        self,
        *,
        task_token: str | None = None,
        workflow_id: str | None = None,
        activity_id: str | None = None,
        run_id: str | None = None,
    ) -> Decision | None:
        """Was this activity decided here, how and when (None: not that the ledger knows).

        Name the activity the way its requests name it (a token, or the IDs with or
        without a run ID): the ledger keeps those apart.

        Raises:
            EngineUnavailable: The store cannot be reached.
        """
        naming = ActivityNaming.from_fields(
            scope=self.scope,
            task_token=task_token,
            workflow_id=workflow_id,
            activity_id=activity_id,
            run_id=run_id,
        )
        record = await self.store.get(naming.key)
        if record is None or record.state is not RecordState.COMPLETED:
            return None
        data = record.data
        origin = data.get("origin") or {}
        return Decision(
            action=str(data.get("action")),
            status=str((data.get("outcome") or {}).get("status")),
            at=str(data.get("at")),
            trigger=origin.get("trigger"),
            fingerprint=record.fingerprint,
        )

    async def release(self, key: str) -> None:
        """Drop a claim so that the next try goes on (a failure here only delays that)."""
        try:
            await self.store.delete(key)
        except CompleterError:
            logger.warning("could not release a ledger claim; it expires by itself")

    async def wait_while_in_progress(self, key: str, deadline: float) -> None:
        """Wait until the record under ``key`` is no longer in progress.

        Raises:
            EngineTimeout: Still in progress at ``deadline`` (``time.monotonic()``).
            EngineUnavailable: The store cannot be reached.
        """
        pause = _POLL_FIRST_SECONDS
        while True:
            if time.monotonic() >= deadline:
                raise EngineTimeout(
                    "an identical request for this activity is still being carried out; "
                    "its outcome is not known yet: retry."
                )
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, _POLL_MAX_SECONDS)
            record = await self.store.get(key)
            if record is None or record.state is not RecordState.IN_PROGRESS or not record.live():
                return

    async def close(self) -> None:
        """Close the store's client."""
        with contextlib.suppress(Exception):
            await self.store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
