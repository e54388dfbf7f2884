"""The deployable artefacts of `make package`, unpacked into clean directories and run there.

- The GCP archives are served by functions-framework from a FRESH venv made from their own
  requirements.txt (slow: one venv per archive per session, pip's cache makes repeats
  quick) and complete a real activity on the Temporal dev server.
- The Lambda package is run by CPython 3.12 (its target) in isolated mode (-I -S: no
  site-packages, no PYTHONPATH) with nothing but the unpacked zip on sys.path, against
  moto (S3, Secrets Manager, Step Functions) and the Temporal dev server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests.support.services import free_port, missing_service, running, wait_for_port
from tests.support.stepfunctions import MotoStepFunctions, moto_stepfunctions
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "packaging" / "build.py"
FUNCTIONS = {
    "gcp-http": "http",
    "gcp-pubsub": "pubsub",
    "gcp-gcs": "gcs",
    "aws-s3": "s3",
    "http-lambda": "http_lambda",
}
REGION = "us-east-1"
AWS_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# Runs inside the unpacked Lambda package under `python3.12 -I -S`: stdlib only until the
# package's own directory is on sys.path, like Lambda's bootstrap importing main.handler.
LAMBDA_RUNNER = """
import json, os, sys
root, event_path = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import main
with open(event_path) as f:
    result = main.handler(json.load(f), None)
stdlib = (sys.base_prefix, sys.base_exec_prefix)
outside = sorted(
    m.__name__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and m.__file__ != __file__
    and not m.__file__.startswith((root, *stdlib))
)
print("RESULT " + json.dumps({
    "result": result, "identity": os.environ.get("COMPLETER_IDENTITY"),
    "temporalio": "temporalio" in sys.modules, "grpc": "grpc" in sys.modules,
    "outside": outside, "python": sys.version.split()[0], "path": sys.path,
}))
"""


def require_function(function: str) -> None:
    """A missing function file is a failure, not a skip: the artefact would be empty."""
    path = ROOT / "functions" / function / "main.py"
    if not path.is_file():
        pytest.fail(f"{path.relative_to(ROOT)} does not exist: nothing to package", pytrace=False)


def build(out: Path, *args: str) -> dict[str, dict[str, Any]]:
    for function in FUNCTIONS.values():
        require_function(function)
    result = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def unpack(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)
    return into


def find_python312() -> str | None:
    """A CPython 3.12 (the Lambda and Cloud Functions runtime) on this machine, if any."""
    candidates = [
        os.environ.get("COMPLETER_PYTHON312", ""),
        shutil.which("python3.12") or "",
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))),
    ]
    for candidate in filter(None, candidates):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if out.stdout.strip() == "True":
                return candidate
    return None


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    """All the artefacts, built once per session (wheels come from pip's cache)."""
    out = tmp_path_factory.mktemp("dist")
    return out, build(out)


@pytest.fixture(scope="session")
def python312() -> str:
    found = find_python312()
    if found is None:
        missing_service("no CPython 3.12 here to run the python3.12 artefacts")
    assert found is not None
    return found


# --- what is inside ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gcp-http", "gcp-pubsub", "gcp-gcs"])
def test_gcp_archive_layout(dist, name: str):
    out, manifests = dist
    with zipfile.ZipFile(out / f"{name}.zip") as zf:
        names = set(zf.namelist())
        main = zf.read("main.py")
        requirements = zf.read("requirements.txt").decode().splitlines()
    assert main == (ROOT / "functions" / FUNCTIONS[name] / "main.py").read_bytes()
    assert "completer/__init__.py" in names
    assert "completer/settings.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    pins = [line for line in requirements if line and not line.startswith("#")]
    for pin in pins:
        package, _, version = pin.partition("==")
        assert version == metadata.version(package), pin
    pinned = {pin.partition("==")[0] for pin in pins}
    assert {"functions-framework", "pydantic", "pydantic-settings", "temporalio"} <= pinned
    if name == "gcp-gcs":
        assert {"google-cloud-storage", "google-cloud-pubsub"} <= pinned
    assert manifests[name]["runtime"] == "python312"
    assert manifests[name]["entry_point"] == "complete"


def test_gcp_archives_are_reproducible(dist, tmp_path: Path):
    out, manifests = dist
    again = build(tmp_path, "--only", "gcp-http", "--only", "gcp-pubsub")
    for name in ("gcp-http", "gcp-pubsub"):
        assert again[name]["sha256"] == manifests[name]["sha256"]
        digest = hashlib.sha256((out / f"{name}.zip").read_bytes()).hexdigest()
        assert digest == manifests[name]["sha256"]


def test_lambda_package_is_small_and_trimmed(dist):
    out, manifests = dist
    manifest = manifests["aws-s3"]
    with zipfile.ZipFile(out / "aws-s3.zip") as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names}
    assert {"main.py", "completer", "boto3", "botocore", "temporalio", "pydantic_core"} <= tops
    assert "aws_lambda_powertools" in tops
    # Lambda's direct-upload limits: 50 MB zipped, 250 MB unzipped.
    assert manifest["bytes"] < 50_000_000
    assert manifest["unpacked_bytes"] < 250_000_000
    services = {
        n.split("/")[2] for n in names if n.startswith("botocore/data/") and n.count("/") > 2
    }
    assert services == {"s3", "stepfunctions", "secretsmanager", "sts"}
    assert not [
        t for t in tops if t.endswith("-stubs") or t in {"bin", "grpc", "functions_framework"}
    ]
    assert manifest["architecture"] == "x86_64"
    assert (
        manifest["sha256_base64"]
        == base64.b64encode(hashlib.sha256((out / "aws-s3.zip").read_bytes()).digest()).decode()
    )
    binaries = [n for n in names if n.endswith(".so")]
    assert binaries
    assert all("x86_64" in n or "abi3" in n or "cpython-312" in n for n in binaries)


def test_lambda_arm64_and_stepfunctions_only_build(tmp_path: Path):
    manifests = build(
        tmp_path, "--only", "aws-s3", "--lambda-arch", "arm64", "--lambda-backends", "stepfunctions"
    )
    assert manifests["aws-s3"]["architecture"] == "arm64"
    with zipfile.ZipFile(tmp_path / "aws-s3.zip") as zf:
        names = zf.namelist()
    assert not [n for n in names if n.startswith(("temporalio/", "grpc/"))]
    cores = [n for n in names if n.startswith("pydantic_core/") and n.endswith(".so")]
    assert cores
    assert all("aarch64" in n for n in cores), cores


# --- the Lambda package, run on CPython 3.12 with nothing but itself ----------------------


@dataclass
class Moto:
    endpoint: str

    def client(self, service: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - moto[server] is a dev dependency
        missing_service(f"moto[server] is not installed ({exc})")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield Moto(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def s3_event(bucket: str, key: str, size: int) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": key, "size": size},
                },
            }
        ]
    }


def run_lambda(
    python: str, package: Path, event: dict[str, Any], env: dict[str, str], tmp: Path
) -> dict[str, Any]:
    (tmp / "runner.py").write_text(LAMBDA_RUNNER)
    (tmp / "event.json").write_text(json.dumps(event))
    result = subprocess.run(
        [python, "-I", "-S", str(tmp / "runner.py"), str(package), str(tmp / "event.json")],
        # What the Lambda runtime sets, and nothing else.
        env={
            "PATH": "/usr/bin:/bin",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **AWS_TEST_CREDENTIALS,
            **env,
        },
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    answer["logs"] = result.stdout + result.stderr
    return answer


@pytest.fixture(scope="session")
def lambda_package(dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out, _ = dist
    return unpack(out / "aws-s3.zip", tmp_path_factory.mktemp("lambda"))


@pytest.mark.moto
@pytest.mark.temporal
async def test_lambda_package_completes_a_temporal_activity_from_an_upload(
    python312: str,
    lambda_package: Path,
    moto: Moto,
    temporal_server: TemporalServer,
    waiting: WaitingActivity,
    tmp_path: Path,
):
    s3 = moto.client("s3")
    bucket, key = f"uploads-{uuid.uuid4().hex[:8]}", "completions/approval.json"
    body = json.dumps({"approved": True, "by": "lambda-package"}).encode()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType="application/json",
        Metadata={"task-token": waiting.token_b64},
    )
    answer = await asyncio.to_thread(
        run_lambda,
        python312,
        lambda_package,
        s3_event(bucket, key, len(body)),
        {
            "COMPLETER_BACKEND": "temporal",
            "TEMPORAL_ADDRESS": temporal_server.address,
            "AWS_ENDPOINT_URL_S3": moto.endpoint,
        },
        tmp_path,
    )
    assert await asyncio.wait_for(waiting.handle.result(), 30) == json.loads(body)
    assert answer["python"].startswith("3.12.")
    assert answer["outside"] == [], f"imported from outside the package: {answer['outside']}"
    assert answer["path"][0] == str(lambda_package)
    assert not [p for p in answer["path"] if "site-packages" in p]
    assert waiting.token_b64 not in answer["logs"]


@pytest.fixture(scope="module")
def sfn() -> Iterator[MotoStepFunctions]:
    yield from moto_stepfunctions()


@pytest.mark.moto
async def test_lambda_package_step_functions_path_reads_secrets_and_skips_temporal(
    python312: str, lambda_package: Path, moto: Moto, sfn: MotoStepFunctions, tmp_path: Path
):
    task = sfn.start_waiting()
    identity = f"completer-from-secret-{uuid.uuid4().hex[:6]}"
    secret_arn = moto.client("secretsmanager").create_secret(
        Name=f"identity-{uuid.uuid4().hex[:8]}", SecretString=identity
    )["ARN"]
    s3 = moto.client("s3")
    bucket, key = f"uploads-{uuid.uuid4().hex[:8]}", "completions/result.json"
    body = b'{"ok": true}'
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType="application/json",
        Metadata={"task-token": task.task_token},
    )
    answer = await asyncio.to_thread(
        run_lambda,
        python312,
        lambda_package,
        s3_event(bucket, key, len(body)),
        {
            "COMPLETER_BACKEND": "stepfunctions",
            "COMPLETER_IDENTITY_SECRET_ARN": secret_arn,
            "AWS_ENDPOINT_URL": moto.endpoint,
            "AWS_ENDPOINT_URL_SFN": sfn.endpoint,
        },
        tmp_path,
    )
    assert answer["identity"] == identity, (
        "COMPLETER_IDENTITY_SECRET_ARN was not resolved: functions/s3/main.py must call "
        "completer.secrets.load_secret_environment() before get_settings()"
    )
    assert identity not in answer["logs"].replace(f'"identity": "{identity}"', "")
    # The STYLE rule: a Step Functions Lambda never imports temporalio or grpc.
    assert answer["temporalio"] is False
    assert answer["grpc"] is False
    assert answer["outside"] == []
    # A real waiting task, completed through the package's boto3 with its trimmed models.
    assert '"outcome": "completed"' in answer["logs"]
    assert answer["result"] is None
    finished = await task.finished()
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == {"ok": True}


# --- the HTTP Lambda package ------------------------------------------------------------------


def test_http_lambda_package_layout(dist):
    out, manifests = dist
    manifest = manifests["http-lambda"]
    with zipfile.ZipFile(out / "http-lambda.zip") as zf:
        names = zf.namelist()
        main = zf.read("main.py")
    assert main == (ROOT / "functions" / "http_lambda" / "main.py").read_bytes()
    tops = {n.split("/")[0] for n in names}
    assert {"completer", "boto3", "temporalio", "aws_lambda_powertools", "cryptography"} <= tops
    assert {"jinja2", "babel"} <= tops
    assert not [t for t in tops if t in {"bin", "functions_framework", "starlette"}]
    services = {
        n.split("/")[2] for n in names if n.startswith("botocore/data/") and n.count("/") > 2
    }
    # SNS: the AWS example's approval notifier runs from this package.
    assert services == {"s3", "stepfunctions", "secretsmanager", "sts", "sns"}
    assert manifest["entry_point"] == "main.handler"
    assert manifest["runtime"] == "python3.12"
    assert manifest["bytes"] < 50_000_000
    assert manifest["unpacked_bytes"] < 250_000_000


@pytest.fixture(scope="session")
def http_lambda_package(dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out, _ = dist
    return unpack(out / "http-lambda.zip", tmp_path_factory.mktemp("http-lambda"))


@pytest.mark.moto
@pytest.mark.temporal
async def test_http_lambda_package_completes_a_signed_function_url_request(
    python312: str,
    http_lambda_package: Path,
    moto: Moto,
    temporal_server: TemporalServer,
    waiting: WaitingActivity,
    tmp_path: Path,
):
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    secret_arn = moto.client("secretsmanager").create_secret(
        Name=f"signing-{uuid.uuid4().hex[:8]}", SecretString=secret
    )["ARN"]
    body = json.dumps({"task_token": waiting.token_b64, "result": {"via": "http-lambda"}})
    now = int(time.time())
    event = json.loads(
        (ROOT / "tests" / "events" / "http_lambda" / "function_url.json").read_text()
    )
    event["requestContext"]["http"]["method"] = "POST"
    event["headers"].update(
        {
            "content-type": "application/json",
            "webhook-id": "msg_package",
            "webhook-timestamp": str(now),
            "webhook-signature": Webhook(secret).sign(
                "msg_package", datetime.fromtimestamp(now, tz=UTC), body
            ),
        }
    )
    event["body"] = body
    answer = await asyncio.to_thread(
        run_lambda,
        python312,
        http_lambda_package,
        event,
        {
            "COMPLETER_BACKEND": "temporal",
            "TEMPORAL_ADDRESS": temporal_server.address,
            "COMPLETER_SIGNING_SECRETS_SECRET_ARN": secret_arn,
            "AWS_ENDPOINT_URL": moto.endpoint,
        },
        tmp_path,
    )
    assert answer["result"]["statusCode"] == 200, answer["result"]
    assert json.loads(answer["result"]["body"]) == {"status": "completed"}
    assert answer["result"]["headers"]["Cache-Control"] == "no-store"
    assert await asyncio.wait_for(waiting.handle.result(), 30) == {"via": "http-lambda"}
    assert answer["outside"] == [], f"imported from outside the package: {answer['outside']}"
    assert secret.removeprefix("whsec_") not in answer["logs"]


# --- the GCP archives, served from fresh venvs --------------------------------------------


@dataclass
class ServedArchive:
    root: Path
    python: Path


def fresh_venv(archive: Path, into: Path) -> ServedArchive:
    """Unpack, make a venv with the runtime's Python, install the archive's requirements only."""
    root = unpack(archive, into / "source")
    base = find_python312() or sys.executable
    venv = into / "venv"
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--requirement",
            str(root / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout + install.stderr[-3000:]
    return ServedArchive(root, python)


@pytest.fixture(scope="session")
def gcp_http(dist, tmp_path_factory: pytest.TempPathFactory) -> ServedArchive:
    out, _ = dist
    return fresh_venv(out / "gcp-http.zip", tmp_path_factory.mktemp("gcp-http"))


@pytest.fixture(scope="session")
def gcp_pubsub(dist, tmp_path_factory: pytest.TempPathFactory) -> ServedArchive:
    out, _ = dist
    return fresh_venv(out / "gcp-pubsub.zip", tmp_path_factory.mktemp("gcp-pubsub"))


@contextlib.contextmanager
def serve(
    archive: ServedArchive,
    signature: str,
    temporal: TemporalServer,
    log: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[str]:
    port = free_port()
    argv = [
        str(archive.python),
        "-m",
        "functions_framework",
        "--target",
        "complete",
        "--signature-type",
        signature,
        "--source",
        str(archive.root / "main.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(log.parent),
        "COMPLETER_BACKEND": "temporal",
        "TEMPORAL_ADDRESS": temporal.address,
        **(extra_env or {}),
    }
    with running(argv, env=env, log_path=log, cwd=archive.root) as process:
        try:
            wait_for_port(port, timeout=60, process=process)
        except (RuntimeError, TimeoutError):
            pytest.fail(f"functions-framework did not start:\n{log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}/"


def sys_path_of(archive: ServedArchive) -> list[str]:
    out = subprocess.run(
        [str(archive.python), "-c", "import sys, json; print(json.dumps(sys.path))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd="/",
    )
    return list(json.loads(out.stdout))


@pytest.mark.temporal
async def test_gcp_http_archive_serves_a_completion_from_a_fresh_venv(
    gcp_http: ServedArchive,
    temporal_server: TemporalServer,
    waiting: WaitingActivity,
    tmp_path: Path,
):
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    assert not [p for p in sys_path_of(gcp_http) if str(ROOT) in p], "the venv sees the checkout"
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    body = json.dumps({"task_token": waiting.token_b64, "result": {"via": "gcp-http.zip"}})
    now = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_gcp_package",
        "webhook-timestamp": str(now),
        "webhook-signature": Webhook(secret).sign(
            "msg_gcp_package", datetime.fromtimestamp(now, tz=UTC), body
        ),
    }
    signing = {"COMPLETER_SIGNING_SECRETS": secret}
    with serve(gcp_http, "http", temporal_server, tmp_path / "http.log", signing) as url:
        response = await asyncio.to_thread(
            requests.post, url, data=body, headers=headers, timeout=60
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "completed"}
    assert await asyncio.wait_for(waiting.handle.result(), 30) == {"via": "gcp-http.zip"}


@pytest.mark.temporal
async def test_gcp_pubsub_archive_handles_a_cloudevent_from_a_fresh_venv(
    gcp_pubsub: ServedArchive,
    temporal_server: TemporalServer,
    waiting: WaitingActivity,
    tmp_path: Path,
):
    request = {"task_token": waiting.token_b64, "result": {"via": "gcp-pubsub.zip"}}
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/test-project/topics/completions",
        "ce-id": uuid.uuid4().hex,
        "content-type": "application/json",
    }
    body = {
        "message": {
            "data": base64.b64encode(json.dumps(request).encode()).decode(),
            "messageId": uuid.uuid4().hex,
            "attributes": {},
        },
        "subscription": "projects/test-project/subscriptions/eventarc-completions",
    }
    with serve(gcp_pubsub, "cloudevent", temporal_server, tmp_path / "pubsub.log") as url:
        response = await asyncio.to_thread(
            requests.post, url, json=body, headers=headers, timeout=60
        )
    assert response.status_code == 200, response.text
    assert await asyncio.wait_for(waiting.handle.result(), 30) == {"via": "gcp-pubsub.zip"}


# --- completer.secrets, which the Lambda runs at cold start --------------------------------


@pytest.mark.moto
def test_secret_loader_fills_settings_and_refuses_the_rest(moto: Moto):
    from completer.errors import ConfigurationError
    from completer.secrets import load_secret_environment

    client = moto.client("secretsmanager")
    arn = client.create_secret(Name=f"key-{uuid.uuid4().hex[:8]}", SecretString="s3cr3t")["ARN"]
    env = {"TEMPORAL_API_KEY_SECRET_ARN": arn, "COMPLETER_IDENTITY": "kept"}
    env["COMPLETER_IDENTITY_SECRET_ARN"] = arn
    assert load_secret_environment(env, client=client) == ["TEMPORAL_API_KEY"]
    assert env["TEMPORAL_API_KEY"] == "s3cr3t"
    assert env["COMPLETER_IDENTITY"] == "kept"  # a value already set wins

    with pytest.raises(ConfigurationError, match="PATH_SECRET_ARN is invalid"):
        load_secret_environment({"PATH_SECRET_ARN": arn}, client=client)
    missing = arn.rsplit(":", 1)[0] + ":missing-AbCdEf"
    with pytest.raises(ConfigurationError, match="TEMPORAL_API_KEY_SECRET_ARN cannot be read") as e:
        load_secret_environment({"TEMPORAL_API_KEY_SECRET_ARN": missing}, client=client)
    assert "s3cr3t" not in str(e.value)
    binary = client.create_secret(Name=f"bin-{uuid.uuid4().hex[:8]}", SecretBinary=b"\x00")["ARN"]
    with pytest.raises(ConfigurationError, match="binary secret"):
        load_secret_environment({"COMPLETER_LINK_SECRET_SECRET_ARN": binary}, client=client)
