"""gcp-storage-emulator (PyPI) as a real process on a free 127.0.0.1 port, and clients for it.

google-cloud-storage reaches it through ``STORAGE_EMULATOR_HOST``: the functions under test
get that variable; this process's clients are given the endpoint explicitly instead, so the
test process's environment is left alone.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.storage import Bucket, Client

from tests.support.services import free_port, missing_service, running, venv_tool, wait_for_port

PROJECT = "completer-test"


@dataclass
class GcsEmulator:
    """A running emulator: its ``STORAGE_EMULATOR_HOST`` value and a client bound to it."""

    host: str

    @property
    def client(self) -> Client:
        """A new storage client for the emulator (anonymous, like the emulator expects)."""
        return Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.host),
        )

    def bucket(self, prefix: str = "drop") -> Bucket:
        """Create a fresh bucket."""
        return self.client.create_bucket(f"{prefix}-{uuid.uuid4().hex[:10]}")

    def env(self) -> dict[str, str]:
        """Environment that points a subprocess's google-cloud-storage at the emulator."""
        return {"STORAGE_EMULATOR_HOST": self.host, "GOOGLE_CLOUD_PROJECT": PROJECT}


@contextlib.contextmanager
def gcs_emulator(tmp_dir: Path) -> Iterator[GcsEmulator]:
    """Start gcp-storage-emulator in memory on a free port; kill it at the end."""
    binary = venv_tool("gcp-storage-emulator")
    if binary is None:
        missing_service("gcp-storage-emulator is not installed (pip install gcp-storage-emulator)")
    assert binary is not None
    port = free_port()
    argv = [binary, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"]
    with running(argv, log_path=tmp_dir / "gcs-emulator.log") as process:
        wait_for_port(port, timeout=60, process=process)
        yield GcsEmulator(host=f"http://127.0.0.1:{port}")


def service_account_key(
    email: str = "uploads@completer-test.iam.gserviceaccount.com",
) -> tuple[rsa.RSAPrivateKey, dict[str, str]]:
    """A fresh RSA key and the service-account key file content for it (tests only)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": email,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return key, info


def signing_client(info: dict[str, str]) -> Client:
    """A storage client whose service-account key signs URLs (it never calls Google)."""
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(info)
    return Client(project=PROJECT, credentials=credentials)
