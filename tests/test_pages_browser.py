"""The approval pages in a real browser: text, keyboard, accessibility, phone, dark mode, languages.

Debian's chromium under Playwright opens the rendered pages from a tiny local server,
submits the confirmation with the keyboard, lands on the receipt (303, as the HTTP
function answers) and reloads it. axe-core checks each page, contrast included, in light
and dark mode. Screenshots of every page at desktop and phone sizes, light and dark, go to
tests/artifacts/pages/ for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest

from completer.pages import (
    LinkView,
    activity_gone_page,
    confirmation_page,
    cross_site_page,
    decided_page,
    engine_down_page,
    expired_page,
    invalid_link_page,
    problem_page,
    receipt_page,
)
from tests.support.browser import ARTIFACTS, PageServer, chromium, page_server

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, ViewportSize

NOW = 1_800_000_000
SEALED = "gAAAAABsealed-link_value=="
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
APPROVE = LinkView(
    choice="approve",
    result={
        "approved": True,
        "amount": "1,240.00 EUR",
        "orderId": "SO-2026-0042",
        "approvedBy": "finance@example.com",
        "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
    },
    title="Refund 1,240.00 EUR to Müller GmbH for order SO-2026-0042",
    description=(
        "The customer returned 3 damaged pallets (photos in ticket #8812).\n"
        "Refunds above 1,000 EUR need a second approval."
    ),
)
REJECT = LinkView(
    choice="reject",
    rejects=True,
    error_message="rejected by finance: refund above the customer's order value",
    error_type="RefundRejected",
    title=APPROVE.title,
)
PAGES: dict[str, Any] = {
    "/confirm": lambda lang: confirmation_page(
        APPROVE, sealed_link=SEALED, expires_at=NOW, accept_language=lang
    ),
    "/reject": lambda lang: confirmation_page(
        REJECT, sealed_link=SEALED, expires_at=NOW, accept_language=lang
    ),
    "/receipt": lambda lang: receipt_page(
        choice="approve",
        status="completed",
        decided_at=NOW,
        title=APPROVE.title,
        accept_language=lang,
    ),
    "/decided": lambda lang: decided_page(
        decided_at=NOW,
        decided_status="completed",
        decided_choice="approve",
        title=APPROVE.title,
        accept_language=lang,
    ),
    "/expired": lambda lang: expired_page(accept_language=lang),
    "/invalid": lambda lang: invalid_link_page(accept_language=lang),
    "/cross-site": lambda lang: cross_site_page(accept_language=lang),
    "/engine-down": lambda lang: engine_down_page(retry_after=5, accept_language=lang),
    "/gone": lambda lang: activity_gone_page(accept_language=lang),
    "/problem": lambda lang: problem_page(accept_language=lang),
}
EXPECTED_TEXT = {
    "/confirm": ["Refund 1,240.00 EUR", "If you press “Approve”", "Order id", "cannot know"],
    "/reject": ["stopped as rejected", "refund above the customer", "Refund rejected"],
    "/receipt": ["Done: you chose “Approve”", "went ahead", "changes nothing"],
    "/decided": ["This was already decided", "“Approve” was chosen on"],
    "/expired": ["This link has expired", "new link"],
    "/invalid": ["This link does not work", "new link"],
    "/cross-site": ["Open the link again from your e-mail", "still works"],
    "/engine-down": ["Not done yet", "try again in 5 seconds"],
    "/gone": ["no longer waiting", "timed out"],
    "/problem": ["Something went wrong", "try again"],
}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def site() -> Iterator[PageServer]:
    with page_server(PAGES, redirects={"/confirm": "/receipt"}) as server:
        yield server


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    tab = browser.new_page()
    refused: list[str] = []
    # Chromium reports what the Content-Security-Policy blocked as "Refused to ..." errors.
    tab.on("console", lambda m: refused.append(m.text) if "Refused to" in m.text else None)
    yield tab
    tab.close()
    assert not refused


def shot(page: Page, name: str) -> None:
    folder = ARTIFACTS / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def tab_to_button(page: Page) -> None:
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName") == "BUTTON":
            return
    pytest.fail("the keyboard never reached the button")


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_open_confirm_with_the_keyboard_land_on_the_receipt_and_reload(
    page: Page, site: PageServer, size: str
):
    page.set_viewport_size(DESKTOP if size == "desktop" else PHONE)
    site.posts.clear()
    page.goto(f"{site.url}/confirm?choice=approve&link=x")
    assert page.title() == APPROVE.title
    tab_to_button(page)
    button = page.get_by_role("button", name="Approve")
    assert button.evaluate("b => b === document.activeElement")
    outline = button.evaluate("b => getComputedStyle(b).outlineStyle")
    assert outline != "none"  # focus is visible
    shot(page, f"flow-{size}-focus")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{site.url}/receipt"
    assert len(site.posts) == 1
    post = site.posts[0]
    assert post.path == "/confirm?choice=approve&link=x"  # the form posts to its own URL
    assert parse_qs(post.body) == {"link": [SEALED]}
    assert post.headers["sec-fetch-site"] == "same-origin"
    receipt = page.locator("main").inner_text()
    assert "Done: you chose “Approve”" in receipt
    page.reload()
    assert page.locator("main").inner_text() == receipt
    assert len(site.posts) == 1  # reloading the receipt sent nothing
    assert "already" not in receipt.lower()
    page.go_back()
    assert page.get_by_role("button", name="Approve").is_visible()
    assert len(site.posts) == 1


@pytest.mark.parametrize("path", list(PAGES))
def test_each_page_reads_right_is_accessible_and_photographed(
    page: Page, site: PageServer, path: str
):
    page.goto(site.url + path)
    text = page.locator("main").inner_text()
    for expected in EXPECTED_TEXT[path]:
        assert expected.lower() in text.lower(), (path, expected)
    assert page.locator("h1").count() == 1
    for button in page.get_by_role("button").all():
        assert button.inner_text().strip()  # every control has a name
    name = path.strip("/")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size(DESKTOP)
        assert_accessible(page, f"{name} ({scheme})")
        shot(page, f"{name}-desktop-{scheme}")
        page.set_viewport_size(PHONE)
        assert_no_horizontal_scroll(page)
        assert_accessible(page, f"{name} phone ({scheme})")
        shot(page, f"{name}-phone-{scheme}")


def assert_accessible(page: Page, where: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"resultTypes": ["violations"]})
    violations = results.response["violations"]
    assert not violations, f"{where}: " + "; ".join(
        f"{v['id']}: {v['help']} ({[n['html'][:80] for n in v['nodes']]})" for v in violations
    )
    assert results.response["testEngine"]["name"] == "axe-core"
    passed = {rule["id"] for rule in results.response["passes"]}
    undecided = {rule["id"] for rule in results.response["incomplete"]}
    assert "color-contrast" in passed, f"{where}: contrast not verified"
    assert "color-contrast" not in undecided, f"{where}: contrast not verified everywhere"


def assert_no_horizontal_scroll(page: Page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0


def test_dark_mode_differs_from_light(page: Page, site: PageServer):
    page.goto(f"{site.url}/confirm")
    colours = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        colours[scheme] = page.evaluate(
            "[getComputedStyle(document.body).backgroundColor,"
            " getComputedStyle(document.querySelector('main')).color]"
        )
    assert colours["light"][0] != colours["dark"][0]
    assert colours["light"][1] != colours["dark"][1]


@pytest.mark.parametrize(
    ("accept_language", "lang", "heading", "button"),
    [
        ("de-DE,de;q=0.9,en;q=0.5", "de", "Ihre Entscheidung ist gefragt", "Genehmigen"),
        ("fr-CH, fr;q=0.9", "fr", "Votre décision est attendue", "Approuver"),
        ("es-ES,pt;q=0.8", "en", "Your decision is needed", "Approve"),
    ],
)
def test_the_browser_language_picks_the_translation(
    page: Page, site: PageServer, accept_language: str, lang: str, heading: str, button: str
):
    page.set_extra_http_headers({"Accept-Language": accept_language})
    page.goto(f"{site.url}/confirm")
    assert page.get_attribute("html", "lang") == lang
    assert page.locator(".kicker").inner_text() == heading
    assert page.get_by_role("button", name=button).is_visible()
    page.goto(f"{site.url}/engine-down")
    wanted = {"de": "5 Sekunden", "fr": "5 secondes", "en": "5 seconds"}[lang]
    assert wanted in page.locator("main").inner_text()
    if lang != "en":
        shot(page, f"engine-down-{lang}")


def test_headers_reach_the_browser(page: Page, site: PageServer):
    response = page.goto(f"{site.url}/engine-down")
    assert response is not None
    assert response.status == 503
    headers = response.headers
    assert headers["retry-after"] == "5"
    assert headers["cache-control"] == "no-store"
    assert "default-src 'none'" in headers["content-security-policy"]


def test_the_accessibility_check_catches_what_it_should(page: Page):
    from axe_playwright_python.sync_playwright import Axe

    page.set_content(
        '<html><body><main><h1 style="color:#aaa;background:#fff">Faint</h1>'
        "<form><button></button></form></main></body></html>"
    )
    found = {v["id"] for v in Axe().run(page).response["violations"]}
    assert {"color-contrast", "button-name", "html-has-lang"} <= found
