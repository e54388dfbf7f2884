"""completer.handlers.startup: connecting during a Lambda's init phase.

The real-process cases (a wrong CADENCE_DOMAIN against the Cadence frontend model, an
unreachable frontend) are in tests/test_backends_through_triggers.py; here the client is a
stand-in whose connection hangs, fails or refuses the configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from completer.backends.cadence import UnknownDomain
from completer.errors import EngineUnavailable
from completer.handlers.startup import connect_during_init


class Client:
    def __init__(self, outcome: BaseException | None = None, *, hang: bool = False) -> None:
        self.outcome, self.hang = outcome, hang
        self.backend = SimpleNamespace(name="cadence")
        self.connected = self.closed = False

    async def ensure_connected(self) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        if self.outcome is not None:
            raise self.outcome
        self.connected = True

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_connects_on_the_loop_later_invocations_use(loop: asyncio.AbstractEventLoop):
    client = Client()
    connect_during_init(client, loop)  # type: ignore[arg-type]
    assert client.connected


def test_a_configuration_the_engine_refuses_stops_the_start_with_one_sentence(
    loop: asyncio.AbstractEventLoop,
):
    sentence = "CADENCE_DOMAIN is 'ordres', a domain the Cadence cluster at x does not have."
    with pytest.raises(SystemExit) as info:
        connect_during_init(Client(UnknownDomain(sentence)), loop)  # type: ignore[arg-type]
    assert info.value.code == f"activity-completer: {sentence}"


@pytest.mark.parametrize(
    ("client", "reason"),
    [
        (Client(EngineUnavailable("Cadence at x cannot be reached.")), "cannot be reached"),
        (Client(hang=True), "no answer in 0.1 s"),
    ],
    ids=["unreachable", "stalled"],
)
def test_an_engine_down_at_start_is_logged_and_the_start_goes_on(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture, client: Any, reason: str
):
    with caplog.at_level(logging.WARNING, logger="completer"):
        connect_during_init(client, loop, timeout=0.1)
    [record] = caplog.records
    assert record.getMessage() == "engine not connected at start; the first invocation connects"
    assert reason in record.completer["reason"]  # type: ignore[attr-defined]
    assert not client.connected
