"""Completion links on the HTTP function: a confirmation page on GET, the completion on POST.

A link is ``<function url>?choice=<label>&link=<sealed>`` (:mod:`completer.links`). Mail
scanners and link previews fetch GET links, so::

    GET  ?choice&link -> open the link (401 page when expired, tampered or the wrong choice)
                      -> 200 page: what will happen, one button, a form that POSTs here
    POST ?choice&link -> open the link again -> completion client
                      -> 200 "done" page, 404 "already used" page, or an error page

The sealed link is the capability: the POST carries it in its URL, as the page's form
submits to the page's own URL, and a body field ``link`` (the page sends one) must repeat
it. A POST a browser marks as cross-site (``Sec-Fetch-Site``) is refused, so another site
cannot submit a link for a person who opened it. Pages are never cached, send no referrer
and cannot be framed (no clickjacking of the one button). Everything shown is escaped.
"""

from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from completer.errors import (
    ActivityNotFound,
    CompleterError,
    EngineUnavailable,
    InternalError,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
)
from completer.links import CHOICE_PARAM, LINK_PARAM, OpenedLink, open_link
from completer.models import Action, CompletionOutcome, CompletionRequest, Origin

if TYPE_CHECKING:
    from completer.executor import Executor
    from completer.handlers.exchange import HttpRequest

__all__ = ["LinkPage", "LinkPages"]

logger = logging.getLogger("completer.http")

# Fetch Metadata (W3C): browsers mark a request sent from another site's page as cross-site.
SEC_FETCH_SITE = "sec-fetch-site"
CROSS_SITE = "cross-site"
# HTML forms post this media type by default (HTML standard, "form submission").
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
# The page's form is a few hundred bytes; anything much larger is not from it.
MAX_FORM_BYTES = 16 * 1024
SHOWN_RESULT_CHARS = 400

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Inline style only; the form may post only to this origin; never inside a frame.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


@dataclass(frozen=True)
class LinkPage:
    """An HTML answer to a link request."""

    status: int
    html: str
    headers: dict[str, str]


class LinkPages:
    """Answers GET and POST requests to completion links with HTML pages."""

    def __init__(self, executor: Executor, *, secret: str) -> None:
        """Bind the executor and ``COMPLETER_LINK_SECRET``."""
        self.executor = executor
        self._secret = secret

    @staticmethod
    def applies_to(request: HttpRequest) -> bool:
        """True for a GET, HEAD or POST whose URL carries a ``link`` parameter."""
        return LINK_PARAM in request.query and request.method in ("GET", "HEAD", "POST")

    async def handle(self, request: HttpRequest, *, request_id: str) -> LinkPage:
        """Answer one link request; never raises."""
        fields: dict[str, Any] = {"request_id": request_id, "method": request.method, "link": True}
        try:
            opened = self._open(request)
            fields.update(
                activity=opened.request.describe_activity(),
                action=opened.request.action.value,
                choice=opened.choice,
            )
            if request.method == "POST":
                await self._check_post(request)
                started = time.perf_counter()
                try:
                    outcome = await self.executor.execute(
                        opened.request, origin=Origin(trigger="link")
                    )
                finally:
                    fields["engine_ms"] = round((time.perf_counter() - started) * 1000, 1)
                page = _done(opened, outcome)
                fields["outcome"] = outcome.status.value
            else:
                page = _confirmation(opened, sealed=request.query.get(LINK_PARAM, ""))
                fields["outcome"] = "confirmation_shown"
        except CompleterError as exc:
            page = _refusal(exc)
            fields["outcome"] = exc.code
        except Exception as exc:  # noqa: BLE001 - a person gets a page, never a stack trace
            page = _refusal(InternalError("an unexpected error occurred; try again."))
            fields.update(outcome="internal", error_type=type(exc).__name__)
        fields["status"] = page.status
        level = logging.INFO if page.status < 500 else logging.WARNING
        if page.status == 500:
            level = logging.ERROR
        logger.log(level, "link request answered", extra={"completer": fields})
        return page

    def _open(self, request: HttpRequest) -> OpenedLink:
        sealed = request.query.get(LINK_PARAM, "")
        choice = request.query.get(CHOICE_PARAM)
        return open_link(sealed, secret=self._secret, choice=choice)

    @staticmethod
    async def _check_post(request: HttpRequest) -> None:
        if request.headers.get(SEC_FETCH_SITE, "").lower() == CROSS_SITE:
            raise Unauthorized("confirm on the link's own page, not from another site.")
        if request.media_type != FORM_MEDIA_TYPE:
            return  # an empty POST (curl -X POST '<link>') carries the link in its URL only
        declared = request.content_length
        if declared is not None and declared > MAX_FORM_BYTES:
            raise PayloadTooLarge("the confirmation form is too large.")
        raw = await request.read(MAX_FORM_BYTES)
        if len(raw) > MAX_FORM_BYTES:
            raise PayloadTooLarge("the confirmation form is too large.")
        form = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
        posted = form.get(LINK_PARAM)
        if posted is not None and posted != [request.query.get(LINK_PARAM, "")]:
            raise Unauthorized("the confirmation does not belong to this link.")


# --- pages ----------------------------------------------------------------------------------

_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f5f6f8;
color:#1d2330}
main{max-width:32rem;margin:12vh auto;padding:2rem;background:#fff;border-radius:12px;
box-shadow:0 1px 4px rgba(0,0,0,.08)}
h1{font-size:1.35rem;margin:0 0 1rem}
p{margin:.5rem 0}
pre{background:#f0f2f5;padding:.6rem .8rem;border-radius:6px;white-space:pre-wrap;
word-break:break-word;font-size:.9rem}
.muted{color:#5b6475;font-size:.9rem}
button{font:inherit;font-weight:600;color:#fff;border:0;border-radius:8px;padding:.7rem 1.6rem;
margin-top:1rem;cursor:pointer;background:#1f6feb}
button.reject{background:#c62828}
"""


def _page(status: int, title: str, body: str) -> LinkPage:
    document = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>\n"
    )
    return LinkPage(status, document, dict(PAGE_HEADERS))


def _label(choice: str) -> str:
    return choice[:1].upper() + choice[1:] if choice else "Confirm"


def _when(unix_time: int) -> str:
    return datetime.fromtimestamp(unix_time, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _shown_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=1)
    if len(text) > SHOWN_RESULT_CHARS:
        text = text[:SHOWN_RESULT_CHARS] + " …"
    return html.escape(text)


def _what_happens(request: CompletionRequest) -> str:
    if request.action is Action.FAIL and request.error is not None:
        return (
            "<p>This will <strong>reject</strong> the waiting step: it fails with</p>"
            f"<pre>{html.escape(request.error.message)}</pre>"
        )
    return (
        "<p>This will <strong>complete</strong> the waiting step with the result</p>"
        f"<pre>{_shown_json(request.result)}</pre>"
    )


def _confirmation(opened: OpenedLink, *, sealed: str) -> LinkPage:
    label = _label(opened.choice)
    css = ' class="reject"' if opened.request.action is Action.FAIL else ""
    # No action attribute: the form posts to this page's own URL, sealed link included.
    body = (
        f"{_what_happens(opened.request)}"
        f'<form method="post">'
        f'<input type="hidden" name="{LINK_PARAM}" value="{html.escape(sealed)}">'
        f"<button type=submit{css}>{html.escape(label)}</button></form>"
        f'<p class="muted">Nothing happens until you press {html.escape(label)}. '
        f"This link works once and expires {html.escape(_when(opened.expires_at))}.</p>"
    )
    return _page(200, f"{label}?", body)


def _done(opened: OpenedLink, outcome: CompletionOutcome) -> LinkPage:
    label = _label(opened.choice)
    verb = "rejected" if outcome.status.value == "failed" else "completed"
    body = (
        f"<p>The waiting step was {verb}. You can close this page.</p>"
        f'<p class="muted">Choice: {html.escape(opened.choice)}</p>'
    )
    return _page(200, f"Done: {label}", body)


def _refusal(error: CompleterError) -> LinkPage:
    if isinstance(error, ActivityNotFound):
        page = _page(
            404,
            "This link was already used",
            "<p>The step it was for is no longer waiting: the link was already used (here "
            "or with another choice), or the step finished or timed out. Nothing was "
            "changed.</p>",
        )
    elif isinstance(error, Unauthorized):
        page = _page(
            401,
            "This link cannot be used",
            f"<p>{html.escape(_sentence(error.message))}</p>"
            "<p>Nothing was changed. Ask whoever sent it for a new link.</p>",
        )
    elif isinstance(error, InvalidRequest):
        page = _page(
            400,
            "This link cannot be used",
            f"<p>{html.escape(_sentence(error.message))}</p><p>Nothing was changed.</p>",
        )
    else:
        page = _page(
            error.http_status,
            "Not done yet",
            "<p>The step could not be updated right now; nothing was changed. "
            "Go back and press the button again in a minute.</p>"
            f'<p class="muted">{html.escape(error.code)}</p>',
        )
        if isinstance(error, EngineUnavailable):
            page.headers["Retry-After"] = str(error.retry_after)
    return page


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]
