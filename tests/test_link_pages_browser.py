"""An approval link end to end in a real browser, through the real HTTP function.

A functions-framework process serves ``functions/http/main.py`` with
``COMPLETER_LINK_SECRET`` set and its in-process memory ledger, in front of the Temporal dev
server with a waiting activity. Debian's chromium (the rig of tests/support/browser.py) opens
the link, reads the page, presses the button with the keyboard, lands on the receipt,
reloads it, and opens the used link and the other choice's link again, at desktop and phone
sizes (the phone in dark mode). axe-core checks each page; screenshots go to tests/artifacts/links/.
Without a browser, the same function on a Firestore-emulator ledger (what several instances
share) vouches that a link is undecided and shows the decision after it.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from completer.links import create_link
from tests.support.browser import ARTIFACTS, chromium
from tests.support.http_app import SOURCE
from tests.support.services import free_port, running, venv_tool, wait_for_port
from tests.support.temporal import TemporalServer, WaitingActivity
from tests.test_pages_browser import (
    DESKTOP,
    PHONE,
    assert_accessible,
    assert_no_horizontal_scroll,
    tab_to_button,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.temporal

SECRET = base64.urlsafe_b64encode(os.urandom(30)).decode()
TITLE = "Refund 1,240.00 EUR to Müller GmbH for order SO-2026-0042"
DESCRIPTION = "The customer returned 3 damaged pallets (ticket #8812)."
RESULT = {"approved": True, "amount": "1,240.00 EUR", "orderId": "SO-2026-0042"}


@pytest.fixture(scope="module")
def function_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("link-function") / "function.log"


@pytest.fixture(scope="module")
def function_url(temporal_server: TemporalServer, function_log: Path) -> Iterator[str]:
    binary = venv_tool("functions-framework")
    assert binary is not None
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMPLETER_")},
        "TEMPORAL_ADDRESS": temporal_server.address,
        "COMPLETER_RPC_TIMEOUT_SECONDS": "5",
        "COMPLETER_LINK_SECRET": SECRET,
        "COMPLETER_ALLOW_UNSIGNED": "true",
    }
    argv = [binary, "--source", SOURCE, "--target", "complete", "--host", "127.0.0.1"]
    with running([*argv, "--port", str(port)], env=env, log_path=function_log) as process:
        wait_for_port(port, timeout=60, process=process)
        yield f"http://127.0.0.1:{port}/"


def links(url: str, activity: WaitingActivity) -> tuple[str, str]:
    texts: dict[str, Any] = {"title": TITLE, "description": DESCRIPTION}
    approve = create_link(
        url, secret=SECRET, choice="approve", task_token=activity.token_b64, result=RESULT, **texts
    )
    reject = create_link(
        url,
        secret=SECRET,
        choice="reject",
        task_token=activity.token_b64,
        error={"message": "refund above the order value", "type": "RefundRejected"},
        **texts,
    )
    return approve, reject


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_open_press_land_on_the_receipt_reload_and_reopen(
    function_url: str,
    function_log: Path,
    new_waiting: Any,
    tmp_path: Path,
    size: str,
):
    activity: WaitingActivity = await new_waiting()
    approve, reject = links(function_url, activity)
    # Playwright's sync API wants a thread without an event loop; the worker keeps this one.
    before = post_count(function_log)
    seen = await asyncio.to_thread(browse, approve, reject, size, tmp_path, function_log)
    assert await activity.handle.result() == RESULT
    assert seen["receipt_url"].startswith(f"{function_url}?receipt=")
    assert seen["posts_after_press"] == before + 1  # the button sent one POST
    assert seen["posts_at_end"] == before + 1  # reloading and reopening sent none
    logged = await asyncio.to_thread(function_log.read_text, errors="replace")
    assert activity.token_b64 not in logged


def post_count(log: Path) -> int:
    text = log.read_text(errors="replace")
    return sum("link request answered" in line and '"POST"' in line for line in text.splitlines())


def browse(approve: str, reject: str, size: str, profile: Path, log: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(profile / "chromium") as browser:
        page = browser.new_page()
        page.set_viewport_size(DESKTOP if size == "desktop" else PHONE)
        # The phone walks through in dark mode, the desktop in light mode.
        page.emulate_media(color_scheme="dark" if size == "phone" else "light")
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Refused to" in m.text else None)

        response = page.goto(approve)
        assert response is not None
        assert response.status == 200
        assert page.title() == TITLE
        assert page.locator("h1").inner_text() == TITLE
        main = page.locator("main").inner_text()
        assert DESCRIPTION in main
        assert "If you press “Approve”" in main
        fields = dict(
            zip(
                page.locator("dt").all_inner_texts(),
                page.locator("dd").all_inner_texts(),
                strict=True,
            )
        )
        assert fields == {"Approved": "Yes", "Amount": "1,240.00 EUR", "Order id": "SO-2026-0042"}
        assert not page.locator("details").get_attribute("open")  # the raw JSON is folded away
        # The function's ledger is in memory (one instance): it cannot vouch for others.
        assert "cannot know" in main
        check(page, f"confirm-{size}")

        tab_to_button(page)
        assert page.get_by_role("button", name="Approve").evaluate(
            "b => b === document.activeElement"
        )
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "receipt=" in page.url
        assert "link=" not in page.url
        seen["receipt_url"] = page.url
        receipt = page.locator("main").inner_text()
        assert "Done: you chose “Approve”" in receipt
        assert TITLE in receipt
        check(page, f"receipt-{size}")
        seen["posts_after_press"] = post_count(log)

        page.reload()
        assert page.url == seen["receipt_url"]
        assert page.locator("main").inner_text() == receipt
        assert "already" not in receipt.lower()

        for name, link in (("used", approve), ("other", reject)):
            response = page.goto(link)
            assert response is not None
            assert response.status == 200
            text = page.locator("main").inner_text()
            assert "This was already decided" in text
            assert "“Approve” was chosen on" in text
            assert page.get_by_role("button").count() == 0
            check(page, f"decided-{name}-{size}")
        seen["posts_at_end"] = post_count(log)
        page.close()
        assert not refused  # the Content-Security-Policy blocked nothing the page needs
    return seen


def check(page: Page, name: str) -> None:
    assert_no_horizontal_scroll(page)
    assert_accessible(page, name)
    folder = ARTIFACTS / "links"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def test_the_function_with_a_shared_firestore_ledger(
    temporal_server: TemporalServer, new_waiting: Any, tmp_path: Path
):
    """The function process on a Firestore (emulator) ledger: every instance would know."""
    from tests.support.firestore import firestore_emulator

    activity: WaitingActivity = await new_waiting()
    with firestore_emulator(tmp_path) as host:
        binary = venv_tool("functions-framework")
        assert binary is not None
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COMPLETER_")},
            "TEMPORAL_ADDRESS": temporal_server.address,
            "COMPLETER_LINK_SECRET": SECRET,
            "COMPLETER_ALLOW_UNSIGNED": "true",
            "COMPLETER_LEDGER": "firestore://(default)/link-pages",
            "FIRESTORE_EMULATOR_HOST": host,
            "GOOGLE_CLOUD_PROJECT": "completer-test",
        }
        argv = [binary, "--source", SOURCE, "--target", "complete", "--host", "127.0.0.1"]
        log = tmp_path / "function.log"
        with running([*argv, "--port", str(port)], env=env, log_path=log) as process:
            await asyncio.to_thread(wait_for_port, port, timeout=60, process=process)
            await asyncio.to_thread(shared_ledger_flow, f"http://127.0.0.1:{port}/", activity)
    assert await activity.handle.result() == RESULT


def shared_ledger_flow(url: str, activity: WaitingActivity) -> None:
    import requests

    approve, reject = links(url, activity)
    page = requests.get(approve, timeout=30)
    assert page.status_code == 200
    assert "<form" in page.text
    assert "cannot know" not in page.text  # a shared ledger vouches for "undecided"
    done = requests.post(approve, allow_redirects=False, timeout=30)
    assert done.status_code == 303
    receipt = requests.get(url + done.headers["Location"], timeout=30)
    assert "Done: you chose “Approve”" in receipt.text
    assert "“Approve” was chosen on" in requests.get(reject, timeout=30).text
    assert requests.post(reject, timeout=30).status_code == 409
