"""The activity side: how a waiting activity hands out what completes it.

An activity that is completed from outside returns "pending" and gives someone the means
to complete it. These helpers build that means for each trigger, with the same names the
triggers read:

- :func:`approval_links`: signed, expiring approve/reject links for the HTTP function;
- :func:`presigned_upload`: a presigned S3 PUT URL that only accepts uploads carrying the
  task token, for the S3 function;
- :func:`pubsub_attributes`: message attributes for the Pub/Sub function's attribute form;
- :func:`temporal_task_token`: the current Temporal activity's token as transport text.

Every helper names the activity by ``task_token`` or by ``workflow_id`` + ``activity_id``
(+ ``run_id``). Given neither inside a running Temporal activity, they use that activity's
token. Nothing here imports an engine SDK, boto3 or ``cryptography`` until it is needed.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from completer.errors import InvalidRequest
from completer.models import Action
from completer.tokens import decode_token, encode_token

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "DEFAULT_REJECT_ERROR",
    "ApprovalLinks",
    "PresignedUpload",
    "approval_links",
    "presigned_upload",
    "pubsub_attributes",
    "s3_metadata",
    "temporal_task_token",
]

# Pub/Sub attribute names the Pub/Sub function reads (CONTRACT §5, events/pubsub.py).
PUBSUB_TASK_TOKEN = "task_token"  # noqa: S105 - an attribute name, not a secret
PUBSUB_WORKFLOW_ID = "workflow_id"
PUBSUB_ACTIVITY_ID = "activity_id"
PUBSUB_RUN_ID = "run_id"
PUBSUB_ACTION = "action"

# S3 user-metadata keys the S3 function reads (CONTRACT §6); S3 sends them as x-amz-meta-<key>.
S3_TASK_TOKEN = "task-token"  # noqa: S105 - a metadata key, not a secret
S3_WORKFLOW_ID = "workflow-id"
S3_ACTIVITY_ID = "activity-id"
S3_RUN_ID = "run-id"
S3_ACTION = "action"
S3_META_HEADER_PREFIX = "x-amz-meta-"

DEFAULT_UPLOAD_EXPIRES_SECONDS = 3600
DEFAULT_APPROVE_RESULT: dict[str, Any] = {"approved": True}
DEFAULT_REJECT_ERROR: dict[str, Any] = {
    "message": "rejected",
    "type": "Rejected",
    "non_retryable": True,
}

_SIGV4 = "AWS4-HMAC-SHA256"


def temporal_task_token() -> str:
    """The running Temporal activity's task token, encoded for transport (URL-safe base64).

    Call it inside an activity (``temporalio`` is imported only then).

    Raises:
        RuntimeError: Not called inside a Temporal activity.
    """
    from temporalio import activity

    if not activity.in_activity():
        raise RuntimeError("temporal_task_token() must be called inside a Temporal activity.")
    return encode_token(activity.info().task_token)


@dataclass(frozen=True)
class _Target:
    task_token: str | None = None
    workflow_id: str | None = None
    activity_id: str | None = None
    run_id: str | None = None

    def fields(self) -> dict[str, str]:
        values = {
            "task_token": self.task_token,
            "workflow_id": self.workflow_id,
            "activity_id": self.activity_id,
            "run_id": self.run_id,
        }
        return {name: value for name, value in values.items() if value is not None}


def _target(
    task_token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
) -> _Target:
    by_ids = workflow_id is not None or activity_id is not None or run_id is not None
    if task_token is not None:
        if by_ids:
            raise InvalidRequest("give either task_token or workflow_id + activity_id, not both.")
        decode_token(task_token)  # refuse a bad token here, not in the partner's hands
        return _Target(task_token=task_token.strip())
    if by_ids:
        if not workflow_id or not activity_id:
            raise InvalidRequest("workflow_id and activity_id must be given together.")
        return _Target(workflow_id=workflow_id, activity_id=activity_id, run_id=run_id or None)
    try:
        return _Target(task_token=temporal_task_token())
    except (ImportError, RuntimeError):
        raise InvalidRequest(
            "name the activity: task_token, or workflow_id + activity_id "
            "(outside a Temporal activity there is no token to take)."
        ) from None


def _action(action: Action | str | None) -> Action | None:
    if action is None:
        return None
    try:
        return Action(action)
    except ValueError:
        choices = ", ".join(a.value for a in Action)
        raise InvalidRequest(f"action must be one of {choices} (got {action!r}).") from None


def pubsub_attributes(
    *,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    action: Action | str | None = None,
) -> dict[str, str]:
    """Attributes of a Pub/Sub message in the attribute form (CONTRACT §5).

    Publish them with the action's payload as the message data: the result as JSON for
    ``complete`` (empty data is null), the error object for ``fail``, the details for
    ``heartbeat`` and ``cancel``.

    Args:
        task_token: The activity's token; or give the IDs; or neither inside a Temporal
            activity to use its own token.
        workflow_id: With ``activity_id`` (+ ``run_id``), instead of a token.
        activity_id: See ``workflow_id``.
        run_id: See ``workflow_id``.
        action: ``complete``, ``fail``, ``heartbeat`` or ``cancel``; absent means
            ``complete`` (the data is the result).

    Returns:
        The attributes, e.g. ``{"task_token": "...", "action": "complete"}``.

    Raises:
        InvalidRequest: The activity is not named exactly one way, or the action is unknown.
    """
    return _naming(
        _target(task_token, workflow_id, activity_id, run_id),
        action,
        (PUBSUB_TASK_TOKEN, PUBSUB_WORKFLOW_ID, PUBSUB_ACTIVITY_ID, PUBSUB_RUN_ID, PUBSUB_ACTION),
    )


def s3_metadata(
    *,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    action: Action | str | None = None,
) -> dict[str, str]:
    """S3 user metadata naming the activity (CONTRACT §6), as boto3's ``Metadata`` takes it.

    Raises:
        InvalidRequest: The activity is not named exactly one way, or the action is unknown.
    """
    return _naming(
        _target(task_token, workflow_id, activity_id, run_id),
        action,
        (S3_TASK_TOKEN, S3_WORKFLOW_ID, S3_ACTIVITY_ID, S3_RUN_ID, S3_ACTION),
    )


def _naming(
    target: _Target, action: Action | str | None, keys: tuple[str, str, str, str, str]
) -> dict[str, str]:
    # The wire names of one transport for task_token, workflow_id, activity_id, run_id, action.
    names = dict(zip(("task_token", "workflow_id", "activity_id", "run_id"), keys[:4], strict=True))
    naming = {names[name]: value for name, value in target.fields().items()}
    chosen = _action(action)
    if chosen is not None:
        naming[keys[4]] = chosen.value
    return naming


@dataclass(frozen=True)
class PresignedUpload:
    """A presigned S3 upload: send ``method`` to ``url`` with exactly these ``headers``.

    The headers are part of the signature: S3 refuses the upload
    (``SignatureDoesNotMatch``) when one is missing or different, so an object that
    lands always carries the task token.

    Attributes:
        url: The presigned URL (it does not contain the token).
        method: Always ``PUT``.
        headers: Headers the uploader must send, byte for byte.
        expires_at: Unix time after which S3 refuses the URL.
    """

    url: str
    method: str = "PUT"
    headers: dict[str, str] = field(default_factory=dict)
    expires_at: int = 0

    def curl(self, path: str = "result.json") -> str:
        """A ready-to-paste ``curl`` line that uploads the file at ``path``."""
        parts = ["curl", "--fail-with-body", "-X", self.method, "--upload-file", path]
        for name, value in self.headers.items():
            parts += ["-H", f"{name}: {value}"]
        parts.append(self.url)
        return shlex.join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The upload as JSON-ready data (what ``completer presign`` prints)."""
        return {
            "url": self.url,
            "method": self.method,
            "headers": dict(self.headers),
            "expires_at": self.expires_at,
        }


def presigned_upload(
    s3_client: S3Client,
    *,
    bucket: str,
    key: str,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    action: Action | str | None = None,
    expires_in: int = DEFAULT_UPLOAD_EXPIRES_SECONDS,
    content_type: str | None = None,
) -> PresignedUpload:
    """A presigned S3 PUT URL whose upload must carry the task token as metadata.

    The partner uploads with the returned headers, e.g.
    ``curl -X PUT --upload-file result.json -H 'x-amz-meta-task-token: <token>' '<url>'``
    (:meth:`PresignedUpload.curl` writes that line). The S3 function then completes the
    activity with the object (CONTRACT §6): its parsed JSON when it is JSON
    (``content_type="application/json"`` or a ``.json`` key) and small, else a reference.

    Args:
        s3_client: A boto3 S3 client whose credentials may put into ``bucket``. It must
            sign with SigV4 (``botocore.config.Config(signature_version="s3v4")``): SigV2
            URLs put the metadata, and so the token, into the query string and do not
            require the header.
        bucket: The bucket the S3 function listens to.
        key: The object key to upload to.
        task_token: The activity's token; or give the IDs; or neither inside a Temporal
            activity to use its own token.
        workflow_id: With ``activity_id`` (+ ``run_id``), instead of a token.
        activity_id: See ``workflow_id``.
        run_id: See ``workflow_id``.
        action: Optional ``action`` metadata (``fail`` makes the object the error).
        expires_in: Seconds the URL stays valid (SigV4 allows at most 7 days).
        content_type: When given, the upload must send exactly this ``Content-Type``.

    Returns:
        The URL, method and the headers the uploader must send.

    Raises:
        InvalidRequest: The activity is not named exactly one way.
        ValueError: ``expires_in`` is out of range, or the client did not sign with SigV4.
    """
    if not 1 <= expires_in <= 7 * 24 * 3600:
        raise ValueError("expires_in must be between 1 second and 7 days (SigV4's limit).")
    metadata = s3_metadata(
        task_token=task_token,
        workflow_id=workflow_id,
        activity_id=activity_id,
        run_id=run_id,
        action=action,
    )
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Metadata": metadata}
    headers = {f"{S3_META_HEADER_PREFIX}{name}": value for name, value in metadata.items()}
    if content_type is not None:
        params["ContentType"] = content_type
        headers["Content-Type"] = content_type
    issued = int(time.time())
    url = s3_client.generate_presigned_url(
        "put_object", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"
    )
    _check_signed(url, headers)
    return PresignedUpload(url=url, headers=headers, expires_at=issued + expires_in)


def _check_signed(url: str, headers: dict[str, str]) -> None:
    # botocore presigns S3 with SigV2 unless the client was told s3v4, whatever
    # meta.config says; a SigV2 URL carries the metadata in its query and requires nothing.
    query = {name.lower(): values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    signed = set(query.get("x-amz-signedheaders", "").split(";"))
    leaked = any(name.startswith(S3_META_HEADER_PREFIX) for name in query)
    if (
        query.get("x-amz-algorithm") != _SIGV4
        or leaked
        or not {name.lower() for name in headers} <= signed
    ):
        raise ValueError(
            "the S3 client did not sign the upload with SigV4, so the URL would not require "
            "the task-token header: create it with "
            "boto3.client('s3', config=botocore.config.Config(signature_version='s3v4'))."
        )


@dataclass(frozen=True)
class ApprovalLinks:
    """An approve link and a reject link for one waiting activity.

    Attributes:
        approve: Completes the activity with the approve result.
        reject: Fails the activity with the reject error.
        expires_at: Unix time after which both links are refused.
    """

    approve: str
    reject: str
    expires_at: int

    def to_dict(self) -> dict[str, Any]:
        """The links as JSON-ready data (what ``completer link`` prints)."""
        return {"approve": self.approve, "reject": self.reject, "expires_at": self.expires_at}


def approval_links(
    base_url: str,
    *,
    secret: str,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    approve_result: Any = None,
    reject_error: dict[str, Any] | None = None,
    ttl_seconds: int | None = None,
    now: float | None = None,
    title: str | None = None,
    description: str | None = None,
) -> ApprovalLinks:
    """Signed, expiring approve/reject links to the HTTP function (see :mod:`completer.links`).

    A GET of either link shows a confirmation page; only its POST completes, so mail
    scanners that prefetch links complete nothing.

    Args:
        base_url: The HTTP function's URL.
        secret: The function's ``COMPLETER_LINK_SECRET`` (at least 32 characters).
        task_token: The activity's token; or give the IDs; or neither inside a Temporal
            activity to use its own token.
        workflow_id: With ``activity_id`` (+ ``run_id``), instead of a token.
        activity_id: See ``workflow_id``.
        run_id: See ``workflow_id``.
        approve_result: The result "approve" completes with (default ``{"approved": true}``).
        reject_error: The error "reject" fails with (default: message ``rejected``,
            type ``Rejected``, non-retryable).
        ttl_seconds: How long the links work (default 7 days).
        now: The current time (for tests).
        title: What the person decides on, in plain text (at most 200 characters), shown
            above the choice, e.g. ``"Refund 120.00 EUR for order 42"``.
        description: More detail in plain text (at most 2000 characters).

    Returns:
        Both URLs and their expiry.

    Raises:
        InvalidRequest: The activity is not named exactly one way, or the preset result
            or error is not valid, or the title or description is too long.
        ValueError: The secret is shorter than 32 characters.
    """
    from completer.links import DEFAULT_LINK_TTL_SECONDS, create_link

    fields = _target(task_token, workflow_id, activity_id, run_id).fields()
    ttl = DEFAULT_LINK_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    issued = time.time() if now is None else now
    common: dict[str, Any] = {"secret": secret, "ttl_seconds": ttl, "now": issued, **fields}
    common.update(title=title, description=description)
    approve = create_link(
        base_url,
        choice="approve",
        result=DEFAULT_APPROVE_RESULT if approve_result is None else approve_result,
        **common,
    )
    reject = create_link(
        base_url,
        choice="reject",
        error=DEFAULT_REJECT_ERROR if reject_error is None else reject_error,
        **common,
    )
    return ApprovalLinks(approve=approve, reject=reject, expires_at=int(issued) + ttl)
