"""How the ledger names what it keeps: record keys and request fingerprints.

Keys are hashes, so a raw task token is never stored as a key and every key fits the
stores' limits (Firestore document IDs, DynamoDB partition keys). The fingerprint is the
hash of the action and its payload in canonical JSON, so the same request sent again by
another serializer (key order, ``1.0`` for ``1``) is still recognised as identical.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from completer.errors import InvalidRequest
from completer.models import Action, CompletionRequest
from completer.tokens import decode_token, token_fingerprint

__all__ = ["ActivityNaming", "canonical_json", "record_key", "request_fingerprint"]

_SEPARATOR = "\x1f"  # unit separator: cannot appear in a hashed part by accident of joining


def record_key(kind: str, *parts: str, scope: str) -> str:
    """The store key of one record: ``<kind>-<sha256 of scope and parts>``."""
    digest = hashlib.sha256(_SEPARATOR.join((scope, kind, *parts)).encode("utf-8", "surrogatepass"))
    return f"{kind}-{digest.hexdigest()}"


def _canonical(value: Any) -> Any:
    # Integral floats are written as integers (JSON has one number type).
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no spaces and integral floats as integers."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_fingerprint(request: CompletionRequest) -> str:
    """The hash of what a request does: its action and canonical payload (not its naming)."""
    if request.action is Action.COMPLETE:
        payload: Any = {"result": request.result}
    elif request.action is Action.FAIL:
        assert request.error is not None
        payload = {"error": request.error.model_dump(mode="json")}
    else:
        payload = {"details": request.details}
    text = canonical_json({"action": request.action.value, **payload})
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class ActivityNaming:
    """How a request names its activity, in the ledger's terms.

    Attributes:
        key: The store key of the activity's record.
        label: A log-safe name: ``token:<fingerprint>`` or the IDs.
        pinned: False for IDs without a run ID, which name "the current run": a record
            kept for them may belong to an earlier run with the same workflow ID.
    """

    key: str
    label: str
    pinned: bool

    @classmethod
    def of(cls, request: CompletionRequest, *, scope: str) -> ActivityNaming:
        """The naming of ``request``'s activity."""
        return cls.from_fields(
            task_token=request.task_token,
            workflow_id=request.workflow_id,
            activity_id=request.activity_id,
            run_id=request.run_id,
            scope=scope,
        )

    @classmethod
    def from_fields(
        cls,
        *,
        scope: str,
        task_token: str | None = None,
        workflow_id: str | None = None,
        activity_id: str | None = None,
        run_id: str | None = None,
    ) -> ActivityNaming:
        """The naming from a token, or from workflow and activity IDs (+ run ID)."""
        if task_token is not None:
            # The same binary token arrives in either base64 alphabet, padded or not.
            try:
                identity = decode_token(task_token).hex()
            except InvalidRequest:
                identity = task_token  # Step Functions: the token as issued
            return cls(
                key=record_key("activity", "token", identity, scope=scope),
                label=f"token:{token_fingerprint(task_token)}",
                pinned=True,
            )
        if workflow_id is None or activity_id is None:
            raise ValueError("name the activity by task_token or workflow_id + activity_id")
        run = run_id or ""
        label = f"workflow:{workflow_id}/activity:{activity_id}"
        if run_id:
            label = f"workflow:{workflow_id}/run:{run_id}/activity:{activity_id}"
        return cls(
            key=record_key("activity", "ids", workflow_id, run, activity_id, scope=scope),
            label=label,
            pinned=bool(run_id),
        )
