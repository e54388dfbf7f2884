"""Completion links on the HTTP function: a page on GET, the choice on POST, then a receipt.

A link is ``<function url>?choice=<label>&link=<sealed>`` (:mod:`completer.links`). Mail
scanners and link previews fetch GET links, so a GET never carries anything out::

    GET  ?choice&link -> open the link (401 page when expired or altered)
                      -> decided page, when the ledger knows the activity was decided
                      -> else the confirmation page: one button, a form that POSTs here
    POST ?choice&link -> open the link again -> executor (the ledger's, in the functions)
                      -> 303 See Other to ?receipt=<sealed> (also for a replay of the
                         same choice), or a page saying why nothing was done
    GET  ?receipt     -> the receipt page; no engine call, so reloading changes nothing

The sealed link is the capability: the POST carries it in its URL, as the page's form
submits to the page's own URL, and a body field ``link`` (the page sends one) must repeat
it. A POST a browser marks as cross-site (``Sec-Fetch-Site``) is refused, so another site
cannot submit a link for a person who opened it. The pages are rendered by
:mod:`completer.pages` in the browser's language; see docs/approval-pages.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlencode

from completer.errors import (
    ActivityNotFound,
    CompleterError,
    Conflict,
    EngineUnavailable,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
)
from completer.links import (
    CHOICE_PARAM,
    LINK_PARAM,
    RECEIPT_PARAM,
    ExpiredLink,
    OpenedLink,
    create_receipt,
    open_link,
    open_receipt,
)
from completer.models import Origin
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
    problem_page,
    receipt_page,
)

if TYPE_CHECKING:
    from completer.executor import Executor
    from completer.handlers.exchange import HttpRequest
    from completer.ledger import Decision
    from completer.models import CompletionRequest

__all__ = ["DecisionLookup", "LinkPages"]

logger = logging.getLogger("completer.http")

# Fetch Metadata (W3C): browsers mark a request sent from another site's page as cross-site.
SEC_FETCH_SITE = "sec-fetch-site"
CROSS_SITE = "cross-site"
# HTML forms post this media type by default (HTML standard, "form submission").
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
# The page's form is a few hundred bytes; anything much larger is not from it.
MAX_FORM_BYTES = 16 * 1024
LINK_TRIGGER = "link"


class DecisionLookup(Protocol):
    """What was decided for an activity: :class:`completer.ledger.Ledger` is one."""

    @property
    def shared(self) -> bool:
        """True when every instance records in it, so that "nothing decided" is certain."""
        ...

    async def decision(self, request: CompletionRequest, /) -> Decision | None:
        """The decision carried out for ``request``'s activity, or None while there is none."""
        ...


class _CrossSite(Unauthorized):
    """The POST did not come from the link's own page (the link itself still works)."""


class LinkPages:
    """Answers GET and POST requests to completion links, and GETs of receipts, with pages."""

    def __init__(
        self, executor: Executor, *, secret: str, decisions: DecisionLookup | None = None
    ) -> None:
        """Bind the executor, ``COMPLETER_LINK_SECRET`` and, optionally, the ledger.

        Args:
            executor: Carries out a link's choice (in the functions: the ledger's executor).
            secret: The link secret (links and receipts are sealed with it).
            decisions: Says whether an activity was already decided (the ledger the
                executor records in). A decision it knows is shown instead of the button;
                without it, or when it is not shared by every instance (the in-process
                memory ledger), an undecided link's page says it cannot know for sure.
        """
        self.executor = executor
        self.decisions = decisions
        self._secret = secret

    @staticmethod
    def applies_to(request: HttpRequest) -> bool:
        """True for a link request (GET, HEAD, POST) or a receipt's GET or HEAD."""
        if RECEIPT_PARAM in request.query:
            return request.method in ("GET", "HEAD")
        return LINK_PARAM in request.query and request.method in ("GET", "HEAD", "POST")

    async def handle(self, request: HttpRequest, *, request_id: str) -> RenderedPage:
        """Answer one link or receipt request; never raises."""
        language = request.headers.get("accept-language")
        fields: dict[str, Any] = {"request_id": request_id, "method": request.method, "link": True}
        opened: OpenedLink | None = None
        try:
            if RECEIPT_PARAM in request.query:
                page = self._receipt(request, language)
                fields["outcome"] = "receipt_shown"
            else:
                opened = self._open(request)
                fields.update(
                    activity=opened.request.describe_activity(),
                    action=opened.request.action.value,
                    choice=opened.choice,
                )
                if request.method == "POST":
                    page = await self._carry_out(request, opened, language, fields)
                else:
                    page = await self._show(request, opened, language, fields)
        except CompleterError as exc:
            page = await self._refusal(exc, opened, language)
            fields["outcome"] = exc.code
        except Exception as exc:  # noqa: BLE001 - a person gets a page, never a stack trace
            page = problem_page(status=500, accept_language=language)
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

    def _receipt(self, request: HttpRequest, language: str | None) -> RenderedPage:
        receipt = open_receipt(request.query.get(RECEIPT_PARAM, ""), secret=self._secret)
        return receipt_page(**asdict(receipt), accept_language=language)

    async def _show(
        self,
        request: HttpRequest,
        opened: OpenedLink,
        language: str | None,
        fields: dict[str, Any],
    ) -> RenderedPage:
        state_known = False
        if self.decisions is not None:
            try:
                decision = await self.decisions.decision(opened.request)
            except CompleterError as exc:
                # The button still works (or says why not); only the page knows less.
                fields["ledger_error"] = exc.code
            else:
                if decision is not None:
                    fields["outcome"] = "decided_shown"
                    return _decided(decision, opened, language, status=200)
                # An in-process ledger knows only this instance's decisions.
                state_known = self.decisions.shared
        fields["outcome"] = "confirmation_shown"
        return confirmation_page(
            LinkView.of(opened),
            sealed_link=request.query.get(LINK_PARAM, ""),
            expires_at=opened.expires_at,
            state_known=state_known,
            accept_language=language,
        )

    async def _carry_out(
        self,
        request: HttpRequest,
        opened: OpenedLink,
        language: str | None,
        fields: dict[str, Any],
    ) -> RenderedPage:
        await _check_post(request)
        started = time.perf_counter()
        try:
            # The choice's label travels as the origin's source, so the ledger can name it.
            origin = Origin(trigger=LINK_TRIGGER, source=opened.choice)
            outcome = await self.executor.execute(opened.request, origin=origin)
        finally:
            fields["engine_ms"] = round((time.perf_counter() - started) * 1000, 1)
        fields.update(outcome=outcome.status.value, replayed=outcome.replayed)
        decided_at = time.time()
        if outcome.replayed and self.decisions is not None:
            # A repeat of the same choice: the receipt shows when it was first carried out.
            decided_at = await self._first_decided_at(opened, default=decided_at)
        location = create_receipt(
            _receipt_base(request),
            secret=self._secret,
            choice=opened.choice,
            status=outcome.status.value,
            decided_at=decided_at,
            title=opened.title,
        )
        # Post/Redirect/Get: the browser lands on the receipt, so a reload sends nothing.
        return RenderedPage(303, {**PAGE_HEADERS, "Location": location}, "")

    async def _first_decided_at(self, opened: OpenedLink, *, default: float) -> float:
        assert self.decisions is not None
        try:
            decision = await self.decisions.decision(opened.request)
        except CompleterError:
            return default
        return decision.decided_at if decision is not None else default

    async def _refusal(
        self, error: CompleterError, opened: OpenedLink | None, language: str | None
    ) -> RenderedPage:
        if isinstance(error, Conflict) and opened is not None and self.decisions is not None:
            # Another choice (or request) was carried out first: say which and when.
            try:
                decision = await self.decisions.decision(opened.request)
            except CompleterError:
                decision = None
            if decision is not None:
                return _decided(decision, opened, language, status=409)
        return _refusal_page(error, language)


def _decided(
    decision: Decision, opened: OpenedLink, language: str | None, *, status: int
) -> RenderedPage:
    choice = None
    if decision.same_request:
        choice = opened.choice
    elif decision.trigger == LINK_TRIGGER:
        choice = decision.source
    return decided_page(
        decided_at=decision.decided_at,
        decided_status=decision.status,
        decided_choice=choice,
        title=opened.title,
        status=status,
        accept_language=language,
    )


def _refusal_page(error: CompleterError, language: str | None) -> RenderedPage:
    if isinstance(error, ExpiredLink):
        return expired_page(accept_language=language)
    if isinstance(error, _CrossSite):
        return cross_site_page(accept_language=language)
    if isinstance(error, PayloadTooLarge):
        return cross_site_page(status=413, accept_language=language)
    if isinstance(error, Unauthorized):
        return invalid_link_page(accept_language=language)
    if isinstance(error, InvalidRequest):
        return invalid_link_page(status=400, accept_language=language)
    if isinstance(error, ActivityNotFound | Conflict):
        # Without a ledger to say what was decided: the step is no longer waiting.
        return activity_gone_page(accept_language=language)
    if isinstance(error, EngineUnavailable):
        return engine_down_page(retry_after=error.retry_after, accept_language=language)
    return problem_page(status=error.http_status, accept_language=language)


async def _check_post(request: HttpRequest) -> None:
    if request.headers.get(SEC_FETCH_SITE, "").lower() == CROSS_SITE:
        raise _CrossSite("confirm on the link's own page, not from another site.")
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
        raise _CrossSite("the confirmation does not belong to this link.")


def _receipt_base(request: HttpRequest) -> str:
    # A relative reference: the browser resolves it against the URL it posted to (the
    # function's), keeping any query parameter that is not the link's own.
    kept = {
        name: value
        for name, value in request.query.items()
        if name not in (CHOICE_PARAM, LINK_PARAM, RECEIPT_PARAM)
    }
    # errors="replace": a lone surrogate in a stray parameter must not lose the receipt.
    return f"?{urlencode(kept, errors='replace')}" if kept else ""
