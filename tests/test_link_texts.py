"""Links seal a title and description; receipts seal what a choice did (for the pages)."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from completer.activity import approval_links
from completer.cli import main
from completer.errors import InvalidRequest, Unauthorized
from completer.links import (
    MAX_DESCRIPTION_CHARS,
    MAX_TITLE_CHARS,
    create_link,
    create_receipt,
    open_link,
    open_receipt,
)

SECRET = "l" * 40
TOKEN = base64.b64encode(b"\x01\x02secret-task-token\x03").decode()
NOW = 1_800_000_000


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def test_title_and_description_round_trip_sealed():
    url = create_link(
        "https://fn.example/complete",
        secret=SECRET,
        choice="approve",
        task_token=TOKEN,
        title="Refund 120.00 EUR for order 42",
        description="Requested by Ana.\nSecond line.",
        now=NOW,
    )
    assert "Refund" not in url  # sealed, not readable from the URL
    query = query_of(url)
    opened = open_link(query["link"], secret=SECRET, choice="approve", now=NOW)
    assert opened.title == "Refund 120.00 EUR for order 42"
    assert opened.description == "Requested by Ana.\nSecond line."


def test_links_without_title_open_as_before():
    url = create_link("https://fn/", secret=SECRET, choice="approve", task_token=TOKEN, now=NOW)
    opened = open_link(query_of(url)["link"], secret=SECRET, choice="approve", now=NOW)
    assert (opened.title, opened.description) == (None, None)


@pytest.mark.parametrize(
    ("title", "description"),
    [
        ("t" * (MAX_TITLE_CHARS + 1), None),
        (None, "d" * (MAX_DESCRIPTION_CHARS + 1)),
        (42, None),
    ],
)
def test_too_long_or_not_text_is_refused_when_the_link_is_made(title, description):
    with pytest.raises(InvalidRequest, match="plain text of at most"):
        create_link(
            "https://fn/",
            secret=SECRET,
            choice="approve",
            task_token=TOKEN,
            title=title,
            description=description,
        )


def test_limits_themselves_are_accepted():
    url = create_link(
        "https://fn/",
        secret=SECRET,
        choice="approve",
        task_token=TOKEN,
        title="t" * MAX_TITLE_CHARS,
        description="d" * MAX_DESCRIPTION_CHARS,
        now=NOW,
    )
    opened = open_link(query_of(url)["link"], secret=SECRET, now=NOW)
    assert opened.title is not None
    assert len(opened.title) == MAX_TITLE_CHARS


def test_approval_links_seal_the_same_title_into_both():
    links = approval_links(
        "https://fn/", secret=SECRET, task_token=TOKEN, title="Order 42", description="Why", now=NOW
    )
    for url in (links.approve, links.reject):
        opened = open_link(query_of(url)["link"], secret=SECRET, now=NOW)
        assert (opened.title, opened.description) == ("Order 42", "Why")


def test_cli_link_takes_title_and_description():
    run = CliRunner().invoke(
        main,
        ["link", "--url", "https://fn/", "-t", TOKEN, "--title", "Order 42", "--description", "D"],
        env={"COMPLETER_LINK_SECRET": SECRET},
    )
    assert run.exit_code == 0, run.output
    links = json.loads(run.output)
    opened = open_link(query_of(links["approve"])["link"], secret=SECRET)
    assert (opened.title, opened.description) == ("Order 42", "D")


def test_receipt_round_trip_needs_no_engine_and_holds_no_token():
    url = create_receipt(
        "https://fn.example/complete?x=1",
        secret=SECRET,
        choice="approve",
        status="completed",
        decided_at=NOW + 0.7,
        title="Order 42",
    )
    query = query_of(url)
    assert set(query) == {"x", "receipt"}
    receipt = open_receipt(query["receipt"], secret=SECRET)
    assert (receipt.choice, receipt.status, receipt.decided_at, receipt.title) == (
        "approve",
        "completed",
        NOW,
        "Order 42",
    )
    assert TOKEN not in url


def test_a_receipt_is_not_a_link_and_a_link_is_not_a_receipt():
    link = query_of(create_link("https://fn/", secret=SECRET, choice="a", task_token=TOKEN))
    receipt = query_of(
        create_receipt("https://fn/", secret=SECRET, choice="a", status="completed", decided_at=NOW)
    )
    with pytest.raises(Unauthorized):
        open_receipt(link["link"], secret=SECRET)
    with pytest.raises(Unauthorized):
        open_link(receipt["receipt"], secret=SECRET)


@pytest.mark.parametrize("sealed", ["", "garbage", "gAAAA" + "A" * 100, "\ud800"])
def test_altered_receipts_are_refused(sealed: str):
    with pytest.raises(Unauthorized):
        open_receipt(sealed, secret=SECRET)


def test_a_receipt_from_another_secret_is_refused():
    other = query_of(
        create_receipt("https://fn/", secret="o" * 40, choice="a", status="failed", decided_at=NOW)
    )
    with pytest.raises(Unauthorized):
        open_receipt(other["receipt"], secret=SECRET)


def test_an_opened_link_renders_its_title_and_reject_reason():
    from completer.pages import LinkView, confirmation_page, receipt_page

    links = approval_links(
        "https://fn/",
        secret=SECRET,
        task_token=TOKEN,
        title="Order <42>",
        description="Why",
        now=NOW,
    )
    opened = open_link(query_of(links.reject)["link"], secret=SECRET, now=NOW)
    view = LinkView.of(opened)
    assert (view.rejects, view.error_message, view.error_type) == (True, "rejected", "Rejected")
    page = confirmation_page(view, sealed_link="s", expires_at=opened.expires_at)
    assert "Order &lt;42&gt;" in page.html
    assert "Kind of rejection: Rejected" in page.html
    receipt = open_receipt(
        query_of(
            create_receipt(
                "https://fn/",
                secret=SECRET,
                choice=opened.choice,
                status="failed",
                decided_at=NOW,
                title=opened.title,
            )
        )["receipt"],
        secret=SECRET,
    )
    shown = receipt_page(**asdict(receipt), accept_language="en")
    assert "you chose “Reject”" in shown.html
    assert "Order &lt;42&gt;" in shown.html
