"""Shared fixtures: a real Temporal dev server for the session, a worker, waiting activities."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from temporalio.client import Client

from completer.settings import Settings
from tests.support.firestore import firestore_emulator
from tests.support.moto_server import FAKE_CREDENTIALS, REGION, moto_server
from tests.support.temporal import (
    TemporalServer,
    WaitingActivity,
    connect_when_ready,
    start_waiting,
    temporal_dev_server,
    waiting_worker,
)


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """A Temporal dev server on a free port; TEMPORAL_ADDRESS points at it for the session."""
    with temporal_dev_server(tmp_path_factory.mktemp("temporal")) as server:
        previous = os.environ.get("TEMPORAL_ADDRESS")
        os.environ["TEMPORAL_ADDRESS"] = server.address
        try:
            yield server
        finally:
            if previous is None:
                os.environ.pop("TEMPORAL_ADDRESS", None)
            else:
                os.environ["TEMPORAL_ADDRESS"] = previous


@pytest.fixture(scope="session")
async def temporal_client(temporal_server: TemporalServer) -> Client:
    return await connect_when_ready(temporal_server.address)


@pytest.fixture(scope="session")
async def task_queue(temporal_client: Client) -> AsyncIterator[str]:
    async with waiting_worker(temporal_client) as queue:
        yield queue


@pytest.fixture
async def waiting(temporal_client: Client, task_queue: str) -> WaitingActivity:
    """A fresh workflow whose activity waits to be completed from outside."""
    return await start_waiting(temporal_client, task_queue)


@pytest.fixture
def new_waiting(temporal_client: Client, task_queue: str) -> Any:
    """A factory for more waiting activities in one test."""

    async def make() -> WaitingActivity:
        return await start_waiting(temporal_client, task_queue)

    return make


@pytest.fixture
def settings(temporal_server: TemporalServer) -> Settings:
    """Settings for the Temporal backend with a short deadline, built explicitly per test."""
    return Settings(COMPLETER_BACKEND="temporal", COMPLETER_RPC_TIMEOUT_SECONDS=5)


# --- ledger services (docs/ledger.md): the Firestore emulator, DynamoDB on moto -----------

LEDGER_TABLE = "completer-ledger-test"
LEDGER_COLLECTION = "completer-ledger"


@pytest.fixture(scope="session")
def firestore_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with firestore_emulator(tmp_path_factory.mktemp("firestore")) as host:
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        try:
            yield host
        finally:
            if previous is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    names = {
        "AWS_ENDPOINT_URL_DYNAMODB": None,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
    previous = {name: os.environ.get(name) for name in names}
    with moto_server() as endpoint:
        names["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        os.environ.update({k: v for k, v in names.items() if v is not None})
        try:
            from completer.ledger.dynamodb import create_table

            assert create_table(LEDGER_TABLE) is True
            assert create_table(LEDGER_TABLE) is False  # a second init is harmless
            yield endpoint
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
