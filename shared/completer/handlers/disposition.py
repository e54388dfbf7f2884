"""The one policy that decides, from how a completion ended, what a trigger does with its event.

::

    outcome (success, or the ledger's first
        outcome of a repeat: "replayed")    -> ACKNOWLEDGE
    TransientError (engine down, timeout,
        storage unavailable, internal)      -> RETRY        (raise, batchItemFailure, 5xx)
    activity_not_found after this instance
        completed it or timed out on it     -> ACKNOWLEDGE  (a duplicate delivery)
    any other error (PermanentError, or an
        HTTP request refused as sent)       -> DEAD_LETTER  (acknowledge; dead letter if set)
    anything unexpected                     -> RETRY        (a bug must not drop an event)

Every trigger writes exactly one log line per event with :func:`log_verdict`; the client
does not log refusals, so a refused completion is never logged twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from completer.errors import ActivityNotFound, CompleterError, InternalError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from completer.models import CompletionOutcome

__all__ = ["Disposition", "Verdict", "judge", "log_verdict"]


class Disposition(StrEnum):
    """What a trigger does with the event."""

    ACKNOWLEDGE = "acknowledge"
    """Done (or a duplicate of something done): answer success, nothing to redo."""
    RETRY = "retry"
    """May succeed later: raise, name the record in batchItemFailures, answer 5xx."""
    DEAD_LETTER = "dead_letter"
    """Will never succeed: acknowledge, and send it to the dead letter when one is set."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one event ended and what to do about it.

    Attributes:
        disposition: Acknowledge, retry or dead-letter.
        outcome: The success status or the error code, as logged and answered.
        error: The public error, None on success.
        duplicate: True when a not-found is recognised as a repeat of this instance's own work.
        replayed: True when the completion ledger answered a repeat with its first outcome.
    """

    disposition: Disposition
    outcome: str
    error: CompleterError | None = None
    duplicate: bool = False
    replayed: bool = False

    @property
    def log_level(self) -> int:
        """INFO when done, WARNING for retries and dead letters, ERROR for the unexpected."""
        if isinstance(self.error, InternalError):
            return logging.ERROR
        if self.disposition is Disposition.ACKNOWLEDGE:
            return logging.INFO
        return logging.WARNING


def judge(result: CompletionOutcome | BaseException, *, done_before: bool = False) -> Verdict:
    """Decide what to do with an event from its outcome or the error it raised.

    Args:
        result: The outcome of the completion, or the exception that ended it.
        done_before: This instance already completed (or timed out completing) the very
            same request, so ``activity_not_found`` means the earlier attempt did it.

    Returns:
        The verdict; its ``error`` is the public error to answer with (an unexpected
        exception becomes :class:`~completer.errors.InternalError`), None on success.
    """
    if not isinstance(result, BaseException):
        # A replayed outcome is the first one's success, whatever trigger repeats it.
        return Verdict(Disposition.ACKNOWLEDGE, result.status.value, replayed=result.replayed)
    if isinstance(result, CompleterError):
        error = result
    else:
        error = InternalError("an unexpected error occurred; retry.")
    if error.transient:
        return Verdict(Disposition.RETRY, error.code, error)
    if isinstance(error, ActivityNotFound) and done_before:
        return Verdict(Disposition.ACKNOWLEDGE, error.code, error, duplicate=True)
    return Verdict(Disposition.DEAD_LETTER, error.code, error)


def log_verdict(
    logger: logging.Logger,
    message: str,
    verdict: Verdict,
    fields: Mapping[str, Any],
    *,
    cause: BaseException | None = None,
    level: int | None = None,
    show_disposition: bool = True,
) -> None:
    """Write the event's one log line: its fields, outcome and disposition.

    Only the type of an unexpected exception is logged (its message may quote the input).
    ``level`` overrides the verdict's (an HTTP caller's own mistake is not a warning);
    ``show_disposition`` is off where the answer's status says it all (HTTP).
    """
    line: dict[str, Any] = {**fields, "outcome": verdict.outcome}
    if show_disposition:
        line["disposition"] = verdict.disposition.value
    if verdict.duplicate:
        line["duplicate"] = True
    if verdict.replayed:
        line["replayed"] = True
    if verdict.error is not None:
        # Our errors' messages never quote the input (an unexpected one gets a fixed sentence).
        line["reason"] = verdict.error.message
    if cause is not None and not isinstance(cause, CompleterError):
        line["error_type"] = type(cause).__name__
    logger.log(verdict.log_level if level is None else level, message, extra={"completer": line})
