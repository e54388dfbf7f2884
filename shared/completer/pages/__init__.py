"""The approval pages a person sees when they open a completion link.

Transport-neutral: each function takes plain data (what the link asks for, the outcome,
times, ``Retry-After``) and the request's ``Accept-Language`` header, and returns a
:class:`RenderedPage` ``(status, headers, html)`` for the HTTP function of either cloud.
See docs/approval-pages.md for what each page says.
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
