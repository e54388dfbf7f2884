"""The real Firestore emulator from this machine's Google Cloud CLI.

Found like the Pub/Sub emulator (tests/support/pubsub.py): the CLI's SDK root, then the
emulator's own launcher; it needs Java. Clients reach it through ``FIRESTORE_EMULATOR_HOST``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.support.pubsub import sdk_root
from tests.support.services import free_port, missing_service, running, wait_for_port


def emulator_binary() -> Path | None:
    """The Firestore emulator shipped with the installed Google Cloud CLI, if any."""
    root = sdk_root()
    if root is None:
        return None
    binary = root / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator"
    return binary if binary.exists() else None


@contextlib.contextmanager
def firestore_emulator(tmp_dir: Path) -> Iterator[str]:
    """Start the emulator on a free 127.0.0.1 port; yields its ``host:port``."""
    binary = emulator_binary()
    if binary is None:
        missing_service(
            "the Firestore emulator is not installed (gcloud components install "
            "cloud-firestore-emulator, or apt google-cloud-cli-firestore-emulator)"
        )
    if shutil.which("java") is None:
        missing_service("the Firestore emulator needs Java, which is not installed")
    assert binary is not None
    port = free_port()
    argv = [str(binary), "start", "--host=127.0.0.1", f"--port={port}"]
    with running(argv, log_path=tmp_dir / "firestore-emulator.log") as process:
        wait_for_port(port, timeout=90, process=process)
        yield f"127.0.0.1:{port}"
