"""Correlation keys: a business key that names an activity, and requests that came early.

The primitives only; the flow (complete by key, buffer, carry out on registration) is the
triggers'. A key names one activity at a time: registering it again for the same activity
renews it, for another is ``conflict``. Its completion consumes it. A request for a key
nobody registered yet is kept for its own time to live, one per key.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from completer.errors import Conflict
from completer.ledger.base import Record, RecordState
from completer.ledger.keys import canonical_json, record_key
from completer.tokens import token_fingerprint

if TYPE_CHECKING:
    from collections.abc import Mapping

    from completer.ledger.core import Ledger
    from completer.models import Origin

__all__ = ["BufferedRequest", "CorrelationRegistry", "Registration"]

_NAMING_FIELDS = ("task_token", "workflow_id", "activity_id", "run_id")


@dataclass(frozen=True, slots=True)
class Registration:
    """A correlation key and the activity it names (``activity`` holds the raw token)."""

    key: str
    activity: dict[str, str]
    registered_at: float
    expires_at: int

    def public(self) -> dict[str, Any]:
        """The registration without the raw task token (for show and logs)."""
        shown = {k: v for k, v in self.activity.items() if k != "task_token"}
        if "task_token" in self.activity:
            shown["token"] = f"token:{token_fingerprint(self.activity['task_token'])}"
        return {
            "activity": shown,
            "registered_at": self.registered_at,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class BufferedRequest:
    """A request that named a key before anyone registered it."""

    key: str
    body: dict[str, Any]
    origin: dict[str, Any] | None
    received_at: float
    expires_at: int


class CorrelationRegistry:
    """Registrations and early-arrival requests, per correlation key."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def _key(self, kind: str, key: str) -> str:
        return record_key(kind, key, scope=self._ledger.scope)

    async def register(
        self, key: str, *, activity: Mapping[str, str | None], ttl_seconds: int
    ) -> Registration:
        """Let ``key`` name ``activity`` (``task_token``, or ``workflow_id`` + ``activity_id``
        + optional ``run_id``) for ``ttl_seconds``.

        Raises:
            Conflict: The key names another activity.
            EngineUnavailable: The ledger cannot be reached.
        """
        naming = _naming(activity)
        now = time.time()
        record = Record(
            key=self._key("key", key),
            state=RecordState.COMPLETED,
            expires_at=int(now) + ttl_seconds,
            fingerprint=_hash(naming),
            data={"activity": naming, "registered_at": now},
        )
        held = await self._ledger.store.create(record)
        if held is not None:
            if held.fingerprint != record.fingerprint:
                raise Conflict(
                    "this correlation key already names another activity; "
                    "use a new key, or wait until that activity is completed."
                )
            await self._ledger.store.replace(record)  # the same activity again: renew
        return _registration(key, record)

    async def lookup(self, key: str) -> Registration | None:
        """The activity ``key`` names, or None."""
        held = await self._ledger.store.get(self._key("key", key))
        return None if held is None else _registration(key, held)

    async def consume(self, key: str, *, activity: Mapping[str, str | None] | None = None) -> None:
        """Forget ``key``: its activity was completed.

        Args:
            key: The correlation key.
            activity: When given, forget the key only while it still names this activity
                (a completion never removes a newer registration for another one).
        """
        if activity is not None:
            held = await self.lookup(key)
            if held is None or held.activity != _naming(activity):
                return
        await self._ledger.store.delete(self._key("key", key))

    async def buffer(
        self,
        key: str,
        body: Mapping[str, Any],
        *,
        origin: Origin | None,
        ttl_seconds: int,
    ) -> BufferedRequest:
        """Keep a request for a key nobody registered yet (the same request again is fine).

        Raises:
            Conflict: A different request is already waiting for this key.
            EngineUnavailable: The ledger cannot be reached.
        """
        now = time.time()
        record = Record(
            key=self._key("early", key),
            state=RecordState.COMPLETED,
            expires_at=int(now) + ttl_seconds,
            fingerprint=_hash(dict(body)),
            data={
                "body": dict(body),
                "origin": {"trigger": origin.trigger, "source": origin.source} if origin else None,
                "received_at": now,
            },
        )
        held = await self._ledger.store.create(record)
        if held is not None:
            if held.fingerprint != record.fingerprint:
                raise Conflict("a different request is already waiting for this correlation key.")
            record = held
        return _buffered(key, record)

    async def peek_buffered(self, key: str) -> BufferedRequest | None:
        """The request waiting for ``key``, left in place."""
        held = await self._ledger.store.get(self._key("early", key))
        return None if held is None else _buffered(key, held)

    async def take_buffered(self, key: str) -> BufferedRequest | None:
        """The request waiting for ``key``, removed (the registration carries it out)."""
        buffered = await self.peek_buffered(key)
        if buffered is not None:
            await self._ledger.store.delete(self._key("early", key))
        return buffered


def _naming(activity: Mapping[str, str | None]) -> dict[str, str]:
    return {f: str(activity[f]) for f in _NAMING_FIELDS if activity.get(f)}


def _hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8", "surrogatepass")).hexdigest()


def _registration(key: str, record: Record) -> Registration:
    return Registration(
        key=key,
        activity=dict(record.data["activity"]),
        registered_at=float(record.data["registered_at"]),
        expires_at=record.expires_at,
    )


def _buffered(key: str, record: Record) -> BufferedRequest:
    return BufferedRequest(
        key=key,
        body=dict(record.data["body"]),
        origin=record.data.get("origin"),
        received_at=float(record.data["received_at"]),
        expires_at=record.expires_at,
    )
