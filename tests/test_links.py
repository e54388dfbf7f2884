"""Completion links: sealed, expiring, scoped to one choice; the token never readable."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest

from completer.errors import InvalidRequest, Unauthorized
from completer.links import ExpiredLink, create_link, open_link
from completer.models import Action

SECRET = "l" * 40
TOKEN = base64.b64encode(b"\x01\x02secret-task-token\x03").decode()
NOW = 1_800_000_000


def sealed_of(url: str) -> tuple[str, str]:
    query = parse_qs(urlsplit(url).query)
    return query["link"][0], query["choice"][0]


def test_approve_link_round_trip():
    url = create_link(
        "https://fn.example/complete",
        secret=SECRET,
        choice="approve",
        task_token=TOKEN,
        result={"approved": True},
        now=NOW,
    )
    assert url.startswith("https://fn.example/complete?choice=approve&link=")
    sealed, choice = sealed_of(url)
    opened = open_link(sealed, secret=SECRET, choice=choice, now=NOW + 60)
    assert opened.choice == "approve"
    assert opened.request.action is Action.COMPLETE
    assert opened.request.task_token == TOKEN
    assert opened.request.result == {"approved": True}
    assert opened.expires_at == NOW + 7 * 24 * 3600


def test_reject_link_carries_an_error_and_ids_work():
    url = create_link(
        "https://fn.example/",
        secret=SECRET,
        choice="reject",
        workflow_id="wf",
        activity_id="act",
        run_id="run-1",
        error={"message": "rejected", "type": "Rejected"},
        now=NOW,
    )
    opened = open_link(sealed_of(url)[0], secret=SECRET, now=NOW)
    assert opened.request.action is Action.FAIL
    assert opened.request.error is not None
    assert opened.request.error.type == "Rejected"
    assert (opened.request.workflow_id, opened.request.activity_id) == ("wf", "act")
    assert opened.request.run_id == "run-1"


def test_token_cannot_be_read_from_the_url():
    url = create_link(
        "https://fn.example/", secret=SECRET, choice="approve", task_token=TOKEN, now=NOW
    )
    raw = b"secret-task-token"
    assert TOKEN not in url
    sealed = sealed_of(url)[0]
    padded = sealed + "=" * (-len(sealed) % 4)
    assert raw not in base64.urlsafe_b64decode(padded)


def test_expired():
    url = create_link(
        "https://fn/", secret=SECRET, choice="approve", task_token=TOKEN, ttl_seconds=3600, now=NOW
    )
    open_link(sealed_of(url)[0], secret=SECRET, now=NOW + 3599)
    with pytest.raises(ExpiredLink, match="expired"):  # an Unauthorized the page tells apart
        open_link(sealed_of(url)[0], secret=SECRET, now=NOW + 3601)


def test_tampered_and_wrong_secret():
    sealed = sealed_of(
        create_link("https://fn/", secret=SECRET, choice="approve", task_token=TOKEN, now=NOW)
    )[0]
    flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    for refused in (
        lambda: open_link(flipped, secret=SECRET, now=NOW),
        lambda: open_link(sealed, secret="x" * 40, now=NOW),
    ):
        with pytest.raises(Unauthorized) as info:
            refused()
        assert not isinstance(info.value, ExpiredLink)
    with pytest.raises(Unauthorized):
        open_link("not-a-link", secret=SECRET, now=NOW)


def test_wrong_choice():
    sealed = sealed_of(
        create_link("https://fn/", secret=SECRET, choice="approve", task_token=TOKEN, now=NOW)
    )[0]
    with pytest.raises(Unauthorized, match="choice"):
        open_link(sealed, secret=SECRET, choice="reject", now=NOW)


def test_invalid_preset_is_refused_at_creation():
    with pytest.raises(InvalidRequest):
        create_link("https://fn/", secret=SECRET, choice="x", now=NOW)
    with pytest.raises(InvalidRequest):
        create_link(
            "https://fn/",
            secret=SECRET,
            choice="x",
            task_token=TOKEN,
            error={"message": ""},
            now=NOW,
        )


def test_short_secret_is_refused():
    with pytest.raises(ValueError, match="32"):
        create_link("https://fn/", secret="short", choice="x", task_token=TOKEN)
