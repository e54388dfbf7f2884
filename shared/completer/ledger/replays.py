"""Signed webhooks' ``webhook-id``, recognised on every instance through the ledger.

:class:`LedgerReplayStore` is the ledger-backed :class:`completer.signatures.ReplayStore`:
the first request with an id claims it in the store (one conditional write), its final
answer replaces the claim, and a replay on any instance answers that first answer. A
request whose id is being carried out elsewhere waits for its answer; an id reused for a
different body is ``conflict``. An answer is kept while its signature is still accepted
(signed time plus the tolerance), never longer than the ledger's time to live.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from completer.errors import CompleterError, Conflict
from completer.ledger.base import Record, RecordState
from completer.signatures import RememberedAnswer

if TYPE_CHECKING:
    from completer.ledger.core import Ledger
    from completer.signatures import SignedRequest

__all__ = ["KIND", "LedgerReplayStore"]

logger = logging.getLogger("completer")

KIND = "webhook"
"""The delivery kind of signed webhooks (see :meth:`completer.ledger.DeliveryLog.key`)."""


class LedgerReplayStore:
    """A :class:`completer.signatures.ReplayStore` shared by every instance on one ledger.

    Args:
        ledger: The ledger, or a callable returning this process's ledger (a function's
            :class:`completer.handlers.worker.WorkerLedger` ``.ledger``).
        tolerance_seconds: How long a signature is accepted after its timestamp.
    """

    def __init__(self, ledger: Ledger | Callable[[], Ledger], *, tolerance_seconds: int) -> None:
        self._ledger = ledger
        self.tolerance_seconds = tolerance_seconds

    @property
    def ledger(self) -> Ledger:
        """The ledger in use by this process."""
        return self._ledger() if callable(self._ledger) else self._ledger

    def key(self, signed: SignedRequest) -> str:
        """The store key of a signed request's id (per secret name; see ``replay_key``)."""
        return self.ledger.deliveries.key(signed.replay_key, kind=KIND)

    async def first_answer(self, signed: SignedRequest) -> RememberedAnswer | None:
        """The answer already given to this id on any instance, or None (then it is claimed).

        Raises:
            Conflict: The id was already used for a different body.
            EngineUnavailable: The ledger cannot be reached (nothing is carried out).
            EngineTimeout: The same id is still being answered elsewhere.
        """
        ledger = self.ledger
        key = self.key(signed)
        deadline = time.monotonic() + ledger.wait_seconds
        while True:
            now = time.time()
            claim = Record(
                key=key,
                state=RecordState.IN_PROGRESS,
                expires_at=self._expires_at(signed, now),
                fingerprint=signed.body_digest,
                in_progress_until_ms=int((now + ledger.in_progress_seconds) * 1000),
            )
            held = await ledger.store.create(claim)
            if held is None:
                return None
            _same_body(held.fingerprint, signed)
            if held.state is RecordState.COMPLETED:
                return RememberedAnswer(
                    status=int(held.data["status"]), body=dict(held.data["body"])
                )
            await ledger.wait_while_in_progress(key, deadline)

    async def remember(self, signed: SignedRequest, answer: RememberedAnswer | None) -> None:
        """Keep a final answer for the id's replays, or release the claim with ``None``.

        Never raises: the request was carried out and its answer stands; a record that
        cannot be written lets the claim expire, after which a replay reaches the completion
        ledger's own record of the request (``replayed`` again, or ``conflict``).
        """
        ledger = self.ledger
        key = self.key(signed)
        if answer is None:
            await ledger.release(key)
            return
        done = Record(
            key=key,
            state=RecordState.COMPLETED,
            expires_at=self._expires_at(signed, time.time()),
            fingerprint=signed.body_digest,
            data={"kind": KIND, "status": answer.status, "body": answer.body},
        )
        try:
            await ledger.store.replace(done)
        except CompleterError:
            logger.warning("signed request answered but its webhook-id not recorded")

    def _expires_at(self, signed: SignedRequest, now: float) -> int:
        # A replay is refused by its signature once the tolerance has passed; keep at least
        # a minute so that a slow first request still answers its retries.
        window = max(signed.timestamp + self.tolerance_seconds, int(now) + 60)
        return min(window, int(now) + self.ledger.ttl_seconds)


def _same_body(fingerprint: str, signed: SignedRequest) -> None:
    if not hmac.compare_digest(fingerprint, signed.body_digest):
        raise Conflict("this webhook-id was already used for a different body.")
