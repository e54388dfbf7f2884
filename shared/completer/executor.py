"""The one protocol of "something that carries out a completion request".

The completion client implements it, and so does the ledger that wraps a client; every
trigger handler depends on this protocol only, never on a concrete client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from completer.models import CompletionOutcome, CompletionRequest, Origin

__all__ = ["Executor"]


class Executor(Protocol):
    """Carries out completion requests (async; safe to call concurrently on one loop)."""

    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        """Carry out ``request``; raise a :class:`~completer.errors.CompleterError` if refused."""
        ...
