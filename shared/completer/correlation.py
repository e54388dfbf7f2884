"""Correlation keys: complete an activity by a business key it registered (an order number).

A request may name its activity by ``correlation_key`` instead of a token or IDs (see
docs/callbacks-and-keys.md). :class:`CorrelationExecutor` sits in front of the ledger's
executor and resolves the key in the ledger's registry:

- the key is registered: the request is rewritten to name that activity and carried out
  through the ledger (so a repeat is replayed, a different request is ``conflict``), and a
  complete, fail or cancel consumes the key;
- nobody registered it yet: the request is kept for ``COMPLETER_EARLY_ARRIVAL_TTL_SECONDS``
  and answered ``buffered``; :func:`register_key` carries it out when the key is registered
  (a heartbeat is not kept: ``activity_not_found``).

Requests named by token or IDs pass straight through. Every trigger uses the same chain,
built by :func:`build_executor`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from completer.errors import ActivityNotFound, CompleterError, PayloadTooLarge
from completer.ledger.keys import canonical_json
from completer.models import Action, CompletionOutcome, CompletionRequest, Origin, Status

if TYPE_CHECKING:
    from collections.abc import Mapping

    from completer.executor import Executor
    from completer.ledger import Ledger, Registration
    from completer.settings import Settings

__all__ = ["MAX_BUFFERED_BYTES", "CorrelationExecutor", "build_executor", "register_key"]

logger = logging.getLogger("completer")

# Actions after which the activity no longer waits: they consume its key.
_FINAL_ACTIONS = (Action.COMPLETE, Action.FAIL, Action.CANCEL)

MAX_BUFFERED_BYTES = 300_000
"""Largest request kept for an unregistered key, as JSON: a DynamoDB item holds 400 KB."""


class CorrelationExecutor:
    """An :class:`~completer.executor.Executor` that resolves correlation keys.

    Attributes:
        inner: The executor requests go to once named by token or IDs (the ledger's).
        ledger: The ledger whose registry holds the keys.
        early_arrival_ttl_seconds: How long a request for an unregistered key is kept.
    """

    def __init__(
        self, inner: Executor, *, ledger: Ledger, early_arrival_ttl_seconds: int = 86_400
    ) -> None:
        self.inner = inner
        self.ledger = ledger
        self.early_arrival_ttl_seconds = early_arrival_ttl_seconds

    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        """Carry out ``request``; by key, through the activity the key names.

        Returns:
            The outcome; ``buffered`` when nobody registered the key yet.

        Raises:
            Conflict: A different request already waits for the key, or the activity the
                key names was already completed differently.
            EngineUnavailable: The ledger (or the engine) cannot be reached.
            CompleterError: Whatever ``inner`` raises.
        """
        key = request.correlation_key
        if key is None:
            return await self.inner.execute(request, origin=origin)
        registry = self.ledger.registry
        registration = await registry.lookup(key, include_consumed=True)
        if registration is not None:
            return await self._carry_out(request, registration, origin)
        if request.action is Action.HEARTBEAT:
            # Only the request that ends the wait is kept (one per key): a heartbeat kept
            # would make the completion that follows it a conflict.
            raise ActivityNotFound(
                "no activity has registered this correlation key yet; heartbeats are not kept."
            )
        body = _body(request)
        if len(canonical_json(body).encode("utf-8")) > MAX_BUFFERED_BYTES:
            raise PayloadTooLarge(
                f"no activity has registered this correlation key yet, and a request kept "
                f"until one does is at most {MAX_BUFFERED_BYTES} bytes: register the key first."
            )
        await registry.buffer(key, body, origin=origin, ttl_seconds=self.early_arrival_ttl_seconds)
        # A registration that landed between the lookup and the buffer found nothing to
        # take: look again, so the request never waits for a key that is already there.
        registration = await registry.lookup(key)
        if registration is not None and await registry.take_buffered(key) is not None:
            return await self._carry_out(request, registration, origin)
        return CompletionOutcome(status=Status.BUFFERED)

    async def _carry_out(
        self, request: CompletionRequest, registration: Registration, origin: Origin | None
    ) -> CompletionOutcome:
        named = _named(request, registration.activity)
        outcome = await self.inner.execute(named, origin=origin)
        if request.action in _FINAL_ACTIONS and registration.consumed_at is None:
            try:
                await self.ledger.registry.consume(registration.key, activity=registration.activity)
            except CompleterError:
                # Carried out: the answer stands; the key expires by itself.
                logger.warning("completion carried out but its correlation key not consumed")
        return outcome


def _body(request: CompletionRequest) -> dict[str, Any]:
    return request.model_dump(mode="json", exclude_unset=True)


def _named(request: CompletionRequest, activity: Mapping[str, str]) -> CompletionRequest:
    fields = _body(request)
    del fields["correlation_key"]
    return CompletionRequest.build({**fields, **activity})


async def register_key(
    executor: CorrelationExecutor,
    key: str,
    *,
    activity: Mapping[str, str | None],
    ttl_seconds: int,
) -> CompletionOutcome | None:
    """Register ``key`` for ``activity`` and carry out the request that waited for it.

    Returns:
        The outcome of the buffered request, or None when none was waiting.

    Raises:
        Conflict: The key names another activity.
        EngineUnavailable: The ledger (or the engine) cannot be reached; a buffered
            request that could not be carried out is kept again for the next try.
        CompleterError: The buffered request was refused (it is not kept).
    """
    registry = executor.ledger.registry
    await registry.register(key, activity=activity, ttl_seconds=ttl_seconds)
    buffered = await registry.take_buffered(key)
    if buffered is None:
        return None
    request = CompletionRequest.build(buffered.body)
    origin = Origin(**buffered.origin) if buffered.origin else Origin(trigger="register")
    try:
        return await executor.execute(request, origin=origin)
    except CompleterError as exc:
        if exc.transient:
            await registry.buffer(
                key, buffered.body, origin=origin, ttl_seconds=executor.early_arrival_ttl_seconds
            )
        raise


def build_executor(
    settings: Settings, inner: Executor, *, ledger: Ledger | None = None
) -> CorrelationExecutor:
    """The whole completion chain every trigger uses: keys -> ledger -> ``inner``.

    Args:
        settings: ``COMPLETER_LEDGER``, its TTL and ``COMPLETER_EARLY_ARRIVAL_TTL_SECONDS``.
        inner: The completion client (``WorkerClient`` in a function, ``CompletionClient``
            elsewhere).
        ledger: The ledger to use; by default the one the settings configure.

    Raises:
        ConfigurationError: The ledger's store cannot be used.
    """
    if ledger is None:
        from completer.ledger import create_ledger

        ledger = create_ledger(settings)
    return CorrelationExecutor(
        ledger.wrap(inner),
        ledger=ledger,
        early_arrival_ttl_seconds=settings.early_arrival_ttl_seconds,
    )
