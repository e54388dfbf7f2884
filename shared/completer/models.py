"""The completion request and its outcome (docs/contract.md).

Every trigger turns its event into a :class:`CompletionRequest` through
:func:`parse_request` (a whole JSON request) or :meth:`CompletionRequest.build`
(fields it took from attributes or metadata). Both raise only
:class:`~completer.errors.InvalidRequest`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)

from completer.errors import InvalidRequest
from completer.tokens import token_fingerprint

__all__ = [
    "Action",
    "ActivityError",
    "CompletionOutcome",
    "CompletionRequest",
    "Origin",
    "Status",
    "parse_json",
    "parse_request",
]

MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in a request; deeper JSON is refused, never recursed into."""

MAX_ID_LENGTH = 1000
"""Longest ``workflow_id``, ``activity_id``, ``run_id`` or correlation key, in characters."""


class Action(StrEnum):
    """What to do with the waiting activity."""

    COMPLETE = "complete"
    FAIL = "fail"
    HEARTBEAT = "heartbeat"
    CANCEL = "cancel"


class Status(StrEnum):
    """The success statuses (docs/contract.md, Outcomes), one per action."""

    COMPLETED = "completed"
    FAILED = "failed"
    HEARTBEAT_RECORDED = "heartbeat_recorded"
    CANCELLED = "cancelled"
    BUFFERED = "buffered"
    """Named by a correlation key nobody registered yet: kept until it is (HTTP 202)."""


_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, validate_by_name=True)


def _alias(name: str, camel: str) -> AliasChoices:
    return AliasChoices(name, camel)


class ActivityError(BaseModel):
    """The error that fails an activity (the request's ``error`` object, docs/contract.md)."""

    model_config = _STRICT

    message: str = Field(min_length=1)
    type: str | None = Field(default=None, min_length=1)
    details: JsonValue = None
    non_retryable: bool = Field(
        default=False, validation_alias=_alias("non_retryable", "nonRetryable")
    )

    @model_validator(mode="after")
    def _message_not_blank(self) -> Self:
        if not self.message.strip():
            raise ValueError("error.message must not be blank")
        return self


class CompletionRequest(BaseModel):
    """One completion: which activity, what to do, and with what.

    The activity is named by ``task_token``, by ``workflow_id`` + ``activity_id``
    (+ ``run_id``), or by a ``correlation_key`` an activity registered: exactly one.
    ``action`` is inferred when absent: ``fail`` when ``error`` is given, else ``complete``.
    """

    model_config = _STRICT

    task_token: str | None = Field(default=None, validation_alias=_alias("task_token", "taskToken"))
    workflow_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        validation_alias=_alias("workflow_id", "workflowId"),
    )
    run_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        validation_alias=_alias("run_id", "runId"),
    )
    activity_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        validation_alias=_alias("activity_id", "activityId"),
    )
    correlation_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        validation_alias=_alias("correlation_key", "correlationKey"),
    )
    action: Action = Action.COMPLETE
    result: JsonValue = None
    error: ActivityError | None = None
    details: JsonValue = None

    @model_validator(mode="before")
    @classmethod
    def _infer_action(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("action") is None:
            data = dict(data)
            data["action"] = Action.FAIL.value if data.get("error") is not None else "complete"
        if isinstance(data, Mapping) and isinstance(data.get("action"), str):
            # Strict mode takes an enum only as its member; accept its value from JSON too.
            try:
                data = {**data, "action": Action(data["action"])}
            except ValueError:
                raise ValueError(
                    f"action must be one of {', '.join(a.value for a in Action)}"
                ) from None
        return data

    @model_validator(mode="after")
    def _check_target_and_fields(self) -> Self:
        by_ids = self.workflow_id is not None or self.activity_id is not None
        if self.correlation_key is not None:
            if self.task_token is not None or by_ids or self.run_id is not None:
                raise ValueError(
                    "name the activity one way: task_token, workflow_id + activity_id, "
                    "or correlation_key"
                )
        elif self.task_token is not None and (by_ids or self.run_id is not None):
            raise ValueError("give either task_token or workflow_id + activity_id, not both")
        elif self.task_token is None:
            if not by_ids:
                raise ValueError(
                    "name the activity: task_token, workflow_id + activity_id, or correlation_key"
                )
            if self.workflow_id is None or self.activity_id is None:
                raise ValueError("workflow_id and activity_id must be given together")
        elif not self.task_token.strip():
            raise ValueError("task_token is empty")
        given = self.model_fields_set
        if self.action is Action.COMPLETE and self.error is not None:
            raise ValueError("action 'complete' cannot carry an error; use 'fail' or drop 'error'")
        if self.action is Action.FAIL and self.error is None:
            raise ValueError("action 'fail' needs an error object with a message")
        if self.action in (Action.HEARTBEAT, Action.CANCEL):
            if self.error is not None or "result" in given:
                raise ValueError(
                    f"action '{self.action}' takes only 'details', not result or error"
                )
        elif "details" in given:
            raise ValueError(f"action '{self.action}' does not take 'details'")
        return self

    @classmethod
    def build(cls, fields: Mapping[str, Any]) -> CompletionRequest:
        """Validate a request assembled by a trigger from attributes or metadata.

        Raises:
            InvalidRequest: The fields do not make a valid request.
        """
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise InvalidRequest(describe_validation_error(exc)) from exc
        except (RecursionError, TypeError, ValueError) as exc:
            raise InvalidRequest("the request is not a valid completion request.") from exc

    @property
    def by_token(self) -> bool:
        """True when the activity is named by its task token."""
        return self.task_token is not None

    def describe_activity(self) -> str:
        """A log-safe name for the activity: a token fingerprint, its IDs, or its key."""
        if self.correlation_key is not None:
            return f"key:{quoted(self.correlation_key, limit=100)}"
        if self.task_token is not None:
            return f"token:{token_fingerprint(self.task_token)}"
        return f"workflow:{self.workflow_id}/activity:{self.activity_id}"

    def payload(self) -> JsonValue:
        """The value the engine must encode for this action (result, error details or details)."""
        if self.action is Action.COMPLETE:
            return self.result
        if self.action is Action.FAIL:
            return self.error.details if self.error is not None else None
        return self.details


class CompletionOutcome(BaseModel):
    """A successful completion: its status and, for heartbeats, whether cancellation is asked."""

    model_config = ConfigDict(frozen=True)

    status: Status
    cancel_requested: bool | None = None
    replayed: bool = False
    """True when the answer comes from the ledger (a repeat of a request already carried out)."""

    def to_dict(self) -> dict[str, Any]:
        """The HTTP success body: ``{"status": ...}`` (+ ``cancel_requested`` for heartbeats,
        + ``"replayed": true`` for an answer given again)."""
        body = self.model_dump(mode="json", exclude_none=True, exclude={"replayed"})
        if self.replayed:
            body["replayed"] = True
        return body


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from: kept by the ledger and written to the logs.

    Attributes:
        trigger: ``http``, ``link``, ``callback``, ``pubsub``, ``s3``, ``gcs`` or ``cli``.
        source: What the trigger calls this delivery: the ``webhook-id``, the Pub/Sub
            message ID, the object URI with its version or generation; None when unknown.
    """

    trigger: str
    source: str | None = None


# A complete JSON string (escapes included), and runs of anything but brackets and quotes.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r'[^\[\]{}"]++')
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _depth_ok(text: str) -> bool:
    # Upper bound on nesting, brackets inside strings left out; no recursion, and no Python
    # loop over the characters (a 2 MiB body took 40 ms of the GIL that way).
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return True
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    # A quote left over opens a string that never ends: nothing after it nests.
    brackets = brackets.partition('"')[0]
    steps = map(_DEPTH_STEP.__getitem__, brackets)
    return max(itertools.accumulate(steps), default=0) <= MAX_JSON_DEPTH


def parse_json(raw: bytes | str, *, what: str = "the body") -> Any:
    """Parse JSON text strictly.

    Refused: text that is not UTF-8, empty, nested deeper than :data:`MAX_JSON_DEPTH`,
    ``NaN``/``Infinity``, a number that does not fit a finite IEEE double (an integer
    literal is kept exact when its magnitude is at most the largest double, about
    1.8e308), a key given twice in one object, and a lone UTF-16 surrogate anywhere.

    Raises:
        InvalidRequest: ``raw`` breaks one of these rules; the message quotes at most
            a few characters of it.
    """
    if isinstance(raw, bytes):
        try:
            # Strict UTF-8 refuses encoded surrogates (ED A0 80) along with other bad bytes.
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{what} is not UTF-8 text.") from exc
    else:
        text = raw
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(
                f"{what} has a lone UTF-16 surrogate, which is not text."
            ) from None
    if not text.strip():
        raise InvalidRequest(f"{what} is empty; expected a JSON object.")
    if not _depth_ok(text):
        raise InvalidRequest(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels.")
    # Only a run of 309+ digits can be an integer beyond the largest double (1.8e308):
    # without one, ints stay on the C scanner's fast path.
    # (bytes.translate and a substring search run in C at memory speed; a regex took 20 ms).
    parse_int = _finite_int if _LONG_DIGIT_RUN in raw.translate(_DIGITS_AS_ZERO) else None
    try:
        data = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=parse_int,
            object_pairs_hook=_unique_keys,
        )
    except _DuplicateKey as exc:
        raise InvalidRequest(f"{what} has the key {exc.key} twice in one object.") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {_json_reason(exc)}") from exc
    if _SURROGATE_ESCAPE.search(text):
        # A \ud800 escape decodes to a lone surrogate unless its pair follows; encoding the
        # parsed value (in C) finds one anywhere, keys included.
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(
                f"{what} has a lone UTF-16 surrogate escape (such as \\ud800), which is not text."
            ) from None
    return data


# An escape of a UTF-16 surrogate (D800-DFFF); a pair is fine, a lone one is refused.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 309
_QUOTED_MAX = 40


def quoted(text: str, *, limit: int = _QUOTED_MAX) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters (input is unbounded)."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return json.dumps(shown, ensure_ascii=True)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__("duplicate key")
        self.key = quoted(key)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A gateway that reads the first of two keys and this function the last would disagree
    # about which activity a request names: refuse the ambiguity.
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e400 parses as inf, which no engine's JSON can carry: refuse it rather than send null.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:32]} is out of range of a finite double")
    return value


def _finite_int(text: str) -> int:
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise ValueError(
            f"the number {text[:32]}… ({len(text)} digits) is out of range of a finite double"
        ) from None
    return value


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}."
    return f"{exc}."


def parse_request(raw: bytes | str | Mapping[str, Any]) -> CompletionRequest:
    """Parse a whole completion request (docs/contract.md) from JSON text or a mapping.

    Raises:
        InvalidRequest: Anything about the input is wrong; the message says what.
    """
    data = raw if isinstance(raw, Mapping) else parse_json(raw)
    if not isinstance(data, Mapping):
        raise InvalidRequest("the request must be a JSON object.")
    return CompletionRequest.build(data)


_FIELD_NAMES = {
    "taskToken": "task_token",
    "workflowId": "workflow_id",
    "runId": "run_id",
    "activityId": "activity_id",
    "correlationKey": "correlation_key",
    "nonRetryable": "non_retryable",
}


_MAX_PROBLEMS = 5


def describe_validation_error(exc: ValidationError) -> str:
    """One or more sentences saying what is wrong, never echoing the input (it may hold a token).

    Field names come from the input (an unknown field is named), so each is cut short and
    at most a few problems are listed: the message stays bounded whatever was sent.
    """
    problems: list[str] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = ".".join(
            _FIELD_NAMES.get(str(part), str(part))
            for part in err["loc"]
            if not isinstance(part, int) or err["type"] != "extra_forbidden"
        )
        loc = loc if len(loc) <= _QUOTED_MAX else loc[:_QUOTED_MAX] + "…"
        kind = err["type"]
        if kind == "extra_forbidden":
            problems.append(f"unknown field '{loc}'")
        elif kind == "missing":
            problems.append(f"'{loc}' is required")
        elif kind == "value_error":
            problems.append(str(err["msg"]).removeprefix("Value error, "))
        elif loc:
            problems.append(f"'{loc}': {err['msg'].lower()}")
        else:
            problems.append(str(err["msg"]))
    unique = list(dict.fromkeys(problems))
    shown = "; ".join(unique[:_MAX_PROBLEMS])
    if len(unique) > _MAX_PROBLEMS:
        shown += f"; and {len(unique) - _MAX_PROBLEMS} more"
    return "invalid completion request: " + shown + "."
