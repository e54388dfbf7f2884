"""First answers per delivery: a signed webhook's ``webhook-id``, a Pub/Sub message ID.

A sender that retries a delivery it already got an answer for gets that answer again,
on any instance: the HTTP function and the Pub/Sub function call :meth:`DeliveryLog.once`
around their work. Only final answers are kept (below 500 and not 429): after a transient
answer the retry is carried out again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from completer.ledger.base import Record, RecordState
from completer.ledger.keys import record_key

if TYPE_CHECKING:
    from completer.ledger.core import Ledger

__all__ = ["Answer", "DeliveryLog"]

_FINGERPRINT = "delivery"  # every delivery record is "the same request" as its claim


@dataclass(frozen=True, slots=True)
class Answer:
    """What a trigger answered a delivery: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def final(self) -> bool:
        """True when a retry of the delivery must get this same answer."""
        return self.status < 500 and self.status != 429


class DeliveryLog:
    """The first answer per delivery ID, kept for the ledger's time to live."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def key(self, delivery_id: str, *, kind: str) -> str:
        """The store key of a delivery (``kind``: ``webhook`` or ``pubsub``)."""
        return record_key("delivery", kind, delivery_id, scope=self._ledger.scope)

    async def once(
        self,
        delivery_id: str,
        produce: Callable[[], Awaitable[Answer]],
        *,
        kind: str,
    ) -> tuple[Answer, bool]:
        """The answer to a delivery: ``produce()``'s the first time, the kept one after.

        Identical deliveries arriving together run ``produce`` once; the others wait for
        its answer. A non-final answer is not kept, and neither is an exception.

        Returns:
            The answer, and True when it was kept from an earlier delivery (replayed).

        Raises:
            EngineUnavailable: The ledger cannot be reached (``produce`` is not called).
            EngineTimeout: The same delivery is still being answered elsewhere.
        """
        ledger = self._ledger
        key = self.key(delivery_id, kind=kind)
        deadline = time.monotonic() + ledger.wait_seconds
        while True:
            now = time.time()
            claim = Record(
                key=key,
                state=RecordState.IN_PROGRESS,
                expires_at=int(now) + ledger.ttl_seconds,
                fingerprint=_FINGERPRINT,
                in_progress_until_ms=int((now + ledger.in_progress_seconds) * 1000),
            )
            held = await ledger.store.create(claim)
            if held is None:
                break
            if held.state is RecordState.COMPLETED:
                return _answer(held), True
            await ledger.wait_while_in_progress(key, deadline)
        try:
            answer = await produce()
        except BaseException:
            await ledger.release(key)
            raise
        if not answer.final:
            await ledger.release(key)
            return answer, False
        now = time.time()
        await ledger.store.replace(
            Record(
                key=key,
                state=RecordState.COMPLETED,
                expires_at=int(now) + ledger.ttl_seconds,
                fingerprint=_FINGERPRINT,
                data={"kind": kind, "status": answer.status, "body": answer.body},
            )
        )
        return answer, False

    async def recall(self, delivery_id: str, *, kind: str) -> Answer | None:
        """The kept answer to a delivery, or None."""
        held = await self._ledger.store.get(self.key(delivery_id, kind=kind))
        if held is None or held.state is not RecordState.COMPLETED:
            return None
        return _answer(held)


def _answer(record: Record) -> Answer:
    return Answer(status=int(record.data["status"]), body=dict(record.data["body"]))
