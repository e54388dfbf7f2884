"""The completion ledger of the local stack: the services a deployment's ledger would use.

The GCP functions (HTTP, Pub/Sub) share a Firestore collection on the Firestore emulator of
the Google Cloud CLI; the S3 Lambda a DynamoDB table on moto's server. So a duplicate sent
locally gets what it gets in a deployment: the first answer, ``"replayed": true``. Without
the emulator the GCP functions keep the in-process ledger (one per instance), and the stack
says so. See docs/ledger.md.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = [
    "KEY_PATTERN",
    "LEDGER_COLLECTION",
    "LEDGER_TABLE",
    "KeyRegistrar",
    "create_table",
    "dynamodb_env",
    "find_firestore_emulator",
    "firestore_env",
]

LEDGER_COLLECTION = "completer-ledger"
LEDGER_TABLE = "completer-ledger"
# The S3 function's COMPLETER_S3_KEY_PATTERN: a partner's file named by an order number.
KEY_PATTERN = "inbox/{correlation_key}.json"


def find_firestore_emulator() -> tuple[Path | None, str]:
    """The Firestore emulator of the installed Google Cloud CLI, or None and why not."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None, "the Google Cloud CLI (gcloud) is not installed"
    try:
        done = subprocess.run(  # noqa: S603 - the user's gcloud, no shell
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return None, "`gcloud info` failed"
    binary = Path(done.stdout.strip()) / "platform" / "cloud-firestore-emulator"
    binary /= "cloud_firestore_emulator"
    if not binary.exists():
        return None, (
            "the Firestore emulator is not installed (gcloud components install "
            "cloud-firestore-emulator, or apt install google-cloud-cli-firestore-emulator)"
        )
    if shutil.which("java") is None:
        return None, "the Firestore emulator needs Java, which is not installed"
    return binary, ""


def firestore_argv(binary: Path, host: str, port: int) -> list[str]:
    """The emulator's command line."""
    return [str(binary), "start", f"--host={host}", f"--port={port}"]


def firestore_env(emulator: str, project: str) -> dict[str, str]:
    """What a GCP function needs to keep its ledger on the emulator at ``emulator``."""
    return {
        "COMPLETER_LEDGER": f"firestore://(default)/{LEDGER_COLLECTION}",
        "FIRESTORE_EMULATOR_HOST": emulator,
        "GOOGLE_CLOUD_PROJECT": project,
    }


def dynamodb_env(endpoint: str) -> dict[str, str]:
    """What the S3 Lambda needs to keep its ledger on moto's DynamoDB at ``endpoint``."""
    return {"COMPLETER_LEDGER": f"dynamodb://{LEDGER_TABLE}", "AWS_ENDPOINT_URL_DYNAMODB": endpoint}


class KeyRegistrar:
    """What the local workflows' activities register their correlation keys with.

    The S3 function's chain (keys -> ledger -> engine), built in this process: the same
    DynamoDB table on moto, the same Temporal server. A registration that finds a file
    already waiting for its key completes the activity through it at once, as
    ``completer.activity.register_async`` does in a deployment (docs/callbacks-and-keys.md).
    """

    def __init__(self, endpoint: str, credentials: dict[str, str], temporal_address: str) -> None:
        import boto3

        from completer.backends.temporal import TemporalBackend
        from completer.client import CompletionClient
        from completer.correlation import build_executor
        from completer.ledger import Ledger
        from completer.ledger.dynamodb import DynamoDBStore, client_config
        from completer.settings import Settings

        # What the stack's functions run with (they get no COMPLETER_* of this shell).
        settings = Settings(
            COMPLETER_BACKEND="temporal", COMPLETER_DATA_CONVERTER=None, COMPLETER_LEDGER=None
        )
        client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=credentials["AWS_DEFAULT_REGION"],
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
            config=client_config(5.0),
        )
        store = DynamoDBStore(f"dynamodb://{LEDGER_TABLE}", table=LEDGER_TABLE, client=client)
        # The scope and TTL the S3 function's ledger uses (create_ledger).
        self.ledger = Ledger(
            store,
            ttl_seconds=settings.ledger_ttl_seconds,
            rpc_timeout_seconds=settings.rpc_timeout_seconds,
            scope=settings.backend,
        )
        backend = TemporalBackend(settings)
        # The stack's own server, whatever TEMPORAL_* this process was started with.
        backend.connect_config = {**backend.connect_config, "target_host": temporal_address}
        self.client = CompletionClient(backend, settings=settings)
        self.chain = build_executor(settings, self.client, ledger=self.ledger)

    async def register(self, key: str, task_token: str) -> Any:
        """Let ``key`` name the activity of ``task_token``; the outcome of what waited, or None."""
        from completer.activity import register_async

        return await register_async(key, task_token=task_token, executor=self.chain)

    async def waiting_for(self, key: str) -> bool:
        """Whether a request for ``key`` is kept until someone registers it."""
        return await self.ledger.registry.peek_buffered(key) is not None

    async def close(self) -> None:
        await self.client.close()
        await self.ledger.close()


def create_table(endpoint: str, credentials: dict[str, str]) -> None:
    """Create the ledger table on moto (what ``completer ledger init`` does)."""
    import boto3

    from completer.ledger.dynamodb import create_table as create

    client: Any = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=credentials["AWS_DEFAULT_REGION"],
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        create(LEDGER_TABLE, client=client)
    finally:
        client.close()
