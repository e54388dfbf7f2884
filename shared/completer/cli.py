"""The ``completer`` command line: complete, fail, heartbeat or cancel an activity.

Same settings (environment) and error codes as the functions. The outcome JSON goes to
stdout, a message to stderr, and the exit status says the outcome: 0 for success, one
status per error code (:data:`EXIT_CODES`). Helpers for the activity side (``link``,
``presign``, ``token``) print JSON too. Imports are deferred to the command that needs
them, so ``completer --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from collections.abc import Callable

    from completer.activity import ApprovalLinks
    from completer.errors import CompleterError
    from completer.settings import Settings

__all__ = ["EXIT_CODES", "main"]

EXIT_CODES: dict[str, int] = {
    "invalid_request": 2,
    "payload_too_large": 3,
    "activity_not_found": 4,
    "conflict": 5,
    "engine_unavailable": 6,
    "engine_timeout": 7,
    "internal": 8,
    "configuration": 9,
}
"""Exit status per error code; 2 is also click's status for a usage error."""

TOKEN_ENV = "COMPLETER_TASK_TOKEN"  # noqa: S105 - a variable name, not a secret

_EXIT_TABLE = "\n".join(f"  {status}  {code}" for code, status in EXIT_CODES.items())

_MAIN_EPILOG = f"""\b
Examples:
  export {TOKEN_ENV}='CiQ2N...'        # keeps the token out of shell history
  completer complete '{{"approved": true}}'
  completer complete --result-file result.json
  some-tool | completer complete --result-file -
  completer fail -m "rejected by ana" --type Rejected --non-retryable
  completer heartbeat -w order-42 -a approve '{{"progress": 50}}'
  completer cancel -w order-42 -a approve

\b
Settings come from the environment, as for the functions: COMPLETER_BACKEND
(temporal, cadence, stepfunctions), TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, CADENCE_ADDRESS, CADENCE_DOMAIN, AWS_REGION, ...

\b
The outcome JSON goes to stdout, messages to stderr. Exit status:
  0  success
{_EXIT_TABLE}
"""


# --- output and errors ------------------------------------------------------------------


def _report(error: CompleterError) -> int:
    click.echo(f"error [{error.code}]: {error.message}", err=True)
    return EXIT_CODES.get(error.code, 1)


def _report_configuration(message: str) -> int:
    click.echo(f"error [configuration]: {message}", err=True)
    return EXIT_CODES["configuration"]


def _fail_with(error: CompleterError) -> NoReturn:
    sys.exit(_report(error))


def _fail_configuration(message: str) -> NoReturn:
    sys.exit(_report_configuration(message))


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


# --- reading values ---------------------------------------------------------------------


def _read_json(value: str | None, path: str | None, *, what: str, flag: str) -> Any:
    """The JSON given inline or in a file (``-`` is stdin); None when neither is given."""
    from completer.errors import InvalidRequest
    from completer.models import parse_json

    if value is not None and path is not None:
        raise click.UsageError(f"give the {what} as an argument or with {flag}, not both.")
    try:
        if path is None:
            return None if value is None else parse_json(value, what=f"the {what}")
        raw = _read_bytes(path)
        # An empty file or stdin is "no value": null, like an empty Pub/Sub message.
        return parse_json(raw, what=f"the {what} in {_shown(path)}") if raw.strip() else None
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message) from exc


def _read_bytes(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}.") from exc


def _shown(path: str) -> str:
    return "stdin" if path == "-" else path


def _token_from(value: str | None) -> str:
    """A token argument: the value, ``-`` for stdin, else $COMPLETER_TASK_TOKEN."""
    if value == "-":
        value = sys.stdin.read()
    if value is None:
        raise click.UsageError(f"give the token as an argument, - for stdin, or in ${TOKEN_ENV}.")
    return value.strip()


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Seconds from ``3600``, ``90m``, ``12h`` or ``7d`` (an option callback)."""
    if value is None:
        return None
    match = _DURATION.match(value)
    if match is None or int(match.group(1)) <= 0:
        raise click.BadParameter(f"{value!r} is not a duration such as 3600, 90m, 12h or 7d.")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# --- naming the activity ----------------------------------------------------------------


def _target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--token",
            "-t",
            metavar="TOKEN",
            envvar=TOKEN_ENV,
            help=f"Task token (base64 for Temporal and Cadence, as issued for Step "
            f"Functions). Defaults to ${TOKEN_ENV}, which keeps it out of shell history "
            "and process lists.",
        ),
        click.option("--workflow-id", "-w", metavar="ID", help="Workflow ID, instead of a token."),
        click.option("--activity-id", "-a", metavar="ID", help="Activity ID (with --workflow-id)."),
        click.option("--run-id", "-r", metavar="ID", help="Run ID (optional, with --workflow-id)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _target(
    token: str | None, workflow_id: str | None, activity_id: str | None, run_id: str | None
) -> dict[str, str]:
    ctx = click.get_current_context()
    from_env = ctx.get_parameter_source("token") is ParameterSource.ENVIRONMENT
    if from_env and (workflow_id or activity_id or run_id):
        token = None  # IDs on the command line win over a token left in the environment
    fields = {
        "task_token": token,
        "workflow_id": workflow_id,
        "activity_id": activity_id,
        "run_id": run_id,
    }
    return {name: value for name, value in fields.items() if value is not None}


# --- completing -------------------------------------------------------------------------


def _run(fields: dict[str, Any]) -> None:
    import asyncio

    from completer.client import CompletionClient
    from completer.errors import CompleterError, ConfigurationError
    from completer.models import CompletionRequest
    from completer.settings import load_settings

    try:
        settings = load_settings()
        request = CompletionRequest.build(fields)
        client = CompletionClient.create(settings)
    except ConfigurationError as exc:
        _fail_configuration(str(exc))
    except CompleterError as exc:
        _fail_with(exc)

    async def go() -> dict[str, Any]:
        # execute() checks the request (token encoding, payload size) before connecting.
        try:
            return (await client.execute(request)).to_dict()
        finally:
            await client.close()

    status = 0
    try:
        _print_json(asyncio.run(go()))
    except CompleterError as exc:
        status = _report(exc)
    except ConfigurationError as exc:
        status = _report_configuration(str(exc))
    _exit_now(status)


def _exit_now(status: int) -> NoReturn:
    # temporalio's Rust core threads can call into Python while the interpreter finalizes
    # and abort it (SIGABRT/SIGSEGV after a failed connect, temporalio 1.35); the answer is
    # printed and the client closed, so leave without finalizing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_MAIN_EPILOG,
)
@click.version_option(package_name="activity-completer")
def main() -> None:
    """Complete, fail, heartbeat or cancel a waiting activity in Temporal, Cadence or
    Step Functions, by task token or by workflow ID + activity ID.

    Also hands tokens out for the activity side: approval links (link), presigned
    uploads (presign), token conversion (token).
    """


@main.command(
    epilog=f"""\b
Examples:
  completer complete '{{"approved": true}}'          # token from ${TOKEN_ENV}
  completer complete -w order-42 -a approve --result-file result.json
  jq .result report.json | completer complete --result-file -
"""
)
@_target_options
@click.argument("result", required=False, metavar="[RESULT]")
@click.option(
    "--result-file",
    "-f",
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Read the result JSON from FILE, or from stdin with -. Empty means null.",
)
@click.option("--result", "result_option", hidden=True, help="Same as RESULT.")
def complete(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    result: str | None,
    result_file: str | None,
    result_option: str | None,
) -> None:
    """Complete the activity with RESULT, a JSON value (null when none is given).

    The result must fit the activity's declared return type, or the workflow task fails.
    """
    if result is not None and result_option is not None:
        raise click.UsageError("give the result once.")
    _run(
        {
            "action": "complete",
            **_target(token, workflow_id, activity_id, run_id),
            "result": _read_json(
                result if result is not None else result_option,
                result_file,
                what="result",
                flag="--result-file",
            ),
        }
    )


@main.command(
    epilog="""\b
Examples:
  completer fail -m "rejected by ana" --type Rejected --non-retryable
  completer fail -w order-42 -a charge -m "card declined" --details '{"code": 51}'
"""
)
@_target_options
@click.option("--message", "-m", required=True, help="Why the activity failed.")
@click.option(
    "--type",
    "error_type",
    metavar="TYPE",
    help="Error type: Temporal ApplicationError type, Cadence reason, Step Functions error.",
)
@click.option("--details", metavar="JSON", help="Error details as JSON.")
@click.option(
    "--details-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Read the details JSON from FILE, or from stdin with -.",
)
@click.option(
    "--non-retryable", is_flag=True, help="Do not retry the activity, whatever its retry policy."
)
def fail(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    message: str,
    error_type: str | None,
    details: str | None,
    details_file: str | None,
    non_retryable: bool,
) -> None:
    """Fail the activity with an error."""
    error = {
        "message": message,
        "type": error_type,
        "non_retryable": non_retryable,
        "details": _read_json(details, details_file, what="details", flag="--details-file"),
    }
    _run(
        {
            "action": "fail",
            **_target(token, workflow_id, activity_id, run_id),
            "error": {name: value for name, value in error.items() if value is not None},
        }
    )


_DETAILS_FILE = click.option(
    "--details-file",
    "-f",
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Read the details JSON from FILE, or from stdin with -.",
)


@main.command(
    epilog="""\b
Prints {"status": "heartbeat_recorded", "cancel_requested": false}; when
cancel_requested is true, the workflow asked to cancel: finish with `completer cancel`.
"""
)
@_target_options
@click.argument("details", required=False, metavar="[DETAILS]")
@_DETAILS_FILE
def heartbeat(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    details: str | None,
    details_file: str | None,
) -> None:
    """Record a heartbeat with optional DETAILS (JSON); prints whether cancellation is asked."""
    _run(
        {
            "action": "heartbeat",
            **_target(token, workflow_id, activity_id, run_id),
            "details": _read_json(details, details_file, what="details", flag="--details-file"),
        }
    )


@main.command(
    epilog="""\b
Before the workflow requests cancellation the engine refuses this: exit status 5
(conflict) and the activity keeps waiting.
"""
)
@_target_options
@click.argument("details", required=False, metavar="[DETAILS]")
@_DETAILS_FILE
def cancel(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    details: str | None,
    details_file: str | None,
) -> None:
    """Report the activity cancelled, after the workflow requested cancellation."""
    _run(
        {
            "action": "cancel",
            **_target(token, workflow_id, activity_id, run_id),
            "details": _read_json(details, details_file, what="details", flag="--details-file"),
        }
    )


# --- the activity side ------------------------------------------------------------------


@main.command(
    epilog="""\b
Example:
  export COMPLETER_LINK_SECRET=...   # the HTTP function's, 32+ characters
  completer link --url https://REGION-PROJECT.cloudfunctions.net/complete \\
      -w order-42 -a approve --ttl 3d \\
      --title "Refund 120.00 EUR for order 42" --description "Requested by Ana (support)."
"""
)
@_target_options
@click.option("--url", required=True, metavar="URL", help="The HTTP function's URL.")
@click.option(
    "--title",
    metavar="TEXT",
    help="What the person decides on, shown above the choice (plain text, at most 200 characters).",
)
@click.option(
    "--description",
    metavar="TEXT",
    help="More detail shown under the title (plain text, at most 2000 characters).",
)
@click.option(
    "--approve-result",
    metavar="JSON",
    help='Result the approve link completes with. Default: {"approved": true}.',
)
@click.option(
    "--reject-message", default="rejected", show_default=True, help="Error message of reject."
)
@click.option("--reject-type", default="Rejected", show_default=True, help="Error type of reject.")
@click.option(
    "--reject-retryable",
    is_flag=True,
    help="Let the activity's retry policy retry after a reject (default: non-retryable).",
)
@click.option(
    "--ttl",
    callback=_duration,
    metavar="DURATION",
    default="7d",
    show_default=True,
    help="How long the links work: seconds, or with m, h, d.",
)
def link(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    url: str,
    title: str | None,
    description: str | None,
    approve_result: str | None,
    reject_message: str,
    reject_type: str,
    reject_retryable: bool,
    ttl: int,
) -> None:
    """Print signed approve/reject links for a waiting activity.

    The links work with the HTTP function that has the same COMPLETER_LINK_SECRET
    (read from the environment here). A GET shows a confirmation page; only its POST
    completes. The token cannot be read from a link. Links by IDs seal the workflow's run
    ID: without --run-id it is looked up on Temporal (TEMPORAL_* settings).
    """
    from completer.errors import CompleterError, ConfigurationError
    from completer.settings import load_settings

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        _fail_configuration(str(exc))
    secret = settings.link_secret
    if secret is None:
        _fail_configuration("COMPLETER_LINK_SECRET is not set: links are signed with it.")
    target: dict[str, Any] = _target(token, workflow_id, activity_id, run_id)
    if "workflow_id" in target and "run_id" not in target and settings.backend != "temporal":
        _fail_configuration(
            f"links by workflow and activity ID need --run-id with {settings.backend}: "
            "the run ID is looked up on Temporal only."
            if settings.backend == "cadence"
            else f"{settings.backend} names activities by task token only: give --token."
        )
    options: dict[str, Any] = {
        **target,
        "secret": secret.get_secret_value(),
        "approve_result": _read_json(approve_result, None, what="approve result", flag=""),
        "reject_error": {
            "message": reject_message,
            "type": reject_type,
            "non_retryable": not reject_retryable,
        },
        "ttl_seconds": ttl,
        "title": title,
        "description": description,
    }
    import asyncio

    try:
        links = asyncio.run(_approval_links(url, settings, options))
    except CompleterError as exc:
        _fail_with(exc)
    _print_json(links.to_dict())


async def _approval_links(url: str, settings: Settings, options: dict[str, Any]) -> ApprovalLinks:
    """The links; a Temporal client looks the run ID up when IDs come without one."""
    from completer.activity import approval_links, approval_links_async

    if "workflow_id" not in options or "run_id" in options:
        return approval_links(url, **options)
    from completer.backends.temporal import TemporalBackend
    from completer.errors import CompleterError, EngineUnavailable

    backend = TemporalBackend(settings)
    try:
        await backend.connect()
        return await approval_links_async(url, client=backend.client, **options)
    except CompleterError:
        raise
    except Exception as exc:
        raise EngineUnavailable(
            f"cannot look the run ID up on Temporal ({type(exc).__name__}); give --run-id."
        ) from exc
    finally:
        await backend.close()


@main.command(
    name="callback-url",
    epilog="""\b
Examples:
  export COMPLETER_LINK_SECRET=...   # the HTTP function's, 32+ characters
  completer callback-url --url https://REGION-PROJECT.cloudfunctions.net/complete \\
      -w order-42 -a await-payment --ttl 1d \\
      --select data.object --fail-when "type == 'payment_intent.payment_failed'"
""",
)
@_target_options
@click.option("--url", required=True, metavar="URL", help="The HTTP function's URL.")
@click.option(
    "--ttl",
    callback=_duration,
    metavar="DURATION",
    default="7d",
    show_default=True,
    help="How long the URL works: seconds, or with m, h, d.",
)
@click.option(
    "--select",
    metavar="EXPR",
    help="JMESPath expression picking the result out of the POSTed body (default: all of it).",
)
@click.option(
    "--fail-when",
    metavar="EXPR",
    help="JMESPath expression; when truthy on the body, the activity fails (CallbackFailed).",
)
def callback_url(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    url: str,
    ttl: int,
    select: str | None,
    fail_when: str | None,
) -> None:
    """Print a callback URL: the body a partner POSTs to it completes the activity.

    Sealed with COMPLETER_LINK_SECRET (read from the environment here), like links. With
    -w -a and no -r, the workflow's current run ID is looked up (Temporal) and sealed.
    Expressions are checked now: a bad one is refused here, never at callback time.
    """
    import asyncio

    from completer.activity import callback_url_async
    from completer.errors import CompleterError, ConfigurationError
    from completer.settings import load_settings

    try:
        secret = load_settings().link_secret
    except ConfigurationError as exc:
        _fail_configuration(str(exc))
    if secret is None:
        _fail_configuration("COMPLETER_LINK_SECRET is not set: callback URLs are sealed with it.")
    target: dict[str, Any] = _target(token, workflow_id, activity_id, run_id)

    async def go() -> str:
        client = None
        if "workflow_id" in target and "run_id" not in target:
            client = await _temporal_client()
        return await callback_url_async(
            url,
            secret=secret.get_secret_value(),
            **target,
            ttl_seconds=ttl,
            select=select,
            fail_when=fail_when,
            client=client,
        )

    try:
        printed = asyncio.run(go())
    except CompleterError as exc:
        _exit_now(_report(exc))
    except ConfigurationError as exc:
        _exit_now(_report_configuration(str(exc)))
    _print_json({"url": printed})
    _exit_now(0)


async def _temporal_client() -> Any:
    from temporalio.client import Client

    from completer.backends.temporal import load_connect_config
    from completer.errors import EngineUnavailable

    try:
        return await Client.connect(**load_connect_config())
    except RuntimeError as exc:
        raise EngineUnavailable(
            "cannot reach Temporal to look the workflow's run ID up; give -r RUN_ID or retry."
        ) from exc


@main.command(
    epilog="""\b
Examples:
  export COMPLETER_LEDGER=dynamodb://completer-ledger   # the functions' shared ledger
  completer register ORDER-1042 -w order-1042 -a await-file --ttl 1d
  completer register invoice-7 -t "$TASK_TOKEN"
""",
)
@_target_options
@click.argument("key", metavar="KEY")
@click.option(
    "--ttl",
    callback=_duration,
    metavar="DURATION",
    default=None,
    help="How long the key names the activity (default: COMPLETER_LEDGER_TTL_SECONDS).",
)
def register(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    key: str,
    ttl: int | None,
) -> None:
    """Let a correlation KEY name a waiting activity in the shared ledger.

    A request naming KEY (correlation_key in HTTP or Pub/Sub, correlation-key object
    metadata, or an object key matching COMPLETER_S3_KEY_PATTERN / COMPLETER_GCS_KEY_PATTERN)
    then completes the activity. When such a request arrived first, it was kept: it is
    carried out now and its outcome printed; otherwise prints {"registered": KEY}.
    """
    import asyncio

    from completer.activity import register_async
    from completer.errors import CompleterError, ConfigurationError
    from completer.settings import load_settings

    target = _target(token, workflow_id, activity_id, run_id)
    if "task_token" not in target and not ("workflow_id" in target and "activity_id" in target):
        raise click.UsageError("name the activity: -t TOKEN, or -w ID -a ID [-r ID].")
    try:
        settings = load_settings()
        outcome = asyncio.run(
            register_async(
                key,
                task_token=target.get("task_token"),
                workflow_id=target.get("workflow_id"),
                activity_id=target.get("activity_id"),
                run_id=target.get("run_id"),
                ttl_seconds=ttl,
                settings=settings,
            )
        )
    except ConfigurationError as exc:
        _exit_now(_report_configuration(str(exc)))
    except CompleterError as exc:
        _exit_now(_report(exc))
    _print_json({"registered": key} if outcome is None else outcome.to_dict())
    _exit_now(0)


@main.command(
    epilog="""\b
Example (S3 settings from the AWS environment: AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_S3):
  completer presign --bucket partner-drop --key orders/42.json \\
      --content-type application/json -w order-42 -a upload

\b
Cloud Storage (credentials from Application Default Credentials: a service-account key in
GOOGLE_APPLICATION_CREDENTIALS signs locally; otherwise --service-account-email signs
through the IAM signBlob API):
  completer presign --gcs --bucket partner-drop --key orders/42.json \\
      --content-type application/json -w order-42 -a upload
"""
)
@_target_options
@click.option(
    "--gcs",
    is_flag=True,
    help="A V4 signed Cloud Storage URL (x-goog-meta-* headers) instead of S3.",
)
@click.option(
    "--service-account-email",
    metavar="EMAIL",
    help="With --gcs: sign through IAM signBlob as this account (needs Token Creator).",
)
@click.option(
    "--bucket", required=True, help="The bucket the S3 or Cloud Storage function listens to."
)
@click.option("--key", required=True, help="Object key to upload to.")
@click.option("--content-type", help="Require this Content-Type (e.g. application/json).")
@click.option(
    "--action",
    type=click.Choice(["complete", "fail", "heartbeat", "cancel"]),
    help="What the upload does (default: complete with the object).",
)
@click.option(
    "--expires-in",
    callback=_duration,
    metavar="DURATION",
    default="1h",
    show_default=True,
    help="How long the URL works (at most 7d).",
)
@click.option(
    "--file",
    "upload_file",
    default="result.json",
    show_default=True,
    help="File name used in the printed curl line.",
)
def presign(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    gcs: bool,
    service_account_email: str | None,
    bucket: str,
    key: str,
    content_type: str | None,
    action: str | None,
    expires_in: int,
    upload_file: str,
) -> None:
    """Print a presigned S3 (or, with --gcs, Cloud Storage) PUT URL for a partner's upload.

    The URL requires the x-amz-meta-task-token header (x-goog-meta-task-token with --gcs),
    or the ID headers: they are part of the signature, so every object that lands names its
    activity. Prints url, method, headers, expires_at and a ready-to-paste curl line.
    """
    from completer.activity import gcs_signed_upload, presigned_upload
    from completer.errors import CompleterError

    if service_account_email is not None and not gcs:
        raise click.UsageError("--service-account-email goes with --gcs.")
    target = _target(token, workflow_id, activity_id, run_id)
    try:
        if gcs:
            client, access_token = _gcs_client(service_account_email)
            upload: Any = gcs_signed_upload(
                client,
                bucket=bucket,
                name=key,
                **target,
                action=action,
                expires_in=expires_in,
                content_type=content_type,
                service_account_email=service_account_email,
                access_token=access_token,
            )
        else:
            upload = presigned_upload(
                _s3_client(),
                bucket=bucket,
                key=key,
                **target,
                action=action,
                expires_in=expires_in,
                content_type=content_type,
            )
    except CompleterError as exc:
        _fail_with(exc)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    _print_json({**upload.to_dict(), "curl": upload.curl(upload_file)})


def _s3_client() -> Any:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session()
        if session.get_credentials() is None:
            _fail_configuration(
                "no AWS credentials found (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...): "
                "a presigned URL is signed with them."
            )
        return session.client("s3", config=Config(signature_version="s3v4"))
    except BotoCoreError as exc:
        _fail_configuration(f"cannot build the S3 client: {exc}")


def _gcs_client(service_account_email: str | None) -> tuple[Any, str | None]:
    from google.auth.exceptions import GoogleAuthError

    try:
        from google.cloud.storage import Client

        client = Client()
        if service_account_email is None:
            return client, None
        from google.auth.transport.requests import Request

        credentials = client._credentials
        credentials.refresh(Request())
        return client, str(credentials.token)
    except (GoogleAuthError, OSError) as exc:
        _fail_configuration(
            f"cannot build the Cloud Storage client ({type(exc).__name__}): set "
            "GOOGLE_APPLICATION_CREDENTIALS or run gcloud auth application-default login."
        )


@main.group()
def token() -> None:
    """Convert and fingerprint task tokens.

    TOKEN arguments default to $COMPLETER_TASK_TOKEN; - reads stdin.
    """


@token.command()
@click.argument("source", required=False, default="-", metavar="[FILE]")
@click.option("--standard", is_flag=True, help="Standard base64 with padding, not URL-safe.")
def encode(source: str, standard: bool) -> None:
    """Encode a binary task token (FILE, or stdin) as base64 text."""
    from completer.tokens import MAX_TOKEN_BYTES, encode_token

    raw = _read_bytes(source)
    if not raw or len(raw) > MAX_TOKEN_BYTES:
        raise click.BadParameter(f"a task token is 1 to {MAX_TOKEN_BYTES} bytes; got {len(raw)}.")
    click.echo(encode_token(raw, urlsafe=not standard))


@token.command()
@click.argument("value", required=False, envvar=TOKEN_ENV, metavar="[TOKEN]")
@click.option("--hex", "as_hex", is_flag=True, help="Print hex instead of raw bytes.")
def decode(value: str | None, as_hex: bool) -> None:
    """Decode a base64 task token (either alphabet) to its bytes, checking it."""
    from completer.errors import InvalidRequest
    from completer.tokens import decode_token

    try:
        raw = decode_token(_token_from(value))
    except InvalidRequest as exc:
        _fail_with(exc)
    if as_hex:
        click.echo(raw.hex())
    else:
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()


@token.command()
@click.argument("value", required=False, envvar=TOKEN_ENV, metavar="[TOKEN]")
def fingerprint(value: str | None) -> None:
    """Print the fingerprints the logs show for TOKEN (to find it in the logs).

    The logs fingerprint the token text as the trigger received it; this prints it for
    the text as given and for both base64 alphabets.
    """
    from completer.errors import InvalidRequest
    from completer.tokens import decode_token, encode_token, token_fingerprint

    text = _token_from(value)
    fingerprints = {"as_given": f"token:{token_fingerprint(text)}"}
    try:
        raw = decode_token(text)
    except InvalidRequest:
        pass  # a Step Functions token is not base64: only its text fingerprint applies
    else:
        for name, urlsafe in (("standard", False), ("urlsafe", True)):
            fingerprints[name] = f"token:{token_fingerprint(encode_token(raw, urlsafe=urlsafe))}"
    _print_json(fingerprints)


# --- the ledger -------------------------------------------------------------------------


@main.group(
    epilog="""\b
Examples:
  export COMPLETER_LEDGER=dynamodb://completer-ledger   # or firestore://(default)/completer-ledger
  completer ledger show -w order-42 -a approve
  completer ledger show -k invoice-7
  AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:5000 completer ledger init
"""
)
def ledger() -> None:
    """What the completion ledger (COMPLETER_LEDGER) holds, and its local set-up."""


def _shared_ledger() -> Any:
    from completer.errors import ConfigurationError
    from completer.ledger import create_ledger
    from completer.settings import load_settings

    try:
        settings = load_settings()
        if settings.ledger is None:
            _fail_configuration(
                "COMPLETER_LEDGER is not set: without it each function instance keeps its own "
                "ledger in memory, which no command can read."
            )
        return create_ledger(settings)
    except ConfigurationError as exc:
        _fail_configuration(str(exc))


@ledger.command(name="show")
@_target_options
@click.option("--key", "-k", "correlation_key", metavar="KEY", help="A correlation key.")
def ledger_show(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    correlation_key: str | None,
) -> None:
    """Print what the ledger holds for an activity (-t, or -w -a [-r]) or a key (-k).

    When it was done, through which trigger and source (webhook id, message id, object
    URI and version), and the outcome; tokens appear only as fingerprints. Prints null
    when the ledger holds nothing.
    """
    import asyncio

    from completer.errors import CompleterError

    target = _target(token, workflow_id, activity_id, run_id)
    if correlation_key is not None:
        if workflow_id or activity_id or run_id:
            raise click.UsageError("give -k or the activity, not both.")
    elif "task_token" not in target and not ("workflow_id" in target and "activity_id" in target):
        raise click.UsageError("name the activity: -t TOKEN, or -w ID -a ID, or -k KEY.")
    the_ledger = _shared_ledger()

    async def go() -> Any:
        try:
            if correlation_key is not None:
                registration = await the_ledger.registry.lookup(
                    correlation_key, include_consumed=True
                )
                buffered = await the_ledger.registry.peek_buffered(correlation_key)
                if registration is None and buffered is None:
                    return None
                return {
                    "correlation_key": correlation_key,
                    "registration": registration.public() if registration else None,
                    "buffered": (
                        {
                            "received_at": buffered.received_at,
                            "origin": buffered.origin,
                            "expires_at": buffered.expires_at,
                        }
                        if buffered
                        else None
                    ),
                }
            return await the_ledger.show(**target)
        finally:
            await the_ledger.close()

    try:
        _print_json(asyncio.run(go()))
    except CompleterError as exc:
        _exit_now(_report(exc))
    _exit_now(0)


@ledger.command(name="init")
def ledger_init() -> None:
    """Create the DynamoDB table COMPLETER_LEDGER names, for local use (Terraform does it
    in a deployment): on-demand, key id, TTL attribute expiration. A Firestore collection
    needs no set-up."""
    from completer.errors import ConfigurationError
    from completer.ledger import parse_ledger_url
    from completer.settings import load_settings

    try:
        location = parse_ledger_url(load_settings().ledger)
    except ConfigurationError as exc:
        _fail_configuration(str(exc))
    if location.kind != "dynamodb":
        what = "is not set" if location.kind == "memory" else "is a Firestore collection"
        click.echo(f"COMPLETER_LEDGER {what}: nothing to create.", err=True)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    from completer.ledger.dynamodb import create_table

    try:
        created = create_table(location.table)
    except (BotoCoreError, ClientError) as exc:
        _fail_configuration(f"cannot create the table {location.table}: {exc}")
    _print_json({"table": location.table, "created": created})


# --- the local stack --------------------------------------------------------------------


def _port_options(func: Callable[..., Any]) -> Callable[..., Any]:
    from completer.dev.ports import DEFAULT_PORTS

    helps = {
        "temporal": "Temporal gRPC",
        "ui": "Temporal web UI",
        "http": "HTTP function",
        "pubsub": "Pub/Sub function",
        "emulator": "Pub/Sub emulator",
        "s3": "moto (S3, SQS and the ledger's DynamoDB)",
        "gcs": "Cloud Storage function",
        "storage": "Cloud Storage emulator",
        "firestore": "Firestore emulator (the ledger)",
    }
    for name in reversed(list(DEFAULT_PORTS)):
        func = click.option(
            f"--{name}-port",
            type=click.IntRange(1, 65535),
            envvar=f"COMPLETER_DEV_{name.upper()}_PORT",
            show_envvar=True,
            metavar="PORT",
            help=f"{helps[name]} port; default {DEFAULT_PORTS[name]}, or any free one if taken.",
        )(func)
    return func


def _ports(options: dict[str, int | None]) -> Any:
    from completer.dev.ports import Ports

    return Ports(**{name.removesuffix("_port"): value for name, value in options.items()})


@main.command(
    epilog="""\b
Runs until Ctrl-C (or SIGTERM), then stops every process it started. Logs of each
service go to a temporary directory it prints.
"""
)
@_port_options
def dev(**ports: int | None) -> None:
    """Run the whole system on 127.0.0.1 (what `make run` runs).

    A Temporal dev server with its web UI, the HTTP function (completion links on), the
    Pub/Sub function behind the Pub/Sub emulator, the S3 function behind moto, the Cloud
    Storage function behind gcp-storage-emulator (a poller plays Eventarc's part), and a
    worker whose sample workflows wait. Prints ready-to-paste commands that complete a
    waiting activity through each trigger. Without the Pub/Sub emulator (gcloud + Java)
    it says so and runs the rest.
    """
    import asyncio

    from completer.dev.checkout import require_checkout

    require_checkout()
    from completer.dev.run import run_dev

    sys.exit(asyncio.run(run_dev(_ports(ports))))


@main.command(
    epilog="""\b
Exit status 0 only when every workflow saw its expected result. Under CI=true a missing
Pub/Sub emulator fails the run; otherwise its case is skipped with the reason.
"""
)
@_port_options
def demo(**ports: int | None) -> None:
    """Run the stack end to end once (what `make demo` runs) and print what happened.

    Completes one workflow through each trigger (HTTP JSON, an approval link's GET and
    POST, Pub/Sub, an S3 upload, a Cloud Storage upload), fails one with a reject link, and
    prints a table.
    """
    import asyncio

    from completer.dev.checkout import require_checkout

    require_checkout()
    from completer.dev.demo import run_demo

    sys.exit(asyncio.run(run_demo(_ports(ports))))


if __name__ == "__main__":
    main()
