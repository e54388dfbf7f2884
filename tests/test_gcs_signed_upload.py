"""The activity side for Cloud Storage: V4 signed upload URLs that require the metadata.

gcp-storage-emulator checks no signatures (its XML PUT route ignores the query string and the
x-goog-meta-* headers), so a real Cloud Storage's refusal cannot be shown locally. Instead the
signature is verified here independently: the V4 canonical request is rebuilt from the URL
and the headers the uploader sends, and checked against the test service account's public
key. With the headers the signature holds; without one it does not, which is what makes
Cloud Storage answer SignatureDoesNotMatch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud.storage import Client

from completer.activity import gcs_signed_upload
from completer.errors import InvalidRequest
from completer.tokens import encode_token
from tests.support.gcs import GcsEmulator, gcs_emulator, service_account_key, signing_client

ROOT = Path(__file__).resolve().parent.parent
TOKEN = encode_token(b"partner upload token")


@pytest.fixture(scope="module")
def generated() -> tuple[rsa.RSAPrivateKey, dict[str, str]]:
    return service_account_key()


@pytest.fixture(scope="module")
def key(generated: tuple[rsa.RSAPrivateKey, dict[str, str]]) -> rsa.RSAPrivateKey:
    return generated[0]


@pytest.fixture(scope="module")
def key_info(generated: tuple[rsa.RSAPrivateKey, dict[str, str]]) -> dict[str, str]:
    """A service-account key file's content, for a key made for this test only."""
    return generated[1]


@pytest.fixture(scope="module")
def client(key_info: dict[str, str]) -> Client:
    return signing_client(key_info)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


def signature_holds(
    url: str, method: str, headers: dict[str, str], public_key: rsa.RSAPublicKey
) -> bool:
    """Rebuild the V4 canonical request of ``method url`` sent with ``headers``; verify it."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = bytes.fromhex(query.pop("X-Goog-Signature"))
    signed_names = query["X-Goog-SignedHeaders"].split(";")
    sent = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    sent["host"] = parts.netloc
    if not set(signed_names) <= set(sent):
        return False
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )
    canonical_headers = "".join(f"{name}:{sent[name]}\n" for name in signed_names)
    canonical_request = "\n".join(
        [
            method,
            parts.path,
            canonical_query,
            canonical_headers,
            ";".join(signed_names),
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            query["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    try:
        public_key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def test_signed_url_requires_the_token_header(client: Client, key: rsa.RSAPrivateKey):
    upload = gcs_signed_upload(
        client,
        bucket="partner-drop",
        name="orders/42 ü.json",
        task_token=TOKEN,
        content_type="application/json",
        expires_in=600,
    )
    assert upload.method == "PUT"
    assert upload.headers == {
        "x-goog-meta-task-token": TOKEN,
        "Content-Type": "application/json",
    }
    assert TOKEN not in upload.url
    assert upload.url.startswith("https://storage.googleapis.com/partner-drop/orders/42%20")
    query = dict(parse_qsl(urlsplit(upload.url).query))
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Expires"] == "600"
    assert set(query["X-Goog-SignedHeaders"].split(";")) == {
        "content-type",
        "host",
        "x-goog-meta-task-token",
    }
    public = key.public_key()
    assert signature_holds(upload.url, "PUT", upload.headers, public)
    without = {k: v for k, v in upload.headers.items() if k != "x-goog-meta-task-token"}
    assert not signature_holds(upload.url, "PUT", without, public)
    other = {**upload.headers, "x-goog-meta-task-token": encode_token(b"someone else")}
    assert not signature_holds(upload.url, "PUT", other, public)
    assert not signature_holds(upload.url, "GET", upload.headers, public)
    assert "x-goog-meta-task-token: " in upload.curl()


def test_signed_url_by_ids_signs_every_id_and_the_action(client: Client, key: rsa.RSAPrivateKey):
    upload = gcs_signed_upload(
        client,
        bucket="partner-drop",
        name="errors/42.json",
        workflow_id="order-42",
        activity_id="upload",
        run_id="run-1",
        action="fail",
    )
    assert upload.headers == {
        "x-goog-meta-workflow-id": "order-42",
        "x-goog-meta-activity-id": "upload",
        "x-goog-meta-run-id": "run-1",
        "x-goog-meta-action": "fail",
    }
    assert signature_holds(upload.url, "PUT", upload.headers, key.public_key())
    for name in upload.headers:
        partial = {k: v for k, v in upload.headers.items() if k != name}
        assert not signature_holds(upload.url, "PUT", partial, key.public_key()), name


def test_naming_and_expiry_are_checked(client: Client):
    with pytest.raises(InvalidRequest):
        gcs_signed_upload(client, bucket="b", name="n", task_token=TOKEN, workflow_id="w")
    with pytest.raises(ValueError, match="7 days"):
        gcs_signed_upload(client, bucket="b", name="n", task_token=TOKEN, expires_in=8 * 86400)


def test_credentials_that_cannot_sign_are_refused():
    anonymous = Client(project="p", credentials=AnonymousCredentials())
    with pytest.raises(ValueError, match="cannot sign"):
        gcs_signed_upload(anonymous, bucket="b", name="n", task_token=TOKEN)


async def test_upload_through_the_signed_url_lands_in_the_emulator(
    client: Client, key: rsa.RSAPrivateKey, gcs: GcsEmulator
):
    bucket = gcs.bucket()
    # No Content-Type: the emulator's XML upload parses a JSON body into a dict and fails.
    upload = gcs_signed_upload(
        client,
        bucket=bucket.name,
        name="orders/42.json",
        task_token=TOKEN,
        api_access_endpoint=gcs.host,
    )
    assert signature_holds(upload.url, "PUT", upload.headers, key.public_key())
    response = await asyncio.to_thread(
        requests.put, upload.url, data=b'{"ok": 1}', headers=upload.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    assert gcs.client.bucket(bucket.name).blob("orders/42.json").download_as_bytes() == b'{"ok": 1}'


async def test_cli_presign_gcs(tmp_path: Path, key_info: dict[str, str], key: rsa.RSAPrivateKey):
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(key_info))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR"))}
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(key_file)
    argv = [sys.executable, "-m", "completer.cli", "presign", "--gcs", "--bucket", "drop"]
    argv += ["--key", "in/42.json", "--content-type", "application/json", "-t", TOKEN]
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    upload: dict[str, Any] = json.loads(out)
    assert upload["headers"] == {
        "x-goog-meta-task-token": TOKEN,
        "Content-Type": "application/json",
    }
    assert "x-goog-meta-task-token" in upload["curl"]
    assert signature_holds(upload["url"], "PUT", upload["headers"], key.public_key())


async def test_cli_presign_gcs_without_credentials_is_a_configuration_error(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "missing.json")
    argv = [sys.executable, "-m", "completer.cli", "presign", "--gcs", "--bucket", "drop"]
    argv += ["--key", "k", "-w", "wf", "-a", "a"]
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 9, err.decode()
    assert "GOOGLE_APPLICATION_CREDENTIALS" in err.decode()
