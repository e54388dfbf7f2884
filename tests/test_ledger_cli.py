"""``completer ledger init`` and ``completer ledger show`` as real processes, on DynamoDB
served by moto (the ledger a deployment on AWS uses)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from completer.cli import EXIT_CODES
from completer.ledger import Ledger
from completer.ledger.dynamodb import DynamoDBStore
from completer.models import CompletionOutcome, CompletionRequest, Origin, Status
from tests.support.moto_server import aws_env, moto_server
from tests.support.services import venv_tool

COMPLETER = venv_tool("completer")
TOKEN = "CiQ2N2Y1YWJjZC0xMjM0LTU2NzgtOWFiYy1kZWYwMTIzNDU2NzgSBXdmLTQy"


@pytest.fixture(scope="module")
def ledger_env() -> Iterator[dict[str, str]]:
    with moto_server() as endpoint:
        yield {
            **aws_env(endpoint),
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
            "COMPLETER_LEDGER": f"dynamodb://ledger-{uuid.uuid4().hex[:8]}",
        }


def completer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert COMPLETER is not None
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("COMPLETER_")}
    return subprocess.run(
        [COMPLETER, *args],
        capture_output=True,
        text=True,
        env={**inherited, **env},
        timeout=60,
        check=False,
    )


class Engine:
    async def execute(
        self, request: CompletionRequest, /, *, origin: Origin | None = None
    ) -> CompletionOutcome:
        return CompletionOutcome(status=Status.COMPLETED)


def test_init_then_show_what_was_done(ledger_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    created = completer("ledger", "init", env=ledger_env)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["created"] is True
    assert json.loads(completer("ledger", "init", env=ledger_env).stdout)["created"] is False

    for name, value in ledger_env.items():
        monkeypatch.setenv(name, value)
    table = ledger_env["COMPLETER_LEDGER"].removeprefix("dynamodb://")

    async def record() -> None:
        ledger = Ledger(
            DynamoDBStore(ledger_env["COMPLETER_LEDGER"], table=table), scope="temporal"
        )
        try:
            await ledger.wrap(Engine()).execute(
                CompletionRequest.build({"task_token": TOKEN, "result": {"ok": True}}),
                origin=Origin("s3", "s3://drop/orders/42.json?versionId=3HL4kqtJ"),
            )
            await ledger.registry.register(
                "invoice-7", activity={"task_token": TOKEN}, ttl_seconds=600
            )
        finally:
            await ledger.close()

    asyncio.run(record())

    shown = completer("ledger", "show", "-t", TOKEN, env=ledger_env)
    assert shown.returncode == 0, shown.stderr
    held: dict[str, Any] = json.loads(shown.stdout)
    assert held["state"] == "completed"
    assert held["origin"] == {
        "trigger": "s3",
        "source": "s3://drop/orders/42.json?versionId=3HL4kqtJ",
    }
    assert held["outcome"]["status"] == "completed"
    assert TOKEN not in shown.stdout

    by_key = completer("ledger", "show", "-k", "invoice-7", env=ledger_env)
    assert by_key.returncode == 0, by_key.stderr
    assert json.loads(by_key.stdout)["registration"]["activity"]["token"].startswith("token:")
    assert TOKEN not in by_key.stdout

    nothing = completer("ledger", "show", "-w", "order-1", "-a", "approve", env=ledger_env)
    assert (nothing.returncode, nothing.stdout.strip()) == (0, "null")


def test_show_needs_a_shared_ledger_and_a_reachable_one():
    unset = completer("ledger", "show", "-w", "w", "-a", "a", env={})
    assert unset.returncode == EXIT_CODES["configuration"]
    assert unset.stderr.startswith("error [configuration]: COMPLETER_LEDGER is not set")

    wrong = completer("ledger", "show", "-k", "x", env={"COMPLETER_LEDGER": "redis://x"})
    assert wrong.returncode == EXIT_CODES["configuration"]
    assert wrong.stderr.startswith("error [configuration]: COMPLETER_LEDGER is invalid")

    dead = completer(
        "ledger",
        "show",
        "-k",
        "x",
        env={
            **aws_env("http://127.0.0.1:9"),
            "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
            "COMPLETER_LEDGER": "dynamodb://ledger",
        },
    )
    assert dead.returncode == EXIT_CODES["engine_unavailable"], dead.stderr
    assert "completion ledger" in dead.stderr


def test_show_on_the_firestore_emulator(tmp_path_factory: pytest.TempPathFactory):
    from google.cloud import firestore

    from completer.ledger.firestore import FirestoreStore
    from tests.support.firestore import firestore_emulator

    with firestore_emulator(tmp_path_factory.mktemp("firestore-cli")) as host:
        env = {
            "FIRESTORE_EMULATOR_HOST": host,
            "GOOGLE_CLOUD_PROJECT": "completer-cli",
            "COMPLETER_LEDGER": "firestore://(default)/ledger",
        }

        async def record() -> None:
            previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
            os.environ["FIRESTORE_EMULATOR_HOST"] = host
            try:
                client = firestore.AsyncClient(project="completer-cli")
            finally:
                if previous is None:
                    os.environ.pop("FIRESTORE_EMULATOR_HOST")
                else:
                    os.environ["FIRESTORE_EMULATOR_HOST"] = previous
            store = FirestoreStore(
                env["COMPLETER_LEDGER"], database="(default)", collection="ledger", client=client
            )
            ledger = Ledger(store, scope="temporal")
            try:
                await ledger.wrap(Engine()).execute(
                    CompletionRequest.build(
                        {"workflow_id": "order-42", "run_id": "r1", "activity_id": "approve"}
                    ),
                    origin=Origin("pubsub", "1234567890"),
                )
            finally:
                await ledger.close()

        asyncio.run(record())
        shown = completer("ledger", "show", "-w", "order-42", "-r", "r1", "-a", "approve", env=env)
        assert shown.returncode == 0, shown.stderr
        held = json.loads(shown.stdout)
        assert held["origin"] == {"trigger": "pubsub", "source": "1234567890"}
        assert held["activity"] == "workflow:order-42/run:r1/activity:approve"
        init = completer("ledger", "init", env=env)
        assert init.returncode == 0
        assert "nothing to create" in init.stderr
