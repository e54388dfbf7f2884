"""A real browser for tests: Debian's chromium driven by Playwright, never a downloaded one.

``make browser`` (a step of ``make test``) installs the ``chromium`` package when it is
missing on a root Debian machine. Elsewhere the browser tests skip with a reason, except
under ``CI=true`` (see :func:`tests.support.services.missing_service`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.services import missing_service

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

    from completer.pages import RenderedPage

CHROMIUM = os.environ.get("COMPLETER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@contextlib.contextmanager
def chromium(user_data_dir: Path) -> Iterator[BrowserContext]:
    """A fresh Chromium profile under Playwright; skips (fails under CI) without the browser."""
    if not os.access(CHROMIUM, os.X_OK):
        missing_service(f"no Chromium at {CHROMIUM} (`make browser` installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("playwright is not installed (pip install -e '.[dev]')")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            chromium_sandbox=False,
        )
        try:
            yield context
        finally:
            context.close()


@dataclass
class Post:
    """A form submission the page server received."""

    path: str
    body: str
    headers: dict[str, str]


PageFactory = Callable[[str | None], "RenderedPage"]


@dataclass
class PageServer:
    """Serves rendered pages on 127.0.0.1; a POST is answered 303 to its redirect target."""

    pages: dict[str, PageFactory]
    redirects: dict[str, str] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)
    url: str = ""


@contextlib.contextmanager
def page_server(
    pages: dict[str, PageFactory], redirects: dict[str, str] | None = None
) -> Iterator[PageServer]:
    """A tiny HTTP server in a thread: GET renders ``pages[path](Accept-Language)``."""
    state = PageServer(pages=pages, redirects=redirects or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            render = state.pages.get(self.path.split("?", 1)[0])
            if render is None:
                self.send_error(404)
                return
            page = render(self.headers.get("Accept-Language"))
            body = page.html.encode("utf-8")
            self.send_response(page.status)
            for name, value in page.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            path = self.path.split("?", 1)[0]
            state.posts.append(
                Post(self.path, body, {k.lower(): v for k, v in self.headers.items()})
            )
            self.send_response(303)
            self.send_header("Location", state.redirects.get(path, path))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
