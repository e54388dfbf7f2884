"""Correlation keys: a business key that names an activity, and requests that came early.

The primitives only; the flow (complete by key, buffer, carry out on registration) is the
triggers'. A key names one activity at a time: registering it again for the same activity
renews it, for another is ``conflict``. Its completion consumes it: the key is kept,
marked consumed, so a repeat of that completion still reaches the same activity (and the
ledger answers it replayed), while a new registration of the key, for any activity, takes
it over. A request for a key nobody registered yet is kept for its own time to live, one
per key; :meth:`CorrelationRegistry.take_buffered` hands it to exactly one caller.
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
    consumed_at: float | None = None

    def public(self) -> dict[str, Any]:
        """The registration without the raw task token (for show and logs)."""
        shown = {k: v for k, v in self.activity.items() if k != "task_token"}
        if "task_token" in self.activity:
            shown["token"] = f"token:{token_fingerprint(self.activity['task_token'])}"
        shown_registration: dict[str, Any] = {
            "activity": shown,
            "registered_at": self.registered_at,
            "expires_at": self.expires_at,
        }
        if self.consumed_at is not None:
            shown_registration["consumed_at"] = self.consumed_at
        return shown_registration


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
            consumed = held.data.get("consumed_at") is not None
            if held.fingerprint != record.fingerprint and not consumed:
                raise Conflict(
                    "this correlation key already names another activity; "
                    "use a new key, or wait until that activity is completed."
                )
            # The same activity again renews it; a consumed key is free to name a new one.
            await self._ledger.store.replace(record)
        return _registration(key, record)

    async def lookup(self, key: str, *, include_consumed: bool = False) -> Registration | None:
        """The activity ``key`` names, or None.

        Args:
            key: The correlation key.
            include_consumed: Also return a registration whose activity was completed
                (its ``consumed_at`` is set), so that a repeat reaches the same activity.
        """
        held = await self._ledger.store.get(self._key("key", key))
        if held is None:
            return None
        registration = _registration(key, held)
        if registration.consumed_at is not None and not include_consumed:
            return None
        return registration

    async def consume(self, key: str, *, activity: Mapping[str, str | None] | None = None) -> None:
        """Mark ``key`` consumed: its activity was completed.

        The key keeps naming that activity for the ledger's time to live, for repeats only;
        :meth:`register` may give it to another activity at once.

        Args:
            key: The correlation key.
            activity: When given, consume the key only while it still names this activity
                (a completion never removes a newer registration for another one).
        """
        held = await self._ledger.store.get(self._key("key", key))
        if held is None or held.data.get("consumed_at") is not None:
            return
        if activity is not None and held.data.get("activity") != _naming(activity):
            return
        now = time.time()
        await self._ledger.store.replace(
            Record(
                key=held.key,
                state=RecordState.COMPLETED,
                expires_at=max(held.expires_at, int(now) + self._ledger.ttl_seconds),
                fingerprint=held.fingerprint,
                data={**held.data, "consumed_at": now},
            )
        )

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
        """The request waiting for ``key``, removed (the registration carries it out).

        Atomic across instances: of two registrations racing for one request, one gets it.
        """
        taken = await self._ledger.store.take(self._key("early", key))
        return None if taken is None else _buffered(key, taken)


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
        consumed_at=record.data.get("consumed_at"),
    )


def _buffered(key: str, record: Record) -> BufferedRequest:
    return BufferedRequest(
        key=key,
        body=dict(record.data["body"]),
        origin=record.data.get("origin"),
        received_at=float(record.data["received_at"]),
        expires_at=record.expires_at,
    )
