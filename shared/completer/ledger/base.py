"""The ledger's store port: one small async surface, the shared logic in the base class.

A store keeps :class:`Record` objects by key, each in one of two states (the states of
aws-lambda-powertools' idempotency records): ``INPROGRESS`` while a request is being
carried out, ``COMPLETED`` once it was. A record past its ``expires_at`` is gone, whatever
the store's lazy TTL deletion says; an ``INPROGRESS`` record past ``in_progress_until_ms``
was abandoned (its instance died) and may be taken over.

Subclasses implement ``_create``, ``_get``, ``_replace``, ``_delete``, ``_take`` and
``_close``; the
public methods add the deadline, the expiry check on read, and the translation of every
store error into :class:`~completer.errors.EngineUnavailable` (a ledger that cannot be
reached never lets a request through unrecorded).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from completer.errors import CompleterError, EngineUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from types import TracebackType

__all__ = ["LedgerStore", "Record", "RecordState"]

_DEFAULT_TIMEOUT_SECONDS = 5.0
_T = TypeVar("_T")


class RecordState(StrEnum):
    """The state of a record (aws-lambda-powertools' status values)."""

    IN_PROGRESS = "INPROGRESS"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True, slots=True)
class Record:
    """One thing the ledger keeps.

    Attributes:
        key: The store key (a hash; see :mod:`completer.ledger.keys`).
        state: In progress or completed.
        expires_at: Epoch seconds after which the record no longer exists.
        fingerprint: The hash of the request it stands for ("" when not relevant).
        data: JSON object: what was done, when, through which trigger, the outcome.
        in_progress_until_ms: Epoch milliseconds after which an in-progress record is
            abandoned and may be taken over.
    """

    key: str
    state: RecordState
    expires_at: int
    fingerprint: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    in_progress_until_ms: int | None = None

    def expired(self, now: float | None = None) -> bool:
        """True once the record's time to live has passed."""
        return (time.time() if now is None else now) > self.expires_at

    def abandoned(self, now: float | None = None) -> bool:
        """True for an in-progress record whose owner's time ran out."""
        now = time.time() if now is None else now
        return (
            self.state is RecordState.IN_PROGRESS
            and self.in_progress_until_ms is not None
            and now * 1000 > self.in_progress_until_ms
        )

    def live(self, now: float | None = None) -> bool:
        """Neither expired nor abandoned: it holds its key."""
        return not self.expired(now) and not self.abandoned(now)


class LedgerStore(ABC):
    """Where ledger records live: in memory, in Firestore or in DynamoDB.

    Attributes:
        url: The ``COMPLETER_LEDGER`` value (``memory://`` for the in-process store).
        timeout: Seconds one store call may take before the ledger counts as unreachable.
    """

    kind: ClassVar[str]

    def __init__(self, url: str, *, timeout: float = _DEFAULT_TIMEOUT_SECONDS) -> None:
        self.url = url
        self.timeout = timeout

    async def create(self, record: Record) -> Record | None:
        """Write ``record`` unless a live record holds its key (one atomic step).

        Returns:
            None when written; else the live record that holds the key.

        Raises:
            EngineUnavailable: The store cannot be reached.
        """
        for _ in range(3):
            held = await self._guard(self._create(record))
            if held is None or held.live():
                return held
            # Expired between the store's check and ours (a clock tick): try again.
        raise self.translate_error(RuntimeError("the record expired while being claimed"))

    async def get(self, key: str) -> Record | None:
        """The live record under ``key``, or None (expired records count as absent).

        Raises:
            EngineUnavailable: The store cannot be reached.
        """
        record = await self._guard(self._get(key))
        return record if record is not None and not record.expired() else None

    async def replace(self, record: Record) -> None:
        """Write ``record`` whatever the key holds (the owner of a claim finishing it).

        Raises:
            EngineUnavailable: The store cannot be reached.
        """
        await self._guard(self._replace(record))

    async def delete(self, key: str) -> None:
        """Remove the record under ``key`` (absent is fine).

        Raises:
            EngineUnavailable: The store cannot be reached.
        """
        await self._guard(self._delete(key))

    async def take(self, key: str) -> Record | None:
        """Remove the record under ``key`` and return it, in one atomic step: of several
        callers racing for one record, exactly one gets it.

        Returns:
            The live record removed, or None when there was none (or another caller took it).

        Raises:
            EngineUnavailable: The store cannot be reached.
        """
        record = await self._guard(self._take(key))
        return record if record is not None and not record.expired() else None

    async def close(self) -> None:
        """Release the store's client; safe to call twice."""
        await self._close()

    async def _guard(self, call: Awaitable[_T]) -> _T:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except CompleterError:
            raise
        except TimeoutError as exc:
            raise EngineUnavailable(
                f"the completion ledger ({self.url}) did not answer within {self.timeout:g} s; "
                "nothing was carried out, retry.",
                retry_after=1,
            ) from exc
        except Exception as exc:
            raise self.translate_error(exc) from exc

    def translate_error(self, exc: BaseException) -> CompleterError:
        """Map a store error to a public error (the one place per store)."""
        return EngineUnavailable(
            f"the completion ledger ({self.url}) cannot be reached ({type(exc).__name__}); "
            "nothing was carried out, retry.",
            retry_after=1,
        )

    @abstractmethod
    async def _create(self, record: Record) -> Record | None:
        """Write unless a live record holds the key; return that record if one does."""

    @abstractmethod
    async def _get(self, key: str) -> Record | None:
        """The record under ``key`` as stored (expired or not), or None."""

    @abstractmethod
    async def _replace(self, record: Record) -> None:
        """Write unconditionally."""

    @abstractmethod
    async def _delete(self, key: str) -> None:
        """Delete; absent is fine."""

    @abstractmethod
    async def _take(self, key: str) -> Record | None:
        """Delete and return what was deleted; None when another caller deleted it first."""

    async def _close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
