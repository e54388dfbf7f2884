"""Link pages through the transport-neutral core, ``HttpHandler.handle(HttpRequest)``.

Both HTTP functions (GCP's functions-framework, AWS Lambda) adapt their requests to this
core, so these tests cover the pages of either transport by construction. The engine is
the real Temporal dev server; the ledger is a real one (memory, and the Firestore emulator
once) wrapping a real completion client, as the functions build it.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from completer.client import CompletionClient
from completer.handlers.exchange import HttpAnswer, HttpRequest
from completer.handlers.http import HttpHandler
from completer.ledger import Ledger
from completer.ledger.memory import MemoryStore
from completer.links import create_link, open_receipt
from completer.settings import Settings
from tests.support.services import free_port
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = pytest.mark.temporal

SECRET = base64.urlsafe_b64encode(os.urandom(30)).decode()
BASE = "https://fn.example/complete"


def link_settings() -> Settings:
    return Settings(
        COMPLETER_BACKEND="temporal",
        COMPLETER_RPC_TIMEOUT_SECONDS=5,
        COMPLETER_LINK_SECRET=SECRET,
        COMPLETER_ALLOW_UNSIGNED=True,
    )


@pytest.fixture
async def client(temporal_server: TemporalServer) -> AsyncIterator[CompletionClient]:
    async with CompletionClient.create(link_settings()) as engine:
        yield engine


def get(url: str, *, language: str | None = None) -> HttpRequest:
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    headers = {"accept-language": language} if language else {}
    return HttpRequest("GET", headers=headers, query=query, body=b"")


def post_form(url: str) -> HttpRequest:
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    body = urlencode({"link": query["link"]}).encode()
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "content-length": str(len(body)),
        "sec-fetch-site": "same-origin",
    }
    return HttpRequest("POST", headers=headers, query=query, body=body)


def link(activity: WaitingActivity, choice: str = "approve") -> str:
    if choice == "reject":
        return create_link(
            BASE,
            secret=SECRET,
            choice="reject",
            task_token=activity.token_b64,
            error={"message": "no", "type": "Rejected"},
            title="Refund 120.00 EUR",
        )
    return create_link(
        BASE,
        secret=SECRET,
        choice=choice,
        task_token=activity.token_b64,
        result={"approved": True, "amount": "120.00 EUR"},
        title="Refund 120.00 EUR",
        description="Order 42",
    )


def receipt_url(answer: HttpAnswer) -> str:
    assert answer.status == 303
    location = answer.headers["Location"]
    assert location.startswith("?receipt=")
    return BASE + location


async def test_without_a_ledger_the_page_says_it_cannot_know(
    client: CompletionClient, waiting: WaitingActivity
):
    handler = HttpHandler(client, settings=link_settings())
    url = link(waiting)
    page = await handler.handle(get(url))
    assert (page.status, page.media_type) == (200, "text/html")
    text = page.text()
    assert "Refund 120.00 EUR" in text
    assert "Order 42" in text
    assert "120.00 EUR</dd>" in text
    assert "cannot know" in text
    done = await handler.handle(post_form(url))
    receipt = await handler.handle(get(receipt_url(done)))
    assert receipt.status == 200
    assert "Done: you chose “Approve”" in receipt.text()
    assert await waiting.handle.result() == {"approved": True, "amount": "120.00 EUR"}
    # Without a ledger, the used link's button is still shown; pressing it says the step
    # is no longer waiting.
    assert "<form" in (await handler.handle(get(url))).text()
    again = await handler.handle(post_form(url))
    assert again.status == 404
    assert "no longer waiting" in again.text()


async def test_with_a_ledger_the_flow_knows_what_was_decided(
    client: CompletionClient, waiting: WaitingActivity
):
    ledger = Ledger(MemoryStore(), scope="temporal")
    await assert_ledger_flow(ledger, client, waiting)


async def assert_ledger_flow(
    ledger: Ledger, client: CompletionClient, waiting: WaitingActivity
) -> None:
    handler = HttpHandler(ledger.wrap(client), settings=link_settings(), decisions=ledger)
    approve, reject = link(waiting), link(waiting, "reject")
    first_page = (await handler.handle(get(approve))).text()
    assert "<form" in first_page
    # Only a ledger every instance shares can say "nobody decided yet" for sure.
    assert ("cannot know" in first_page) is (not ledger.shared)
    first = await handler.handle(post_form(approve))
    decided_at = open_receipt(
        parse_qs(urlsplit(receipt_url(first)).query)["receipt"][0], secret=SECRET
    ).decided_at
    # A replay of the same choice redirects to a receipt of the first decision.
    replay = await handler.handle(post_form(approve))
    replayed_at = open_receipt(
        parse_qs(urlsplit(receipt_url(replay)).query)["receipt"][0], secret=SECRET
    ).decided_at
    assert abs(replayed_at - decided_at) <= 1
    for url in (approve, reject):
        page = await handler.handle(get(url, language="fr-FR,fr;q=0.9"))
        assert page.status == 200
        assert page.headers["Content-Language"] == "fr"
        assert "<form" not in page.text()
        assert "Approuver" in page.text()
    refused = await handler.handle(post_form(reject))
    assert refused.status == 409
    assert "“Approve” was chosen on" in refused.text()
    assert await waiting.handle.result() == {"approved": True, "amount": "120.00 EUR"}


async def test_with_a_firestore_ledger_too(
    firestore_host: str, client: CompletionClient, waiting: WaitingActivity
):
    from google.cloud import firestore

    from completer.ledger.firestore import FirestoreStore

    collection = f"pages-{uuid.uuid4().hex}"
    store = FirestoreStore(
        f"firestore://(default)/{collection}",
        database="(default)",
        collection=collection,
        client=firestore.AsyncClient(project="completer-test"),
        timeout=10,
    )
    async with Ledger(store, scope="temporal") as ledger:
        await assert_ledger_flow(ledger, client, waiting)


async def test_engine_down_page_waits_as_long_as_retry_after(
    monkeypatch: pytest.MonkeyPatch, waiting: WaitingActivity
):
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    down = CompletionClient.create(link_settings())  # connects on the first request
    try:
        answer = await HttpHandler(down, settings=link_settings()).handle(post_form(link(waiting)))
    finally:
        await down.close()
    assert answer.status == 503
    seconds = answer.headers["Retry-After"]
    assert f"try again in {seconds} second" in answer.text()
    assert "engine_unavailable" not in answer.text()
    assert await waiting.pending_activity() is not None


async def test_expired_altered_and_receipt_pages(
    client: CompletionClient, waiting: WaitingActivity
):
    handler = HttpHandler(client, settings=link_settings())
    expired = create_link(
        BASE,
        secret=SECRET,
        choice="approve",
        task_token=waiting.token_b64,
        ttl_seconds=60,
        now=time.time() - 3600,
    )
    answers: dict[str, Any] = {
        "expired": await handler.handle(get(expired)),
        "altered": await handler.handle(get(expired.replace("link=gAAAAA", "link=gAAAAB"))),
        "bad receipt": await handler.handle(get(f"{BASE}?receipt=nonsense")),
    }
    assert answers["expired"].status == 401
    assert "This link has expired" in answers["expired"].text()
    for name in ("altered", "bad receipt"):
        assert answers[name].status == 401
        assert "This link does not work" in answers[name].text()
    # HEAD of a receipt is a page too; a receipt is no link, so its POST is the JSON API's.
    assert (await handler.handle(HttpRequest("HEAD", query={"receipt": "x"}))).status == 401
    json_post = await handler.handle(HttpRequest("POST", query={"receipt": "x"}, body=b""))
    assert json_post.status == 415
    assert json_post.media_type == "application/json"


async def test_the_receipt_keeps_other_query_parameters(
    client: CompletionClient, waiting: WaitingActivity
):
    handler = HttpHandler(client, settings=link_settings())
    request = post_form(link(waiting))
    query = {**request.query, "code": "k 1", "odd": "\ud800"}
    answer = await handler.handle(
        HttpRequest("POST", headers=request.headers, query=query, body=await request.read(10_000))
    )
    assert answer.status == 303
    assert answer.headers["Location"].startswith("?code=k+1&odd=%3F&receipt=")
    assert await waiting.handle.result() == {"approved": True, "amount": "120.00 EUR"}


async def test_a_decision_made_by_a_webhook_is_shown_without_a_choice(
    client: CompletionClient, waiting: WaitingActivity
):
    ledger = Ledger(MemoryStore(), scope="temporal")
    handler = HttpHandler(ledger.wrap(client), settings=link_settings(), decisions=ledger)
    body = b'{"task_token": "%s", "result": 7}' % waiting.token_b64.encode()
    done = await handler.handle(
        HttpRequest("POST", headers={"content-type": "application/json"}, body=body)
    )
    assert done.status == 200
    page = await handler.handle(get(link(waiting)))
    assert page.status == 200
    assert "This was already decided" in page.text()
    assert "Decided on" in page.text()
    assert "was chosen" not in page.text()
    assert await waiting.handle.result() == 7
