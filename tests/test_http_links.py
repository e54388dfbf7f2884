"""Completion links on the HTTP function: GET shows a page, only its POST completes.

Apps are built by ``functions_framework.create_app`` from ``functions/http/main.py`` with
``COMPLETER_LINK_SECRET`` in the environment (ASGI apps driven in-process; the function's
in-memory ledger), against the real Temporal dev server. A POST answers 303 to a receipt
(Post/Redirect/Get). Every test checks that no task token, sealed link or secret reached a
log or a page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError as TemporalActivityError
from temporalio.exceptions import ApplicationError

from completer.links import create_link, open_receipt
from tests.support.asgi import AsgiResponse, call
from tests.support.http_app import FunctionApps, scanned_logs, token_forms
from tests.support.temporal import TemporalServer, WaitingActivity

pytestmark = pytest.mark.temporal

SECRET = base64.urlsafe_b64encode(os.urandom(30)).decode()
BASE = "https://fn.example/complete"
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

# Task tokens, secrets and sealed links: none may reach a log; only sealed links a page.
SENSITIVE: set[str] = set()
SEALED: set[str] = set()


@dataclass
class App:
    asgi: Any

    async def get(self, url: str, *, headers: dict[str, str] | None = None) -> AsgiResponse:
        return await call(self.asgi, "GET", query=urlsplit(url).query, headers=headers)

    async def post(
        self,
        url: str,
        *,
        data: dict[str, str] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> AsgiResponse:
        """POST a form (``data``, as a browser does), JSON, or nothing, to ``url``."""
        sent = dict(headers or {})
        body = b""
        if data is not None:
            body = urlencode(data).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        return await call(self.asgi, "POST", query=urlsplit(url).query, body=body, headers=sent)


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    SENSITIVE.clear()
    SEALED.clear()
    SENSITIVE.add(SECRET)
    with scanned_logs(caplog, SENSITIVE) as lines:
        yield lines


@pytest.fixture
async def make_app(
    temporal_server: TemporalServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., App]]:
    apps = FunctionApps(monkeypatch, temporal_server.address)

    def make(**env: str) -> App:
        return App(apps.build(**env)[0])

    yield make
    await apps.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app(COMPLETER_LINK_SECRET=SECRET)


@pytest.fixture
def activity(waiting: WaitingActivity) -> WaitingActivity:
    SENSITIVE.update(token_forms(waiting.task_token))
    return waiting


def approve_link(activity: WaitingActivity, **kwargs: Any) -> str:
    options: dict[str, Any] = {
        "secret": SECRET,
        "choice": "approve",
        "task_token": activity.token_urlsafe,
        "result": {"approved": True, "note": "<b>ok</b>"},
        **kwargs,
    }
    url = create_link(BASE, **options)
    SENSITIVE.add(sealed_of(url))
    SEALED.add(sealed_of(url))
    return url


def reject_link(activity: WaitingActivity, *, by_token: bool = False) -> str:
    # The ledger keys an activity by how requests name it: links of one activity that
    # should know of each other's decision name it the same way (approval_links does).
    naming: dict[str, Any] = {"task_token": activity.token_urlsafe}
    if not by_token:
        naming = {
            "workflow_id": activity.workflow_id,
            "activity_id": activity.activity_id,
            "run_id": activity.run_id,
        }
    url = create_link(
        BASE,
        secret=SECRET,
        choice="reject",
        **naming,
        error={"message": "rejected <by> ana", "type": "Rejected", "non_retryable": True},
    )
    SENSITIVE.add(sealed_of(url))
    SEALED.add(sealed_of(url))
    return url


def sealed_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["link"][0]


def page_text(response: AsgiResponse) -> str:
    assert response.mimetype == "text/html"
    assert response.mimetype_params.get("charset") == "utf-8"
    for name, value in PAGE_HEADERS.items():
        assert response.headers.get(name) == value
    assert response.headers.get("X-Frame-Options") == "DENY"
    text: str = response.get_data(as_text=True)
    assert text.startswith("<!doctype html>")
    # The confirmation form repeats the sealed link (the capability the person already
    # holds); a task token or a secret never appears in any page.
    for secret in SENSITIVE - SEALED:
        assert secret not in text
    return text


def form_fields(text: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', text))


async def still_waiting(activity: WaitingActivity) -> bool:
    return await activity.pending_activity() is not None


# --- the flow -----------------------------------------------------------------------------


async def test_get_shows_a_page_and_completes_nothing(app: App, activity: WaitingActivity):
    url = approve_link(activity, ttl_seconds=3600)
    response = await app.get(url)
    assert response.status_code == 200
    text = page_text(response)
    assert '<form method="post">' in text
    assert '<button type="submit">Approve</button>' in text
    # The preset result is shown, escaped; the expiry is shown.
    assert "&lt;b&gt;ok&lt;/b&gt;" in text
    assert "<b>ok</b>" not in text
    assert "UTC" in text
    # The function's ledger is in memory (COMPLETER_LEDGER unset): it knows this instance's
    # decisions only, so an undecided link's page says it cannot know for sure.
    assert "cannot know" in text
    assert form_fields(text) == {"link": html.escape(sealed_of(url))}
    # Prefetching scanners GET links, sometimes twice: still waiting.
    await app.get(url)
    assert await still_waiting(activity)


async def test_post_redirects_to_a_receipt_that_reloads_without_resubmitting(
    app: App, activity: WaitingActivity
):
    url = approve_link(activity, title="Refund <42> EUR")
    page = page_text(await app.get(url))
    response = await app.post(
        url, data=form_fields(page), headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert response.status_code == 303
    assert response.get_data() == b""
    location = response.headers["Location"]
    assert location.startswith("?receipt=")  # resolved against the function's own URL
    assert await activity.handle.result() == {"approved": True, "note": "<b>ok</b>"}
    for _ in range(2):  # a reload shows the same receipt and asks the engine nothing
        receipt = await app.get(location)
        assert receipt.status_code == 200
        text = page_text(receipt)
        assert "Done: you chose “Approve”" in text
        assert "Refund &lt;42&gt; EUR" in text
        assert "already" not in text.lower()


async def test_empty_post_completes_too(
    app: App, activity: WaitingActivity, no_secrets_in_logs: io.StringIO
):
    logs = no_secrets_in_logs
    response = await app.post(approve_link(activity))
    assert response.status_code == 303
    assert await activity.handle.result() == {"approved": True, "note": "<b>ok</b>"}
    logged = logs.getvalue()
    assert '"message": "link request answered"' in logged
    assert '"choice": "approve"' in logged
    assert '"outcome": "completed"' in logged


async def test_reject_link_fails_the_workflow_with_the_preset_error(
    app: App, activity: WaitingActivity
):
    url = reject_link(activity)
    page = page_text(await app.get(url))
    assert '<button type="submit" class="reject">Reject</button>' in page
    assert "rejected &lt;by&gt; ana" in page
    response = await app.post(url, data=form_fields(page))
    assert response.status_code == 303
    assert "stopped as rejected" in page_text(await app.get(response.headers["Location"]))
    with pytest.raises(WorkflowFailureError) as info:
        await activity.handle.result()
    assert isinstance(info.value.cause, TemporalActivityError)
    cause = info.value.cause.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.message, cause.type, cause.non_retryable) == (
        "rejected <by> ana",
        "Rejected",
        True,
    )


async def test_after_a_decision_the_links_show_it_and_the_other_choice_is_refused(
    app: App, activity: WaitingActivity
):
    url = approve_link(activity)
    first = await app.post(url)
    assert first.status_code == 303
    decided_at = receipt_time(first)
    # Pressing again (back button, second tab) is the same choice: the same receipt.
    again = await app.post(url)
    assert again.status_code == 303
    assert abs(receipt_time(again) - decided_at) <= 1
    # Opening the used link, or the other choice's, shows the decision and no button.
    reject = reject_link(activity, by_token=True)
    for link in (url, reject):
        response = await app.get(link)
        assert response.status_code == 200
        text = page_text(response)
        assert "This was already decided" in text
        assert "“Approve” was chosen on" in text
        assert "<form" not in text
    # The other choice's POST meets the decision: 409, the same page, nothing changed.
    other = await app.post(reject)
    assert other.status_code == 409
    assert "“Approve” was chosen on" in page_text(other)
    assert await activity.handle.result() == {"approved": True, "note": "<b>ok</b>"}


def receipt_time(response: AsgiResponse) -> int:
    sealed = parse_qs(urlsplit(response.headers["Location"]).query)["receipt"][0]
    return open_receipt(sealed, secret=SECRET).decided_at


# --- refused links: a 401 page, never 410, nothing completed ------------------------------


def tampered(url: str) -> str:
    sealed = sealed_of(url)
    flipped = sealed[:30] + ("A" if sealed[30] != "A" else "B") + sealed[31:]
    return url.replace(sealed, flipped)


@pytest.mark.parametrize("case", ["expired", "tampered", "wrong_choice", "wrong_secret"])
async def test_refused_link_is_a_401_page_on_get_and_post(
    app: App, activity: WaitingActivity, case: str
):
    expected = "This link does not work"
    if case == "expired":
        url = approve_link(activity, ttl_seconds=60, now=time.time() - 3600)
        expected = "This link has expired"
    elif case == "tampered":
        url = tampered(approve_link(activity))
    elif case == "wrong_choice":
        url = approve_link(activity).replace("choice=approve", "choice=reject")
    else:
        other = base64.urlsafe_b64encode(os.urandom(30)).decode()
        SENSITIVE.add(other)
        url = approve_link(activity, secret=other)
    for method in (app.get, app.post):
        response = await method(url)
        assert response.status_code == 401
        text = page_text(response)
        assert expected in text
        assert "<form" not in text
    assert await still_waiting(activity)


async def test_an_altered_receipt_is_a_401_page(app: App, activity: WaitingActivity):
    response = await app.post(approve_link(activity))
    location = response.headers["Location"]
    altered = location[:40] + ("A" if location[40] != "A" else "B") + location[41:]
    refused = await app.get(altered)
    assert refused.status_code == 401
    assert "This link does not work" in page_text(refused)
    # A receipt is never a link: its POST is the JSON API's (and refused as a form).
    assert (await app.post(location, data={"a": "b"})).status_code == 415


async def test_post_from_another_site_or_with_another_link_is_refused(
    app: App, activity: WaitingActivity, new_waiting: Any
):
    url = approve_link(activity)
    cross = await app.post(
        url, data={"link": sealed_of(url)}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 401
    assert "still works" in page_text(cross)
    other: WaitingActivity = await new_waiting()
    SENSITIVE.update(token_forms(other.task_token))
    mixed = await app.post(url, data={"link": sealed_of(approve_link(other))})
    assert mixed.status_code == 401
    assert "Open the link again from your e-mail" in page_text(mixed)
    huge = await app.post(url, data={"link": "x" * 20_000})
    assert huge.status_code == 413
    assert await still_waiting(activity)
    assert await still_waiting(other)


async def test_html_in_the_choice_is_escaped(app: App, activity: WaitingActivity):
    url = approve_link(activity, choice='<script>alert("x")</script>')
    text = page_text(await app.get(url))
    assert "<script>" not in text
    assert "&lt;script&gt;" in text


async def test_the_browser_language_is_spoken(app: App, activity: WaitingActivity):
    url = approve_link(activity)
    response = await app.get(url, headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert response.headers["Content-Language"] == "de"
    assert "Genehmigen" in page_text(response)


# --- everything else keeps the HTTP function's checks (docs/triggers/http.md) ------------


async def test_links_disabled_get_is_405_json(
    make_app: Callable[..., App], activity: WaitingActivity
):
    app = make_app()
    url = approve_link(activity)
    response = await app.get(url)
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    form_post = await app.post(url, data={"link": sealed_of(url)})
    assert form_post.status_code == 415
    assert (await app.get("/?receipt=x")).status_code == 405
    assert await still_waiting(activity)


async def test_without_link_parameter_the_json_api_is_unchanged(
    app: App, activity: WaitingActivity
):
    get = await app.get("/")
    assert get.status_code == 405
    assert get.get_json()["error"]["code"] == "method_not_allowed"
    form = await app.post("/", data={"a": "b"})
    assert form.status_code == 415
    body = {"task_token": activity.token_b64, "result": 1}
    done = await app.post("/", json_body=body)
    assert (done.status_code, done.get_json()) == (200, {"status": "completed"})
    assert await activity.handle.result() == 1


async def test_links_bypass_webhook_signatures_only_for_link_requests(
    make_app: Callable[..., App], activity: WaitingActivity
):
    signing = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    SENSITIVE.update({signing, signing.removeprefix("whsec_")})
    app = make_app(COMPLETER_LINK_SECRET=SECRET, COMPLETER_SIGNING_SECRETS=signing)
    unsigned = await app.post("/", json_body={"task_token": activity.token_b64, "result": 1})
    assert unsigned.status_code == 401
    assert unsigned.mimetype == "application/json"
    response = await app.post(approve_link(activity))
    assert response.status_code == 303
    assert await activity.handle.result() == {"approved": True, "note": "<b>ok</b>"}
