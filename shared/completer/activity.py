"""The activity side: how a waiting activity hands out what completes it.

An activity that is completed from outside returns "pending" and gives someone the means
to complete it. These helpers build that means for each trigger, with the same names the
triggers read:

- :func:`approval_links` / :func:`approval_links_async`: signed, expiring approve/reject
  links for the HTTP function (a link by IDs seals the run ID, looked up when not given);
- :func:`presigned_upload`: a presigned S3 PUT URL that only accepts uploads carrying the
  task token, for the S3 function;
- :func:`gcs_signed_upload`: a V4 signed Cloud Storage PUT URL that only accepts uploads
  carrying the task token, for the Cloud Storage function;
- :func:`pubsub_attributes`: message attributes for the Pub/Sub function's attribute form;
- :func:`callback_url` / :func:`callback_url_async`: a sealed, expiring URL whose POSTed
  body (or what a JMESPath ``select`` picks of it) completes the activity;
- :func:`register` / :func:`register_async`: let a business key (an order number) name
  the activity in the shared ledger, so a request by ``correlation_key`` completes it;
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
    from google.cloud.storage import Client as GcsClient
    from mypy_boto3_s3 import S3Client
    from temporalio.client import Client as TemporalClient

    from completer.correlation import CorrelationExecutor
    from completer.models import CompletionOutcome
    from completer.settings import Settings

__all__ = [
    "DEFAULT_REJECT_ERROR",
    "ApprovalLinks",
    "PresignedUpload",
    "approval_links",
    "approval_links_async",
    "callback_url",
    "callback_url_async",
    "gcs_metadata",
    "gcs_signed_upload",
    "lookup_run_id",
    "presigned_upload",
    "pubsub_attributes",
    "register",
    "register_async",
    "s3_metadata",
    "temporal_task_token",
]

# Pub/Sub attribute names the Pub/Sub function reads (docs/triggers/pubsub.md, events/pubsub.py).
PUBSUB_TASK_TOKEN = "task_token"  # noqa: S105 - an attribute name, not a secret
PUBSUB_WORKFLOW_ID = "workflow_id"
PUBSUB_ACTIVITY_ID = "activity_id"
PUBSUB_RUN_ID = "run_id"
PUBSUB_ACTION = "action"

# S3 user-metadata keys the S3 function reads (docs/triggers/s3.md), sent as x-amz-meta-<key>.
S3_TASK_TOKEN = "task-token"  # noqa: S105 - a metadata key, not a secret
S3_WORKFLOW_ID = "workflow-id"
S3_ACTIVITY_ID = "activity-id"
S3_RUN_ID = "run-id"
S3_ACTION = "action"
S3_META_HEADER_PREFIX = "x-amz-meta-"

# Cloud Storage custom metadata: the same names as S3's, sent as x-goog-meta-<name>.
GCS_META_HEADER_PREFIX = "x-goog-meta-"

DEFAULT_UPLOAD_EXPIRES_SECONDS = 3600
# V4 signatures, S3's and Cloud Storage's, last at most 7 days.
MAX_UPLOAD_EXPIRES_SECONDS = 7 * 24 * 3600
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
        shown = str(action)[:40]
        raise InvalidRequest(f"action must be one of {choices} (got {shown!r}).") from None


def pubsub_attributes(
    *,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    action: Action | str | None = None,
) -> dict[str, str]:
    """Attributes of a Pub/Sub message in the attribute form (docs/triggers/pubsub.md).

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
    """S3 user metadata naming the activity (docs/triggers/s3.md), as boto3's ``Metadata`` takes it.

    Raises:
        InvalidRequest: The activity is not named exactly one way, or the action is unknown.
    """
    return _naming(
        _target(task_token, workflow_id, activity_id, run_id),
        action,
        (S3_TASK_TOKEN, S3_WORKFLOW_ID, S3_ACTIVITY_ID, S3_RUN_ID, S3_ACTION),
    )


def gcs_metadata(
    *,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    action: Action | str | None = None,
) -> dict[str, str]:
    """Cloud Storage custom metadata naming the activity, as ``Blob.metadata`` takes it.

    Raises:
        InvalidRequest: The activity is not named exactly one way, or the action is unknown.
    """
    return s3_metadata(
        task_token=task_token,
        workflow_id=workflow_id,
        activity_id=activity_id,
        run_id=run_id,
        action=action,
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
    activity with the object (docs/triggers/s3.md): its parsed JSON when it is JSON
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
    if not 1 <= expires_in <= MAX_UPLOAD_EXPIRES_SECONDS:
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


def gcs_signed_upload(
    client: GcsClient,
    *,
    bucket: str,
    name: str,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    action: Action | str | None = None,
    expires_in: int = DEFAULT_UPLOAD_EXPIRES_SECONDS,
    content_type: str | None = None,
    service_account_email: str | None = None,
    access_token: str | None = None,
    api_access_endpoint: str | None = None,
) -> PresignedUpload:
    """A V4 signed Cloud Storage PUT URL whose upload must carry the task token as metadata.

    The ``x-goog-meta-*`` headers are signed headers: Cloud Storage refuses the upload
    (``SignatureDoesNotMatch``) when one is missing or different, so an object that lands
    always names its activity. The Cloud Storage function then completes the activity with
    the object (see docs/triggers/gcs.md).

    Signing follows google-cloud-storage: with the client's service-account key when it has
    one; otherwise (Cloud Run, GCE, workload identity) through the IAM ``signBlob`` API as
    ``service_account_email`` with ``access_token``, which default to the client's own
    credentials (the account needs ``roles/iam.serviceAccountTokenCreator`` on itself).

    Args:
        client: A ``google.cloud.storage.Client``.
        bucket: The bucket the Cloud Storage function listens to.
        name: The object name to upload to.
        task_token: The activity's token; or give the IDs; or neither inside a Temporal
            activity to use its own token.
        workflow_id: With ``activity_id`` (+ ``run_id``), instead of a token.
        activity_id: See ``workflow_id``.
        run_id: See ``workflow_id``.
        action: Optional ``action`` metadata (``fail`` makes the object the error).
        expires_in: Seconds the URL stays valid (V4 allows at most 7 days).
        content_type: When given, the upload must send exactly this ``Content-Type``.
        service_account_email: Sign through IAM as this account (with ``access_token``).
        access_token: An OAuth token allowed to call ``signBlob`` for that account.
        api_access_endpoint: Where the URL points; by default the client's endpoint.

    Returns:
        The URL, method and the headers the uploader must send.

    Raises:
        InvalidRequest: The activity is not named exactly one way.
        ValueError: ``expires_in`` is out of range, or the credentials cannot sign.
    """
    if not 1 <= expires_in <= MAX_UPLOAD_EXPIRES_SECONDS:
        raise ValueError("expires_in must be between 1 second and 7 days (V4's limit).")
    metadata = gcs_metadata(
        task_token=task_token,
        workflow_id=workflow_id,
        activity_id=activity_id,
        run_id=run_id,
        action=action,
    )
    headers = {f"{GCS_META_HEADER_PREFIX}{key}": value for key, value in metadata.items()}
    if service_account_email is None and access_token is None:
        service_account_email, access_token = _iam_signer(client)
    issued = int(time.time())
    url: str = (
        client.bucket(bucket)
        .blob(name)
        .generate_signed_url(
            version="v4",
            method="PUT",
            expiration=expires_in,
            headers=dict(headers),
            content_type=content_type,
            service_account_email=service_account_email,
            access_token=access_token,
            api_access_endpoint=api_access_endpoint,
        )
    )
    if content_type is not None:
        headers["Content-Type"] = content_type
    signed = parse_qs(urlsplit(url).query).get("X-Goog-SignedHeaders", [""])[0].split(";")
    if not {header.lower() for header in headers} <= set(signed):
        raise ValueError("the signed URL does not require the metadata headers.")
    return PresignedUpload(url=url, headers=headers, expires_at=issued + expires_in)


def _iam_signer(client: GcsClient) -> tuple[str | None, str | None]:
    # A key signs locally; credentials without one (metadata server, workload identity)
    # sign through IAM signBlob as their own account, with a fresh access token.
    from google.auth.credentials import Signing

    credentials = client._credentials
    if isinstance(credentials, Signing):
        return None, None
    if not hasattr(credentials, "service_account_email"):
        raise ValueError(
            "the storage client's credentials cannot sign: use a service-account key, or "
            "pass service_account_email and access_token to sign through IAM signBlob."
        )
    from google.auth.transport.requests import Request

    # Also resolves the metadata server's "default" account into its email.
    credentials.refresh(Request())
    email = str(credentials.service_account_email)
    return email, str(credentials.token)


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
    scanners that prefetch links complete nothing. Links that name the activity by IDs
    seal its run ID, so they never complete a later run that reuses the workflow ID:
    give ``run_id``, or call this inside the Temporal activity the IDs name (its run is
    taken), or use :func:`approval_links_async`, which asks the engine for it.

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
        InvalidRequest: The activity is not named exactly one way, IDs come without a run
            ID that can be known here, the preset result or error is not valid, or the
            title or description is too long.
        ValueError: The secret is shorter than 32 characters.
    """
    target = _run_sealed(
        _target(task_token, workflow_id, activity_id, run_id),
        what="a link",
        instead="approval_links_async()",
    )
    return _links(
        base_url,
        secret=secret,
        fields=target.fields(),
        approve_result=approve_result,
        reject_error=reject_error,
        ttl_seconds=ttl_seconds,
        now=now,
        title=title,
        description=description,
    )


async def approval_links_async(
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
    client: TemporalClient | None = None,
    now: float | None = None,
    title: str | None = None,
    description: str | None = None,
) -> ApprovalLinks:
    """:func:`approval_links`, looking up the current run ID of a workflow named by IDs.

    Args:
        base_url: See :func:`approval_links`; so are the other arguments except ``client``.
        secret: See :func:`approval_links`.
        task_token: See :func:`approval_links`.
        workflow_id: See :func:`approval_links`.
        activity_id: See :func:`approval_links`.
        run_id: See :func:`approval_links`; when absent with IDs, it is looked up.
        approve_result: See :func:`approval_links`.
        reject_error: See :func:`approval_links`.
        ttl_seconds: See :func:`approval_links`.
        client: The Temporal client to describe the workflow with; inside a Temporal
            activity, the worker's client by default.
        now: The current time (for tests).
        title: See :func:`approval_links`.
        description: See :func:`approval_links`.

    Raises:
        InvalidRequest: As :func:`approval_links`, or no client to look the run ID up with.
        ActivityNotFound: No workflow has that ID.
    """
    target = await _run_looked_up(
        _target(task_token, workflow_id, activity_id, run_id), client=client
    )
    return _links(
        base_url,
        secret=secret,
        fields=target.fields(),
        approve_result=approve_result,
        reject_error=reject_error,
        ttl_seconds=ttl_seconds,
        now=now,
        title=title,
        description=description,
    )


async def lookup_run_id(workflow_id: str, *, client: TemporalClient | None = None) -> str:
    """The run ID of the latest run of a Temporal workflow (describes the workflow).

    Args:
        workflow_id: The workflow ID.
        client: A connected Temporal client; inside a Temporal activity, the worker's
            client by default.

    Raises:
        InvalidRequest: No client was given outside a Temporal activity.
        ActivityNotFound: No workflow has that ID.
    """
    from temporalio import activity
    from temporalio.service import RPCError, RPCStatusCode

    from completer.errors import ActivityNotFound

    if client is None:
        if not activity.in_activity():
            raise InvalidRequest("give a Temporal client to look the workflow's run ID up with.")
        client = activity.client()
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise ActivityNotFound("no workflow has this workflow ID.") from exc
        raise
    return description.run_id


def _run_sealed(target: _Target, *, what: str, instead: str) -> _Target:
    # IDs name "the current run": a link or callback URL seals the run it was made for.
    if target.workflow_id is None or target.run_id is not None:
        return target
    known = _own_run_id(target.workflow_id)
    if known is None:
        raise InvalidRequest(
            f"{what} by IDs seals the workflow's run ID: give run_id, or use {instead}, "
            "which looks it up."
        )
    return _Target(workflow_id=target.workflow_id, activity_id=target.activity_id, run_id=known)


async def _run_looked_up(target: _Target, *, client: TemporalClient | None) -> _Target:
    # As _run_sealed, asking the engine for the current run when this is not its activity.
    if target.workflow_id is None or target.run_id is not None:
        return target
    found = _own_run_id(target.workflow_id) or await lookup_run_id(
        target.workflow_id, client=client
    )
    return _Target(workflow_id=target.workflow_id, activity_id=target.activity_id, run_id=found)


def _own_run_id(workflow_id: str) -> str | None:
    # Inside the Temporal activity of this very workflow, its run is known without a call.
    try:
        from temporalio import activity
    except ImportError:
        return None
    if not activity.in_activity():
        return None
    info = activity.info()
    return info.workflow_run_id if info.workflow_id == workflow_id else None


def _links(
    base_url: str,
    *,
    secret: str,
    fields: dict[str, str],
    approve_result: Any,
    reject_error: dict[str, Any] | None,
    ttl_seconds: int | None,
    now: float | None,
    title: str | None,
    description: str | None,
) -> ApprovalLinks:
    from completer.links import DEFAULT_LINK_TTL_SECONDS, create_link

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


def callback_url(
    function_url: str,
    *,
    secret: str,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    ttl_seconds: int | None = None,
    select: str | None = None,
    fail_when: str | None = None,
    now: float | None = None,
) -> str:
    """A sealed, expiring callback URL: the body POSTed to it completes the activity.

    Hand it to a system that calls back with its own payload (a payment provider, a
    signing service). A JSON body is the result (or what ``select`` picks of it); a
    ``text/plain`` body completes with the text; ``fail_when`` truthy fails the activity
    with type ``CallbackFailed``. A URL by IDs seals the run ID (give ``run_id``, call this
    inside the Temporal activity the IDs name, or use :func:`callback_url_async`).

    Args:
        function_url: The HTTP function's URL.
        secret: The function's ``COMPLETER_LINK_SECRET`` (at least 32 characters).
        task_token: The activity's token; or give the IDs; or neither inside a Temporal
            activity to use its own token.
        workflow_id: With ``activity_id`` (+ ``run_id``), instead of a token.
        activity_id: See ``workflow_id``.
        run_id: See ``workflow_id``.
        ttl_seconds: How long the URL works (default 7 days).
        select: A JMESPath expression picking the result out of the body, e.g.
            ``"data.object"``.
        fail_when: A JMESPath expression; when truthy on the body, the activity fails.
        now: The current time (for tests).

    Returns:
        ``<function_url>?callback=<sealed>``.

    Raises:
        InvalidRequest: The activity is not named exactly one way, IDs come without a run
            ID that can be known here, or an expression is not valid JMESPath.
        ValueError: The secret is shorter than 32 characters.
    """
    target = _run_sealed(
        _target(task_token, workflow_id, activity_id, run_id),
        what="a callback URL",
        instead="callback_url_async()",
    )
    return _callback(function_url, secret, target, ttl_seconds, select, fail_when, now)


async def callback_url_async(
    function_url: str,
    *,
    secret: str,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    ttl_seconds: int | None = None,
    select: str | None = None,
    fail_when: str | None = None,
    client: TemporalClient | None = None,
    now: float | None = None,
) -> str:
    """:func:`callback_url`, looking up the current run ID of a workflow named by IDs.

    Args:
        function_url: See :func:`callback_url`; so are the other arguments but ``client``.
        secret: See :func:`callback_url`.
        task_token: See :func:`callback_url`.
        workflow_id: See :func:`callback_url`.
        activity_id: See :func:`callback_url`.
        run_id: See :func:`callback_url`; when absent with IDs, it is looked up.
        ttl_seconds: See :func:`callback_url`.
        select: See :func:`callback_url`.
        fail_when: See :func:`callback_url`.
        client: The Temporal client to describe the workflow with; inside a Temporal
            activity, the worker's client by default.
        now: See :func:`callback_url`.

    Raises:
        InvalidRequest: As :func:`callback_url`, or no client to look the run ID up with.
        ActivityNotFound: No workflow has that ID.
    """
    target = await _run_looked_up(
        _target(task_token, workflow_id, activity_id, run_id), client=client
    )
    return _callback(function_url, secret, target, ttl_seconds, select, fail_when, now)


def _callback(
    function_url: str,
    secret: str,
    target: _Target,
    ttl_seconds: int | None,
    select: str | None,
    fail_when: str | None,
    now: float | None,
) -> str:
    from completer.callbacks import DEFAULT_CALLBACK_TTL_SECONDS, create_callback

    return create_callback(
        function_url,
        secret=secret,
        activity=target.fields(),
        ttl_seconds=DEFAULT_CALLBACK_TTL_SECONDS if ttl_seconds is None else ttl_seconds,
        select=select,
        fail_when=fail_when,
        now=now,
    )


def register(
    key: str,
    *,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    ttl_seconds: int | None = None,
    settings: Settings | None = None,
) -> CompletionOutcome | None:
    """Let a correlation key (an order number, a file name) name this activity.

    Synchronous :func:`register_async` (call that one from async code).
    """
    import asyncio

    return asyncio.run(
        register_async(
            key,
            task_token=task_token,
            workflow_id=workflow_id,
            activity_id=activity_id,
            run_id=run_id,
            ttl_seconds=ttl_seconds,
            settings=settings,
        )
    )


async def register_async(
    key: str,
    *,
    task_token: str | None = None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
    run_id: str | None = None,
    ttl_seconds: int | None = None,
    settings: Settings | None = None,
    executor: CorrelationExecutor | None = None,
) -> CompletionOutcome | None:
    """Let a correlation key name this activity in the shared ledger (``COMPLETER_LEDGER``).

    A request that names the key (``correlation_key`` in HTTP JSON or a Pub/Sub message,
    ``correlation-key`` object metadata, or an object key matching the key pattern) then
    completes this activity. When such a request arrived before this registration, it was
    kept; it is carried out now, through a completion client built from the settings, and
    its outcome returned.

    Args:
        key: The correlation key (1 to 1000 characters).
        task_token: The activity's token; or give the IDs; or neither inside a Temporal
            activity to use its own token.
        workflow_id: With ``activity_id`` (+ ``run_id``), instead of a token.
        activity_id: See ``workflow_id``.
        run_id: See ``workflow_id``.
        ttl_seconds: How long the key names the activity (default: the ledger's TTL,
            ``COMPLETER_LEDGER_TTL_SECONDS``).
        settings: The settings (default: read from the environment; unused with
            ``executor``).
        executor: The completion chain to use (default: one built from the settings and
            closed afterwards).

    Returns:
        The outcome of the request that was waiting for the key, or None.

    Raises:
        ConfigurationError: ``COMPLETER_LEDGER`` is not set (a per-process ledger cannot
            hold a registration the functions can see), or the engine's settings are wrong.
        InvalidRequest: The key or the naming is not valid.
        Conflict: The key names another activity.
        CompleterError: The waiting request could not be carried out.
    """
    from completer.correlation import build_executor, register_key
    from completer.errors import ConfigurationError
    from completer.models import MAX_ID_LENGTH
    from completer.settings import load_settings

    if not isinstance(key, str) or not key or len(key) > MAX_ID_LENGTH:
        raise InvalidRequest(f"a correlation key is 1 to {MAX_ID_LENGTH} characters.")
    activity = _registered_activity(task_token, workflow_id, activity_id, run_id)
    if executor is not None:
        ttl = executor.ledger.ttl_seconds if ttl_seconds is None else ttl_seconds
        return await register_key(executor, key, activity=activity, ttl_seconds=ttl)
    settings = settings or load_settings()
    if settings.ledger is None:
        raise ConfigurationError(
            "registering a correlation key needs the shared ledger the functions use: "
            "set COMPLETER_LEDGER (firestore://… or dynamodb://…)."
        )
    from completer.client import CompletionClient

    client = CompletionClient.create(settings)
    chain = build_executor(settings, client)
    ttl = settings.ledger_ttl_seconds if ttl_seconds is None else ttl_seconds
    try:
        return await register_key(chain, key, activity=activity, ttl_seconds=ttl)
    finally:
        await client.close()
        await chain.ledger.close()


def _registered_activity(
    task_token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
) -> dict[str, str]:
    from completer.models import CompletionRequest

    if task_token is None and workflow_id is None and activity_id is None and run_id is None:
        return _target(None, None, None, None).fields()
    fields = {
        "task_token": task_token.strip() if task_token is not None else None,
        "workflow_id": workflow_id,
        "activity_id": activity_id,
        "run_id": run_id or None,
    }
    named = {name: value for name, value in fields.items() if value is not None}
    CompletionRequest.build(named)  # one naming, IDs within their limits
    return named


# The Step Functions approval notifier's own settings (it is not the HTTP function).
APPROVAL_FUNCTION_URL = "APPROVAL_FUNCTION_URL"
APPROVAL_TOPIC_ARN = "APPROVAL_TOPIC_ARN"
_SNS_SUBJECT_MAX = 100  # SNS Publish: Subject is at most 100 printable ASCII characters


def stepfunctions_approval_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda handler for a Step Functions task that waits for a person's approval.

    The state machine calls it with ``arn:aws:states:::lambda:invoke.waitForTaskToken`` and
    ``{"task_token.$": "$$.Task.Token", "subject": …, "description": …}``; it makes approve
    and reject links to the HTTP function (``APPROVAL_FUNCTION_URL``, signed with
    ``COMPLETER_LINK_SECRET``) and publishes them to the SNS topic ``APPROVAL_TOPIC_ARN``
    (e.g. e-mail subscribers). The click completes the task; the token is never sent.

    Args:
        event: ``task_token`` (required), ``subject``, ``description``, ``ttl_seconds``,
            ``approve_result``.
        context: The Lambda context (unused).

    Returns:
        ``{"expires_at": <unix time>}``; Step Functions waits for the link instead.

    Raises:
        ConfigurationError: A setting is missing or wrong (the Lambda fails; Step Functions
            retries the task per its Retry policy).
        InvalidRequest: The event carries no usable task token.
    """
    import os

    import boto3

    from completer.errors import ConfigurationError
    from completer.secrets import load_secret_environment
    from completer.settings import load_settings

    load_secret_environment()
    secret = load_settings().link_secret
    url, topic = os.environ.get(APPROVAL_FUNCTION_URL), os.environ.get(APPROVAL_TOPIC_ARN)
    if secret is None or not url or not topic:
        raise ConfigurationError(
            f"the approval notifier needs COMPLETER_LINK_SECRET, {APPROVAL_FUNCTION_URL} "
            f"and {APPROVAL_TOPIC_ARN}."
        )
    token = event.get("task_token")
    if not isinstance(token, str) or not token:
        raise InvalidRequest('the event has no task_token: pass "task_token.$": "$$.Task.Token".')
    ttl = int(event.get("ttl_seconds") or 3 * 24 * 3600)
    links = approval_links(
        url,
        secret=secret.get_secret_value(),
        task_token=token,
        approve_result=event.get("approve_result"),
        ttl_seconds=ttl,
    )
    subject = str(event.get("subject") or "Approval needed")
    description = str(event.get("description") or "")
    message = (
        f"{description}\n\nApprove: {links.approve}\n\nReject: {links.reject}\n\n"
        f"The links expire in {ttl // 3600} hours; each asks for confirmation before it acts."
    )
    ascii_subject = subject.encode("ascii", "replace").decode("ascii")
    boto3.client("sns").publish(
        TopicArn=topic, Subject=ascii_subject[:_SNS_SUBJECT_MAX], Message=message.strip()
    )
    return {"expires_at": links.expires_at}
