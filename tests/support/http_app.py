"""The HTTP function built as functions-framework builds it, and a guard that scans its logs.

Both the webhook tests and the link tests use these: an ASGI app made by ``create_app`` from
``functions/http/main.py`` with a given environment (one "process" each: fresh settings, a
fresh engine client), and a capture of every log record that fails when a token, secret or
sealed link reaches it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from completer.handlers.worker import WorkerClient, WorkerExecutor
from completer.logs import JsonFormatter
from completer.settings import get_settings

SOURCE = str(Path(__file__).resolve().parents[2] / "functions" / "http" / "main.py")
# The test's own worker (the user's side, another process in production) logs its tokens
# at DEBUG; everything else, the function and the libraries it uses, is scanned.
WORKER_LOGGERS = ("temporalio.worker", "temporalio.activity")


def token_forms(token: bytes) -> set[str]:
    """Every text form a raw token could take in a log line."""
    b64 = base64.b64encode(token).decode()
    urlsafe = base64.urlsafe_b64encode(token).decode()
    return {
        b64,
        b64.rstrip("="),
        urlsafe.rstrip("="),
        token.hex(),
        repr(token)[2:-1],
        token.decode("latin-1"),
    } | ({token.decode()} if token.isascii() else set())


@contextlib.contextmanager
def scanned_logs(caplog: pytest.LogCaptureFixture, sensitive: set[str]) -> Iterator[io.StringIO]:
    """Capture every log record (JSON lines and caplog); fail if any ``sensitive`` string is in it.

    ``sensitive`` is read at the end, so tests may add to it while they run.
    """
    caplog.set_level(logging.DEBUG)
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    # configure_logging() stops propagation of "completer" records, so listen on it directly.
    ours = logging.getLogger("completer")
    previous_level = ours.level
    ours.setLevel(logging.DEBUG)
    ours.addHandler(handler)
    ours.addHandler(caplog.handler)
    try:
        yield lines
    finally:
        ours.removeHandler(handler)
        ours.removeHandler(caplog.handler)
        ours.setLevel(previous_level)
    scanned = [r for r in caplog.records if not r.name.startswith(WORKER_LOGGERS)]
    text = lines.getvalue() + "\n".join(caplog.handler.format(r) for r in scanned)
    leaked = sorted(s for s in sensitive if s and s in text)
    assert not leaked, f"{len(leaked)} sensitive strings reached the logs"


class FunctionApps:
    """Builds HTTP function apps, each as a fresh process would, and closes their engines."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, temporal_address: str) -> None:
        self.monkeypatch = monkeypatch
        self.temporal_address = temporal_address
        self.executors: list[WorkerExecutor] = []

    def build(self, **env: str) -> tuple[Any, WorkerClient]:
        """The app functions-framework makes with these environment variables, and its engine."""
        for name in [name for name in os.environ if name.startswith("COMPLETER_")]:
            self.monkeypatch.delenv(name)
        settings = {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "COMPLETER_RPC_TIMEOUT_SECONDS": "5",
            # Most tests send unsigned JSON, as behind IAM; pass "" to switch it off.
            "COMPLETER_ALLOW_UNSIGNED": "true",
            **env,
        }
        for name, value in settings.items():
            self.monkeypatch.setenv(name, value)
        # Settings are per process; start this "process" afresh.
        get_settings.cache_clear()
        app = create_app(target="complete", source=SOURCE)
        # functions-framework loads the source as the module "main"; its handler's executor
        # is this "process's" engine client behind its ledger (in-process when unset).
        executor = sys.modules["main"].handler.executor
        assert isinstance(executor, WorkerExecutor)
        engine = executor.client
        assert isinstance(engine, WorkerClient)
        self.executors.append(executor)
        return app, engine

    async def close(self) -> None:
        for executor in self.executors:
            await executor.close()
        get_settings.cache_clear()
