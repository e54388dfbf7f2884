"""The approval pages' renderer: escaping, limits, languages, and each page's status and headers."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from completer import pages
from completer.pages import (
    PAGE_HEADERS,
    LinkView,
    RenderedPage,
    activity_gone_page,
    confirmation_page,
    cross_site_page,
    decided_page,
    engine_down_page,
    expired_page,
    invalid_link_page,
    negotiate_language,
    problem_page,
    receipt_page,
)

NOW = 1_800_000_000
APPROVE = LinkView(
    choice="approve",
    result={"approved": True, "amount": "120.00 EUR", "orderId": 42, "lines": [1, 2, 3]},
    title="Refund for order 42",
    description="Requested by Ana.\nCustomer waited 3 weeks.",
)
REJECT = LinkView(
    choice="reject", rejects=True, error_message="rejected by finance", error_type="PaymentDeclined"
)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'
ERROR_CODES = (
    "engine_unavailable",
    "activity_not_found",
    "unauthorized",
    "invalid_request",
    "payload_too_large",
    "internal",
    "conflict",
    "engine_timeout",
)


class Outline(HTMLParser):
    """The elements and visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("style", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def outline(page: RenderedPage) -> tuple[Outline, str]:
    parsed = Outline()
    parsed.feed(page.html)
    return parsed, " ".join(" ".join(parsed.text).split())


def every_page(accept_language: str | None = None) -> dict[str, RenderedPage]:
    lang: dict[str, Any] = {"accept_language": accept_language}
    return {
        "confirm": confirmation_page(APPROVE, sealed_link="s", expires_at=NOW, **lang),
        "confirm_reject": confirmation_page(REJECT, sealed_link="s", expires_at=NOW, **lang),
        "receipt": receipt_page(choice="approve", status="completed", decided_at=NOW, **lang),
        "decided": decided_page(decided_at=NOW, decided_status="completed", **lang),
        "expired": expired_page(**lang),
        "invalid": invalid_link_page(**lang),
        "cross_site": cross_site_page(**lang),
        "engine_down": engine_down_page(retry_after=7, **lang),
        "gone": activity_gone_page(**lang),
        "problem": problem_page(**lang),
    }


# --- status, headers, structure ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("confirm", 200),
        ("confirm_reject", 200),
        ("receipt", 200),
        ("decided", 200),
        ("expired", 401),
        ("invalid", 401),
        ("cross_site", 401),
        ("engine_down", 503),
        ("gone", 404),
        ("problem", 500),
    ],
)
def test_each_page_has_its_status_the_strict_headers_and_one_h1(kind: str, status: int):
    page = every_page()[kind]
    assert page.status == status
    for name, value in PAGE_HEADERS.items():
        assert page.headers[name] == value
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Language"] == "en"
    assert "script-src" not in page.headers["Content-Security-Policy"]  # no scripts at all
    parsed, text = outline(page)
    assert len(parsed.named("h1")) == 1
    assert len(parsed.named("main")) == 1
    assert not parsed.named("script")
    assert parsed.named("html")[0]["lang"] == "en"
    for code in ERROR_CODES:
        assert not re.search(rf"\b{code}\b", text), (kind, code)


def test_only_the_confirmation_has_a_button_posting_to_its_own_url():
    for kind, page in every_page().items():
        parsed, _ = outline(page)
        forms = parsed.named("form")
        if kind.startswith("confirm"):
            assert forms == [{"method": "post"}]  # no action: the page's own URL, link included
            assert parsed.named("input") == [{"type": "hidden", "name": "link", "value": "s"}]
            assert len(parsed.named("button")) == 1
        else:
            assert not forms
            assert not parsed.named("button")


def test_confirmation_shows_title_description_and_the_result_as_fields():
    parsed, text = outline(every_page()["confirm"])
    assert "Refund for order 42" in text
    assert "Requested by Ana." in text
    assert "Customer waited 3 weeks." in text
    assert "If you press “Approve”" in text
    assert "Approved Yes" in text
    assert "Amount 120.00 EUR" in text
    assert "Order id 42" in text  # camelCase keys read as words
    assert "Lines a list of 3 items" in text  # nested values summarised
    assert len(parsed.named("dt")) == 4
    assert len(parsed.named("details")) == 1  # the raw JSON, folded away
    assert '"orderId": 42' in text
    assert "cannot know whether someone has already decided" in text


def test_confirmation_with_a_ledger_does_not_say_it_cannot_know():
    page = confirmation_page(APPROVE, sealed_link="s", expires_at=NOW, state_known=True)
    assert "cannot know" not in outline(page)[1]


def test_reject_confirmation_shows_the_reason_and_kind_readably():
    parsed, text = outline(every_page()["confirm_reject"])
    assert "stopped as rejected" in text
    assert "rejected by finance" in text
    assert "Kind of rejection: Payment declined" in text
    assert parsed.named("button") == [{"type": "submit", "class": "reject"}]
    assert not parsed.named("details")  # no result to show


def test_old_links_without_title_still_read_well():
    page = confirmation_page(
        LinkView(choice="approve", result={"approved": True}), sealed_link="s", expires_at=NOW
    )
    parsed, text = outline(page)
    assert "Your decision is needed" in text
    assert parsed.named("h1")


@pytest.mark.parametrize(
    ("result", "shown"),
    [
        (None, "The waiting step will go ahead."),
        ("yes please", "Result yes please"),
        (12.5, "Result 12.5"),
        ([1, 2], "Result a list of 2 items"),
        ({"a": {"b": 1, "c": 2}}, "A 2 details"),
        ({"a": None, "b": ""}, "A (empty) B (empty)"),
        ({"k": 1, "l": [1]}, "K 1 L a list of 1 item"),
    ],
)
def test_result_shapes_are_summarised(result: Any, shown: str):
    page = confirmation_page(LinkView(choice="ok", result=result), sealed_link="s", expires_at=NOW)
    assert shown in outline(page)[1]


def test_receipt_says_what_was_done_and_when_never_already_used():
    page = receipt_page(choice="reject", status="failed", decided_at=NOW, title="Order 42")
    parsed, text = outline(page)
    assert page.status == 200
    assert "Order 42" in text
    assert "you chose “Reject”" in text
    assert "stopped as rejected" in text
    assert "January 15, 2027" in text
    assert parsed.named("time") == [{"datetime": "2027-01-15T08:00:00Z"}]
    assert "already" not in text.lower()
    assert "changes nothing" in text


def test_decided_page_names_the_choice_and_time_and_has_no_button():
    page = decided_page(
        decided_at=NOW, decided_status="completed", decided_choice="approve", title="Order 42"
    )
    parsed, text = outline(page)
    assert "This was already decided" in text
    assert "“Approve” was chosen on January 15, 2027" in text
    assert "went ahead" in text
    assert not parsed.named("button")
    unknown = outline(decided_page(decided_at=NOW, decided_status="failed", status=409))[1]
    assert "Decided on January 15, 2027" in unknown
    assert decided_page(decided_at=NOW, decided_status="failed", status=409).status == 409


def test_expired_asks_for_a_new_link_once_and_cross_site_does_not():
    expired = outline(expired_page())[1]
    assert expired.lower().count("new link") == 1
    invalid = outline(invalid_link_page())[1]
    assert invalid.lower().count("new link") == 1
    cross = outline(cross_site_page())[1]
    assert "new link" not in cross.lower()
    assert "Open the link again from your e-mail" in cross
    assert "still works" in cross


@pytest.mark.parametrize("seconds", [1, 5, 30])
def test_engine_down_waits_as_long_as_its_retry_after(seconds: int):
    page = engine_down_page(retry_after=seconds)
    assert page.status == 503
    assert page.headers["Retry-After"] == str(seconds)
    text = outline(page)[1]
    unit = "second" if seconds == 1 else "seconds"
    assert f"try again in {seconds} {unit}." in text
    assert "minute" not in text


def test_activity_gone_explains_and_changes_nothing():
    text = outline(activity_gone_page())[1]
    assert "no longer waiting" in text
    assert "timed out" in text
    assert "Nothing was changed" in text


# --- hostile input ----------------------------------------------------------------------------


def test_hostile_texts_are_escaped_everywhere():
    link = LinkView(
        choice=HOSTILE,
        result={HOSTILE: HOSTILE, "nested": {HOSTILE: 1}},
        title=HOSTILE,
        description=HOSTILE,
    )
    rejecting = LinkView(
        choice="reject", rejects=True, error_message=HOSTILE, error_type=HOSTILE, title=HOSTILE
    )
    rendered = [
        confirmation_page(link, sealed_link=HOSTILE, expires_at=NOW),
        confirmation_page(rejecting, sealed_link="s", expires_at=NOW),
        receipt_page(choice=HOSTILE, status=HOSTILE, decided_at=NOW, title=HOSTILE),
        decided_page(decided_at=NOW, decided_status=HOSTILE, decided_choice=HOSTILE, title=HOSTILE),
    ]
    for page in rendered:
        parsed, text = outline(page)
        assert not parsed.named("script")
        assert not parsed.named("img")
        assert "<script>" not in page.html
        assert "<script>" in text  # shown as text, not run
    form_input = outline(rendered[0])[0].named("input")[0]
    assert form_input["value"] == HOSTILE  # the attribute survives intact, escaped


def test_limits_cut_long_texts_with_an_ellipsis():
    link = LinkView(
        choice="c" * 500,
        result={"k" * 500: "v" * 5000, **{f"f{i}": i for i in range(40)}},
        title="T" * 5000,
        description="D" * 50_000,
    )
    page = confirmation_page(link, sealed_link="s", expires_at=NOW)
    assert "T" * 199 + "…" in page.html
    assert "T" * 200 not in page.html
    assert "D" * 1999 + "…" in page.html
    assert "D" * 2000 not in page.html
    field = page.html.split("<dd", 1)[1].split("</dd>", 1)[0]
    assert "v" * 299 + "…" in field
    assert field.endswith("…")
    assert "and 21 more details" in outline(page)[1]
    assert "k" * 80 not in page.html.split("<details>", 1)[0]  # labels are short too
    assert len(page.html) < 30_000


def test_lone_surrogates_and_control_characters_cannot_break_the_page():
    link = LinkView(
        choice="ok", result={"x": "\ud800"}, title="a\ud800b\x00c\x1b", description="\udfff"
    )
    page = confirmation_page(link, sealed_link="s", expires_at=NOW)
    page.html.encode("utf-8")  # sendable
    assert "\x00" not in page.html
    assert "\x1b" not in page.html


def test_an_integer_too_long_to_print_is_summarised():
    page = confirmation_page(
        LinkView(choice="ok", result={"n": 10**5000}), sealed_link="s", expires_at=NOW
    )
    assert page.status == 200


# --- languages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("de", "de"),
        ("de-CH,de;q=0.9,en;q=0.8", "de"),
        ("fr-FR", "fr"),
        ("FR-ca", "fr"),
        ("es-ES,es;q=0.9", "en"),
        ("es;q=1, de;q=0.5", "de"),
        ("en;q=0.1, fr;q=0.9", "fr"),
        ("de;q=0, fr;q=0.2", "fr"),
        ("de;q=abc", "en"),
        ("*", "en"),
        ("x" * 10_000, "en"),
        ("<script>, de", "de"),
        (",".join(["xx"] * 1000) + ",de", "en"),
    ],
)
def test_accept_language_picks_a_catalogue_or_english(header: str | None, language: str):
    assert negotiate_language(header) == language


def test_pages_speak_german_and_french():
    german = every_page("de-DE,de;q=0.9")
    assert german["confirm"].headers["Content-Language"] == "de"
    text = outline(german["confirm"])[1]
    assert "Wenn Sie „Genehmigen“ drücken" in text
    assert "Genehmigen" in outline(german["confirm"])[1]
    assert "Bitte versuchen Sie es in 7 Sekunden erneut." in outline(german["engine_down"])[1]
    assert outline(german["receipt"])[0].named("html")[0]["lang"] == "de"
    french = every_page("fr")
    assert "Ce lien a expiré" in outline(french["expired"])[1]
    assert "Veuillez réessayer dans 7 secondes." in outline(french["engine_down"])[1]
    assert "Approuver" in outline(french["confirm"])[1]


def catalogue_ids() -> set[str]:
    root = Path(str(resources.files("completer.pages")))
    found: set[str] = set()
    for template in sorted((root / "templates").glob("*.html")):
        for _, message, _, _ in extract_from_file("jinja2.ext:babel_extract", template):
            found.add(message if isinstance(message, str) else message[0])
    for _, message, _, _ in extract_from_file("python", root / "render.py"):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("language", [lang for lang in pages.available_languages() if lang != "en"])
def test_every_catalogue_translates_every_message_with_the_same_placeholders(language: str):
    root = resources.files("completer.pages") / "locales" / language / "LC_MESSAGES"
    with (root / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=language)
    entries = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}
    assert set(entries) == catalogue_ids()
    for message_id, message in entries.items():
        strings = [
            str(text)
            for text in (message.string if isinstance(message.string, tuple) else (message.string,))
        ]
        assert all(strings), f"{language}: {message_id!r} is not translated"
        assert not message.fuzzy
        wanted = set(re.findall(r"%\(\w+\)[sd]", message_id))
        for string in strings:
            assert set(re.findall(r"%\(\w+\)[sd]", string)) == wanted, message_id


def test_templates_and_catalogues_are_package_data():
    import tomllib
    from fnmatch import fnmatch

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    root = Path(str(resources.files("completer.pages")))
    shipped = [
        path.relative_to(root.parent).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.suffix in (".html", ".po")
    ]
    assert shipped
    for name in shipped:
        assert any(fnmatch(name, pattern) for pattern in patterns["completer"]), name
