"""The approval pages a person sees when they open a completion link.

Transport-neutral: each function takes plain data (what the link asks for, the outcome,
times, ``Retry-After``) and the request's ``Accept-Language`` header, and returns a
:class:`RenderedPage` ``(status, headers, html)`` for the HTTP function of either cloud.
See docs/approval-pages.md for what each page says.

Which page answers which situation of a link request (``lang`` is ``Accept-Language``)::

    GET ?choice&link, link opens, no ledger    confirmation_page(LinkView.of(opened),
                                                   sealed_link=..., expires_at=opened.expires_at,
                                                   state_known=False, accept_language=lang)
    GET, ledger: not decided yet               confirmation_page(..., state_known=True)
    GET, ledger: already decided               decided_page(decided_at=..., decided_status=...,
                                                   decided_choice=..., title=opened.title)
    POST carried out (or replayed)             303 to completer.links.create_receipt(...)
    GET ?receipt                               receipt_page(**asdict(open_receipt(...)), ...)
    POST of another choice after a decision    decided_page(..., status=409)
    link expired                               expired_page()
    link altered / wrong choice (401)          invalid_link_page()
    sealed completion invalid (400)            invalid_link_page(status=400)
    POST marked cross-site / not the form      cross_site_page()
    form too large (413)                       cross_site_page(status=413)
    engine_unavailable (503)                   engine_down_page(retry_after=exc.retry_after)
    activity_not_found (404)                   activity_gone_page()
    engine_timeout (504) / internal (500)      problem_page(status=exc.http_status)
"""

from completer.pages.render import (
    DEFAULT_LANGUAGE,
    PAGE_HEADERS,
    LinkView,
    RenderedPage,
    activity_gone_page,
    available_languages,
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

__all__ = [
    "DEFAULT_LANGUAGE",
    "PAGE_HEADERS",
    "LinkView",
    "RenderedPage",
    "activity_gone_page",
    "available_languages",
    "confirmation_page",
    "cross_site_page",
    "decided_page",
    "engine_down_page",
    "expired_page",
    "invalid_link_page",
    "negotiate_language",
    "problem_page",
    "receipt_page",
]
