"""The ledger's semantics around any executor: the first answer again, one engine call.

See docs/ledger.md for what is kept and why. In short, for complete, fail and cancel:

- a request identical to one carried out (same activity naming, action and canonical
  payload) answers the first outcome with ``replayed`` and no engine call;
- a different request for a carried-out activity is ``conflict``, saying what was done
  and when;
- identical requests that arrive together make one engine call: one claims the record,
  the others wait for its outcome (up to twice the RPC deadline) and answer it replayed;
- refusals and transient errors (``engine_timeout`` included) release the claim: the
  engine, not the ledger, answers the next try;
- IDs without a run ID name "the current run": a record kept for them may be an earlier
  run's, so before answering from it the engine is asked, and only its
  ``activity_not_found`` lets the record answer (a new run is completed normally).

Heartbeats pass through unrecorded. A ledger that cannot be reached is
``engine_unavailable`` and the engine is not called.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from completer.errors import ActivityNotFound, CompleterError, Conflict
from completer.ledger.base import Record, RecordState
from completer.ledger.keys import ActivityNaming, request_fingerprint
from completer.models import Action, CompletionOutcome, CompletionRequest, Origin, Status

if TYPE_CHECKING:
    from completer.executor import Executor
    from completer.ledger.core import Ledger

__all__ = ["LedgerExecutor", "describe_record"]

logger = logging.getLogger("completer")

_PAST_TENSE = {"complete": "completed", "fail": "failed", "cancel": "cancelled"}


def _now_iso(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _bounded(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"


def describe_record(record: Record) -> str:
    """A sentence saying what a completed record holds: what was done, when, from where."""
    data = record.data
    done = _PAST_TENSE.get(str(data.get("action")), str(data.get("action")))
    origin = data.get("origin") or {}
    through = f" through {origin.get('trigger')}" if origin.get("trigger") else ""
    source = f" ({_bounded(str(origin['source']))})" if origin.get("source") else ""
    return f"the activity was already {done} at {data.get('at')}{through}{source}"


class LedgerExecutor:
    """An :class:`~completer.executor.Executor` that keeps what ``inner`` carried out.

    Build it with :meth:`completer.ledger.Ledger.wrap`.
    """

    def __init__(self, inner: Executor, *, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger

    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        """Carry out ``request`` once; a repeat answers the first outcome, replayed.

        Raises:
            Conflict: A different request for this activity was carried out.
            EngineUnavailable: The ledger (or the engine) cannot be reached.
            EngineTimeout: An identical request is still being carried out elsewhere.
            CompleterError: Whatever ``inner`` raises.
        """
        if request.action is Action.HEARTBEAT:
            return await self.inner.execute(request, origin=origin)
        ledger = self.ledger
        naming = ActivityNaming.of(request, scope=ledger.scope)
        fingerprint = request_fingerprint(request)
        deadline = time.monotonic() + ledger.wait_seconds
        waited = False
        while True:
            claim = self._claim(request, naming, fingerprint, origin)
            held = await ledger.store.create(claim)
            if held is None:
                return await self._carry_out(request, origin, claim)
            if held.state is RecordState.COMPLETED:
                # A request that arrived while another was in progress names the same run.
                pinned = naming.pinned or waited
                return await self._answer_from(held, request, pinned, fingerprint, origin)
            await ledger.wait_while_in_progress(naming.key, deadline)
            waited = True

    def _claim(
        self,
        request: CompletionRequest,
        naming: ActivityNaming,
        fingerprint: str,
        origin: Origin | None,
    ) -> Record:
        now = time.time()
        return Record(
            key=naming.key,
            state=RecordState.IN_PROGRESS,
            expires_at=int(now) + self.ledger.ttl_seconds,
            fingerprint=fingerprint,
            in_progress_until_ms=int((now + self.ledger.in_progress_seconds) * 1000),
            data=_facts(request, naming, origin, now),
        )

    async def _carry_out(
        self, request: CompletionRequest, origin: Origin | None, claim: Record
    ) -> CompletionOutcome:
        try:
            outcome = await self.inner.execute(request, origin=origin)
        except BaseException:
            # Not carried out (or unknown): the next try goes to the engine again.
            await asyncio.shield(self.ledger.release(claim.key))
            raise
        await self._record(claim, outcome)
        return outcome

    async def _record(self, claim: Record, outcome: CompletionOutcome) -> None:
        now = time.time()
        done = Record(
            key=claim.key,
            state=RecordState.COMPLETED,
            expires_at=int(now) + self.ledger.ttl_seconds,
            fingerprint=claim.fingerprint,
            data={
                **claim.data,
                "at": _now_iso(now),
                "outcome": outcome.model_dump(mode="json", exclude={"replayed"}),
            },
        )
        try:
            await self.ledger.store.replace(done)
        except CompleterError:
            # Carried out: the answer stands. The claim expires by itself, after which a
            # repeat reaches the engine (and hears activity_not_found) instead of the ledger.
            logger.warning(
                "completion carried out but not recorded in the ledger",
                extra={"completer": {"activity": claim.data.get("activity")}},
            )

    async def _answer_from(
        self,
        held: Record,
        request: CompletionRequest,
        pinned: bool,
        fingerprint: str,
        origin: Origin | None,
    ) -> CompletionOutcome:
        if not pinned:
            # The record may be an earlier run's: only the engine knows which run is current.
            try:
                outcome = await self.inner.execute(request, origin=origin)
            except ActivityNotFound:
                pass  # the activity is no longer waiting: the record is this run's answer
            else:
                naming = ActivityNaming.of(request, scope=self.ledger.scope)
                await self._record(self._claim(request, naming, fingerprint, origin), outcome)
                return outcome
        if held.fingerprint == fingerprint:
            first = held.data.get("outcome") or {}
            return CompletionOutcome(
                status=Status(first.get("status", "completed")),
                cancel_requested=first.get("cancel_requested"),
                replayed=True,
            )
        raise Conflict(
            f"{describe_record(held)}, by a different request; the ledger keeps the first "
            "outcome and this request was not carried out."
        )


def _facts(
    request: CompletionRequest, naming: ActivityNaming, origin: Origin | None, now: float
) -> dict[str, Any]:
    return {
        "activity": naming.label,
        "action": request.action.value,
        "started": _now_iso(now),
        "origin": {"trigger": origin.trigger, "source": origin.source} if origin else None,
    }
