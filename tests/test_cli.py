"""The ``completer`` console script, run as a real process against a real Temporal dev server.

Every run must end on its own with the expected status (never hang, never abort at exit:
seen with temporalio 1.35), and never print the raw task token in its output.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError as TemporalActivityError
from temporalio.exceptions import ApplicationError

from completer.cli import EXIT_CODES
from completer.client import CompletionClient
from completer.links import open_link
from completer.settings import Settings
from completer.tokens import decode_token, encode_token, token_fingerprint
from tests.support.moto_server import aws_env, moto_server, s3_client
from tests.support.services import free_port, venv_tool
from tests.support.temporal import WaitingActivity

COMPLETER = venv_tool("completer")
LINK_SECRET = "k" * 48


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    raw_stdout: bytes

    def json(self) -> Any:
        return json.loads(self.stdout)


async def completer(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (),
    timeout: float = 60,
) -> Run:
    """Run the console script in a subprocess (off the event loop the worker runs on)."""
    assert COMPLETER is not None, "the completer console script is not installed in .venv"
    inherited = {k: v for k, v in os.environ.items() if k != "COMPLETER_TASK_TOKEN"}
    full_env = {**inherited, "COMPLETER_RPC_TIMEOUT_SECONDS": "5", **(env or {})}
    started = time.monotonic()
    done = await asyncio.to_thread(
        subprocess.run,
        [COMPLETER, *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=full_env,
        timeout=timeout,
    )
    run = Run(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(),
        time.monotonic() - started,
        done.stdout,
    )
    for secret in secrets:
        assert secret not in run.stdout, "the raw token was printed on stdout"
        assert secret not in run.stderr, "the raw token was printed on stderr"
    return run


def secrets_of(waiting: WaitingActivity) -> tuple[str, ...]:
    return (waiting.token_b64.rstrip("="), waiting.token_urlsafe)


def assert_ok(run: Run, expected: dict[str, Any]) -> None:
    # Exactly 0: a process that keeps a gRPC channel must not abort at exit (RELIABILITY).
    assert run.returncode == 0, run.stderr
    assert run.json() == expected
    assert run.stderr == ""


def assert_error(run: Run, code: str) -> None:
    assert run.returncode == EXIT_CODES[code], (run.returncode, run.stderr)
    assert run.stdout == ""
    assert run.stderr.startswith(f"error [{code}]: ")
    assert "Traceback" not in run.stderr


# --- without an engine ------------------------------------------------------------------


async def test_help_reads_well_and_is_fast():
    run = await completer("--help")
    assert run.returncode == 0
    for command in ("complete", "fail", "heartbeat", "cancel", "link", "presign", "token"):
        assert command in run.stdout
    assert "Examples:" in run.stdout
    assert "4  activity_not_found" in run.stdout
    assert run.seconds < 5
    for command in ("complete", "fail", "heartbeat", "cancel", "link", "presign"):
        sub = await completer(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "--workflow-id" in sub.stdout


def test_cli_import_defers_the_engine_and_cloud_libraries():
    code = (
        "import sys, completer.cli; "
        "heavy = ('temporalio', 'boto3', 'grpc', 'cryptography', 'completer.client'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    python = os.path.join(os.path.dirname(COMPLETER or ""), "python")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_naming_no_activity_or_both_is_invalid_request():
    token = encode_token(b"token-bytes-here")
    run = await completer("complete", "1", secrets=(token,))
    assert_error(run, "invalid_request")
    both = await completer("complete", "-t", token, "-w", "wf", "-a", "a", "1", secrets=(token,))
    assert_error(both, "invalid_request")
    assert "not both" in both.stderr


async def test_bad_token_is_refused_without_echoing_it():
    token = "this-is-not-base64!!secret"
    run = await completer("complete", "-t", token, "1", secrets=(token,))
    assert_error(run, "invalid_request")


async def test_wrong_configuration_names_the_variable():
    run = await completer(
        "complete", "-w", "wf", "-a", "a", env={"COMPLETER_BACKEND": "zeebe"}, timeout=30
    )
    assert run.returncode == EXIT_CODES["configuration"]
    assert "COMPLETER_BACKEND" in run.stderr


async def test_token_helpers_round_trip():
    raw = b"\x0a\x24binary\xfe\xff token \x00"
    encoded = await completer("token", "encode", stdin=raw)
    assert encoded.returncode == 0
    text = encoded.stdout.strip()
    assert decode_token(text) == raw
    assert "=" not in text
    standard = await completer("token", "encode", "--standard", stdin=raw)
    assert standard.stdout.strip() == encode_token(raw, urlsafe=False)

    decoded = await completer("token", "decode", "--hex", text)
    assert decoded.stdout.strip() == raw.hex()
    from_env = await completer("token", "decode", "--hex", env={"COMPLETER_TASK_TOKEN": text})
    assert from_env.stdout.strip() == raw.hex()
    as_bytes = await completer("token", "decode", text)
    assert as_bytes.raw_stdout == raw

    fingerprints = await completer("token", "fingerprint", "-", stdin=text.encode())
    assert fingerprints.json() == {
        "as_given": f"token:{token_fingerprint(text)}",
        "standard": f"token:{token_fingerprint(encode_token(raw, urlsafe=False))}",
        "urlsafe": f"token:{token_fingerprint(text)}",
    }
    bad = await completer("token", "decode", "not base64!!", secrets=("not base64!!",))
    assert_error(bad, "invalid_request")


# --- against the Temporal dev server ----------------------------------------------------

needs_temporal = pytest.mark.temporal


@needs_temporal
async def test_complete_by_token_with_the_result_as_argument(waiting: WaitingActivity):
    run = await completer(
        "complete",
        "--token",
        waiting.token_b64,
        '{"approved": true, "by": "ana"}',
        secrets=secrets_of(waiting),
    )
    assert_ok(run, {"status": "completed"})
    assert await waiting.handle.result() == {"approved": True, "by": "ana"}


@needs_temporal
async def test_complete_with_token_from_env_and_result_file(waiting: WaitingActivity, tmp_path):
    result_file = tmp_path / "result.json"
    result_file.write_text('{"rows": [1, 2, 3]}\n')
    run = await completer(
        "complete",
        "--result-file",
        str(result_file),
        env={"COMPLETER_TASK_TOKEN": waiting.token_urlsafe},
        secrets=secrets_of(waiting),
    )
    assert_ok(run, {"status": "completed"})
    assert await waiting.handle.result() == {"rows": [1, 2, 3]}


@needs_temporal
async def test_complete_with_result_from_stdin(waiting: WaitingActivity):
    run = await completer(
        "complete",
        "-t",
        waiting.token_urlsafe,
        "--result-file",
        "-",
        stdin=b'["from", "stdin"]',
        secrets=secrets_of(waiting),
    )
    assert_ok(run, {"status": "completed"})
    assert await waiting.handle.result() == ["from", "stdin"]


@needs_temporal
async def test_complete_without_a_result_is_null(waiting: WaitingActivity):
    run = await completer("complete", "-t", waiting.token_b64, secrets=secrets_of(waiting))
    assert_ok(run, {"status": "completed"})
    assert await waiting.handle.result() is None


@needs_temporal
async def test_fail_with_type_details_and_non_retryable(waiting: WaitingActivity):
    run = await completer(
        "fail",
        "-t",
        waiting.token_b64,
        "-m",
        "rejected by ana",
        "--type",
        "Rejected",
        "--details",
        '{"reason": "budget"}',
        "--non-retryable",
        secrets=secrets_of(waiting),
    )
    assert_ok(run, {"status": "failed"})
    with pytest.raises(WorkflowFailureError) as info:
        await waiting.handle.result()
    activity_error = info.value.cause
    assert isinstance(activity_error, TemporalActivityError)
    cause = activity_error.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.message, cause.type, cause.non_retryable, cause.details) == (
        "rejected by ana",
        "Rejected",
        True,
        ({"reason": "budget"},),
    )


@needs_temporal
async def test_heartbeat_prints_cancel_requested_false(waiting: WaitingActivity):
    run = await completer(
        "heartbeat", "-t", waiting.token_b64, '{"progress": 50}', secrets=secrets_of(waiting)
    )
    assert_ok(run, {"status": "heartbeat_recorded", "cancel_requested": False})
    pending = await waiting.pending_activity()
    assert pending is not None
    assert pending.heartbeat_details.payloads[0].data == b'{"progress":50}'


@needs_temporal
async def test_cancel_before_it_was_requested_is_a_conflict(waiting: WaitingActivity):
    run = await completer("cancel", "-t", waiting.token_b64, secrets=secrets_of(waiting))
    assert_error(run, "conflict")
    # The activity keeps waiting and can still be completed.
    done = await completer("complete", "-t", waiting.token_b64, "1", secrets=secrets_of(waiting))
    assert_ok(done, {"status": "completed"})
    assert await waiting.handle.result() == 1


@needs_temporal
async def test_complete_by_ids(waiting: WaitingActivity):
    run = await completer(
        "complete",
        "-w",
        waiting.workflow_id,
        "-a",
        waiting.activity_id,
        "-r",
        waiting.run_id,
        '"by ids"',
    )
    assert_ok(run, {"status": "completed"})
    assert await waiting.handle.result() == "by ids"


@needs_temporal
async def test_ids_on_the_command_line_win_over_a_token_in_the_environment(
    waiting: WaitingActivity,
):
    stale = encode_token(b"an old token left in the shell")
    run = await completer(
        "complete",
        "-w",
        waiting.workflow_id,
        "-a",
        waiting.activity_id,
        "7",
        env={"COMPLETER_TASK_TOKEN": stale},
        secrets=(stale,),
    )
    assert_ok(run, {"status": "completed"})
    assert await waiting.handle.result() == 7


@needs_temporal
async def test_second_completion_is_activity_not_found(waiting: WaitingActivity):
    first = await completer("complete", "-t", waiting.token_b64, "1", secrets=secrets_of(waiting))
    assert_ok(first, {"status": "completed"})
    second = await completer("complete", "-t", waiting.token_b64, "2", secrets=secrets_of(waiting))
    assert_error(second, "activity_not_found")
    assert await waiting.handle.result() == 1


@needs_temporal
async def test_invalid_json_result_is_a_usage_error(waiting: WaitingActivity, tmp_path):
    run = await completer("complete", "-t", waiting.token_b64, "{oops", secrets=secrets_of(waiting))
    assert run.returncode == 2
    assert run.stdout == ""
    assert "not valid JSON" in run.stderr
    bad_file = tmp_path / "bad.json"
    bad_file.write_text("[1,")
    from_file = await completer(
        "complete", "-t", waiting.token_b64, "-f", str(bad_file), secrets=secrets_of(waiting)
    )
    assert from_file.returncode == 2
    assert "bad.json" in from_file.stderr
    both = await completer(
        "complete", "-t", waiting.token_b64, "1", "-f", str(bad_file), secrets=secrets_of(waiting)
    )
    assert both.returncode == 2
    # Nothing reached the engine: the activity still waits.
    assert_ok(
        await completer("complete", "-t", waiting.token_b64, "3", secrets=secrets_of(waiting)),
        {"status": "completed"},
    )
    assert await waiting.handle.result() == 3


@needs_temporal
async def test_result_over_the_payload_limit(waiting: WaitingActivity):
    run = await completer(
        "complete",
        "-t",
        waiting.token_b64,
        "--result-file",
        "-",
        stdin=json.dumps({"blob": "x" * 5000}).encode(),
        env={"COMPLETER_MAX_PAYLOAD_BYTES": "1024"},
        secrets=secrets_of(waiting),
    )
    assert_error(run, "payload_too_large")
    assert (await waiting.pending_activity()) is not None


@needs_temporal
async def test_engine_unreachable_is_engine_unavailable(waiting: WaitingActivity):
    run = await completer(
        "complete",
        "-t",
        waiting.token_b64,
        "1",
        env={"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "COMPLETER_RPC_TIMEOUT_SECONDS": "3"},
        secrets=secrets_of(waiting),
    )
    assert_error(run, "engine_unavailable")
    assert run.seconds < 30
    assert (await waiting.pending_activity()) is not None
    await waiting.handle.terminate("test done")


@needs_temporal
async def test_link_prints_approve_and_reject_links(waiting: WaitingActivity, settings: Settings):
    run = await completer(
        "link",
        "--url",
        "https://fn.example/complete",
        "-t",
        waiting.token_b64,
        "--approve-result",
        '{"approved": true, "by": "mail"}',
        "--ttl",
        "2h",
        env={"COMPLETER_LINK_SECRET": LINK_SECRET},
        secrets=(*secrets_of(waiting), LINK_SECRET),
    )
    assert run.returncode == 0, run.stderr
    links = run.json()
    assert set(links) == {"approve", "reject", "expires_at"}
    assert 7000 < links["expires_at"] - time.time() <= 7200
    sealed = parse_qs(urlsplit(links["approve"]).query)["link"][0]
    opened = open_link(sealed, secret=LINK_SECRET, choice="approve")
    async with CompletionClient.create(settings) as client:
        await client.execute(opened.request)
    assert await waiting.handle.result() == {"approved": True, "by": "mail"}
    reject_sealed = parse_qs(urlsplit(links["reject"]).query)["link"][0]
    rejected = open_link(reject_sealed, secret=LINK_SECRET, choice="reject")
    assert rejected.request.error is not None
    assert (rejected.request.error.type, rejected.request.error.non_retryable) == (
        "Rejected",
        True,
    )


async def test_link_needs_the_link_secret():
    run = await completer(
        "link", "--url", "https://fn/", "-w", "wf", "-a", "a", env={"COMPLETER_LINK_SECRET": ""}
    )
    assert run.returncode == EXIT_CODES["configuration"]
    assert "COMPLETER_LINK_SECRET" in run.stderr
    short = await completer(
        "link", "--url", "https://fn/", "-w", "wf", "-a", "a", env={"COMPLETER_LINK_SECRET": "x"}
    )
    assert short.returncode == EXIT_CODES["configuration"]
    assert "'x'" not in short.stderr  # a secret is never echoed


# --- presign, against moto in server mode -----------------------------------------------


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[dict[str, str]]:
    with moto_server() as endpoint:
        s3_client(endpoint).create_bucket(Bucket="partner-drop")
        yield aws_env(endpoint)


@pytest.mark.moto
async def test_presign_prints_a_working_upload(moto_s3: dict[str, str]):
    token = encode_token(b"partner upload token")
    run = await completer(
        "presign",
        "--bucket",
        "partner-drop",
        "--key",
        "orders/42.json",
        "--content-type",
        "application/json",
        "-t",
        token,
        env=moto_s3,
    )
    assert run.returncode == 0, run.stderr
    upload = run.json()
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"x-amz-meta-task-token": token, "Content-Type": "application/json"}
    assert token not in upload["url"]
    assert "x-amz-meta-task-token" in upload["curl"]
    response = await asyncio.to_thread(
        requests.put, upload["url"], data=b'{"ok": 1}', headers=upload["headers"], timeout=10
    )
    assert response.status_code == 200, response.text
    s3 = s3_client(moto_s3["AWS_ENDPOINT_URL_S3"])
    assert s3.head_object(Bucket="partner-drop", Key="orders/42.json")["Metadata"] == {
        "task-token": token
    }


async def test_presign_without_credentials_is_a_configuration_error(tmp_path):
    env = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    run = await completer(
        "presign", "--bucket", "b-ucket", "--key", "k", "-w", "wf", "-a", "a", env=env
    )
    assert run.returncode == EXIT_CODES["configuration"], run.stderr
    assert "credentials" in run.stderr


@needs_temporal
async def test_link_by_ids_without_run_id_looks_the_run_up(waiting: WaitingActivity):
    run = await completer(
        "link",
        "--url",
        "https://fn.example/complete",
        "-w",
        waiting.workflow_id,
        "-a",
        waiting.activity_id,
        env={"COMPLETER_LINK_SECRET": LINK_SECRET},
        secrets=(LINK_SECRET,),
    )
    assert run.returncode == 0, run.stderr
    sealed = parse_qs(urlsplit(run.json()["approve"]).query)["link"][0]
    opened = open_link(sealed, secret=LINK_SECRET, choice="approve")
    assert (opened.request.workflow_id, opened.request.run_id) == (
        waiting.workflow_id,
        waiting.run_id,
    )


@needs_temporal
async def test_link_by_ids_of_an_unknown_workflow_is_not_found():
    run = await completer(
        "link", "--url", "https://fn/", "-w", "no-such-workflow", "-a", "a",
        env={"COMPLETER_LINK_SECRET": LINK_SECRET},
    )  # fmt: skip
    assert_error(run, "activity_not_found")


@pytest.mark.parametrize(
    ("backend", "asked"), [("cadence", "--run-id"), ("stepfunctions", "--token")]
)
async def test_link_by_ids_without_run_id_elsewhere_says_what_to_give(backend: str, asked: str):
    run = await completer(
        "link", "--url", "https://fn/", "-w", "wf", "-a", "a",
        env={"COMPLETER_LINK_SECRET": LINK_SECRET, "COMPLETER_BACKEND": backend,
             "CADENCE_DOMAIN": "samples"},
    )  # fmt: skip
    assert run.returncode == EXIT_CODES["configuration"]
    assert asked in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
