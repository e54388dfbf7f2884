"""The ``completer`` command line: complete, fail, heartbeat or cancel an activity.

Same settings (environment) and error codes as the functions. The exit status says the
outcome: 0 success, then one status per error code (see ``EXIT_CODES``); the message
goes to stderr, the outcome JSON to stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from completer.errors import CompleterError, ConfigurationError, InvalidRequest
from completer.models import CompletionRequest, parse_json

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


def _read_value(value: str | None, path: str | None, *, what: str) -> Any:
    if value is not None and path is not None:
        raise click.UsageError(f"give the {what} as an argument or with a file, not both.")
    try:
        if path is None:
            return None if value is None else parse_json(value, what=f"the {what}")
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as handle:
                raw = handle.read()
        return parse_json(raw, what=f"the {what} file") if raw.strip() else None
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message) from exc
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}.") from exc


def _target_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--token",
                "-t",
                envvar="COMPLETER_TASK_TOKEN",
                help="Task token "
                "(base64 for Temporal/Cadence; as issued for Step Functions). "
                "Also read from $COMPLETER_TASK_TOKEN, which keeps it out of shell history.",
            ),
            click.option("--workflow-id", "-w", help="Workflow ID (instead of a token)."),
            click.option("--activity-id", "-a", help="Activity ID (with --workflow-id)."),
            click.option("--run-id", "-r", help="Run ID (optional, with --workflow-id)."),
        ]
    ):
        func = option(func)
    return func


def _run(fields: dict[str, Any]) -> None:
    from completer.client import CompletionClient
    from completer.settings import load_settings

    try:
        settings = load_settings()
        request = CompletionRequest.build({k: v for k, v in fields.items() if v is not None})
        client = CompletionClient.create(settings)
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CODES["configuration"])
    except CompleterError as exc:
        click.echo(f"error [{exc.code}]: {exc.message}", err=True)
        sys.exit(EXIT_CODES.get(exc.code, 1))
    import asyncio

    async def go() -> dict[str, Any]:
        async with client:
            return (await client.execute(request)).to_dict()

    try:
        outcome = asyncio.run(go())
    except CompleterError as exc:
        click.echo(f"error [{exc.code}]: {exc.message}", err=True)
        sys.exit(EXIT_CODES.get(exc.code, 1))
    click.echo(json.dumps(outcome))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="activity-completer")
def main() -> None:
    """Complete, fail, heartbeat or cancel a waiting activity in Temporal, Cadence or
    Step Functions (COMPLETER_BACKEND), by task token or by workflow + activity ID."""


@main.command()
@_target_options
@click.option("--result", help="The result as JSON (e.g. '{\"approved\": true}').")
@click.option(
    "--result-file",
    type=click.Path(allow_dash=True),
    help="Read the result JSON from a file, or - for stdin.",
)
def complete(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    result: str | None,
    result_file: str | None,
) -> None:
    """Complete the activity with a result (null when none is given)."""
    _run(
        {
            "action": "complete",
            "task_token": token,
            "workflow_id": workflow_id,
            "activity_id": activity_id,
            "run_id": run_id,
            "result": _read_value(result, result_file, what="result"),
        }
    )


@main.command()
@_target_options
@click.option("--message", "-m", required=True, help="Why the activity failed.")
@click.option(
    "--type",
    "error_type",
    help="Error type (Temporal ApplicationError type, Cadence reason, Step Functions error).",
)
@click.option("--details", help="Error details as JSON.")
@click.option("--non-retryable", is_flag=True, help="Do not retry the activity.")
def fail(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    message: str,
    error_type: str | None,
    details: str | None,
    non_retryable: bool,
) -> None:
    """Fail the activity with an error."""
    error = {
        "message": message,
        "type": error_type,
        "non_retryable": non_retryable,
        "details": _read_value(details, None, what="details"),
    }
    _run(
        {
            "action": "fail",
            "task_token": token,
            "workflow_id": workflow_id,
            "activity_id": activity_id,
            "run_id": run_id,
            "error": {k: v for k, v in error.items() if v is not None},
        }
    )


@main.command()
@_target_options
@click.option("--details", help="Heartbeat details as JSON.")
def heartbeat(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    details: str | None,
) -> None:
    """Record a heartbeat; prints whether cancellation was requested."""
    _run(
        {
            "action": "heartbeat",
            "task_token": token,
            "workflow_id": workflow_id,
            "activity_id": activity_id,
            "run_id": run_id,
            "details": _read_value(details, None, what="details"),
        }
    )


@main.command()
@_target_options
@click.option("--details", help="Cancellation details as JSON.")
def cancel(
    token: str | None,
    workflow_id: str | None,
    activity_id: str | None,
    run_id: str | None,
    details: str | None,
) -> None:
    """Report the activity cancelled (only after the workflow requested cancellation)."""
    _run(
        {
            "action": "cancel",
            "task_token": token,
            "workflow_id": workflow_id,
            "activity_id": activity_id,
            "run_id": run_id,
            "details": _read_value(details, None, what="details"),
        }
    )


if __name__ == "__main__":
    main()
