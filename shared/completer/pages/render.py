"""Render the approval pages: plain data in, ``(status, headers, html)`` out.

Nothing here does I/O beyond reading the package's own templates and catalogues, and
nothing knows a web framework: the HTTP function (GCP or Lambda) turns a
:class:`RenderedPage` into its platform's response. Every text a person reads comes from
the message catalogue (``locales/<language>/LC_MESSAGES/messages.po``), in the language
the browser asks for where a translation exists, else English.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from io import BytesIO
from typing import TYPE_CHECKING, Any, NamedTuple

from babel.core import negotiate_locale
from babel.dates import format_date, format_time, get_datetime_format
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

if TYPE_CHECKING:
    from completer.links import OpenedLink

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

DEFAULT_LANGUAGE = "en"
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Inline style only, no scripts; the form may post only to this origin; never framed.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
# The limits a link seals (see completer.links); re-applied here for any caller's data.
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
MAX_CHOICE_CHARS = 60
MAX_FIELDS = 20
MAX_FIELD_LABEL_CHARS = 80
MAX_FIELD_VALUE_CHARS = 300
MAX_MESSAGE_CHARS = 1000
MAX_RAW_JSON_CHARS = 4000
# An Accept-Language header is short; a hostile one is cut before it is parsed.
MAX_ACCEPT_LANGUAGE_CHARS = 500
MAX_LANGUAGE_RANGES = 20

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_LANGUAGE_RANGE = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")


class RenderedPage(NamedTuple):
    """An HTML page to answer with."""

    status: int
    headers: dict[str, str]
    html: str


@dataclass(frozen=True)
class LinkView:
    """What a link asks for, as shown to the person.

    Attributes:
        choice: The choice's label, e.g. ``"approve"``.
        rejects: True when the choice fails the activity (a reject link).
        result: The preset result (a complete link).
        error_message: The preset error's message (a reject link).
        error_type: The preset error's type (a reject link).
        title: The sealed title, when the link has one.
        description: The sealed description, when the link has one.
    """

    choice: str
    rejects: bool = False
    result: Any = None
    error_message: str | None = None
    error_type: str | None = None
    title: str | None = None
    description: str | None = None

    @classmethod
    def of(cls, opened: OpenedLink) -> LinkView:
        """The view of an opened link (:func:`completer.links.open_link`)."""
        request = opened.request
        error = request.error
        return cls(
            choice=opened.choice,
            rejects=error is not None,
            result=request.result,
            error_message=error.message if error is not None else None,
            error_type=error.type if error is not None else None,
            title=opened.title,
            description=opened.description,
        )


# --- languages --------------------------------------------------------------------------------


@cache
def available_languages() -> tuple[str, ...]:
    """The languages the pages speak: English and every catalogue in ``locales/``."""
    root = resources.files("completer.pages") / "locales"
    found = sorted(
        entry.name for entry in root.iterdir() if (entry / "LC_MESSAGES" / "messages.po").is_file()
    )
    return (DEFAULT_LANGUAGE, *(name for name in found if name != DEFAULT_LANGUAGE))


def negotiate_language(accept_language: str | None) -> str:
    """The best available language for an ``Accept-Language`` header (English otherwise)."""
    ranked: list[tuple[float, int, str]] = []
    header = (accept_language or "")[:MAX_ACCEPT_LANGUAGE_CHARS]
    for position, item in enumerate(header.split(",")[:MAX_LANGUAGE_RANGES]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip().replace("_", "-")
        if not _LANGUAGE_RANGE.match(tag):
            continue  # "*", empty or malformed: no preference to act on
        ranked.append((_quality(params), position, tag))
    preferred = [tag for quality, _, tag in sorted(ranked, key=lambda r: (-r[0], r[1])) if quality]
    available = available_languages()
    chosen = negotiate_locale(preferred, available, sep="-") or DEFAULT_LANGUAGE
    # Babel answers with the browser's spelling ("FR"); the catalogue has its own.
    return {name.lower(): name for name in available}.get(chosen.lower(), DEFAULT_LANGUAGE)


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


@cache
def _translations(language: str) -> NullTranslations:
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    # The .po source is the catalogue: compiled in memory once per process, so the
    # package ships no build artefacts and needs no build step.
    path = resources.files("completer.pages") / "locales" / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled)


class _Messages:
    """The page's words in one language, with the formatting the templates use."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._catalogue = _translations(language)

    # Markup like Jinja's "newstyle" gettext: the translation is escaped, then filled with
    # values that are escaped unless already markup (a <time> element).
    def gettext(self, message: str, **values: Any) -> Markup:
        return escape(self._catalogue.gettext(message)) % values

    def ngettext(self, singular: str, plural: str, num: int, **values: Any) -> Markup:
        return escape(self._catalogue.ngettext(singular, plural, num)) % {"num": num, **values}

    def when(self, unix_time: float) -> Markup:
        # The language's long date and short time ("November 30, 2026, 9:05 AM UTC"):
        # seconds and zone names ("TU", "Coordinated Universal Time") only get in the way.
        moment = datetime.fromtimestamp(unix_time, tz=UTC)
        pattern = str(get_datetime_format("long", locale=self.language)).replace("'", "")
        shown = pattern.replace(
            "{0}", format_time(moment, "short", tzinfo=UTC, locale=self.language)
        ).replace("{1}", format_date(moment, "long", locale=self.language))
        return Markup('<time datetime="{}">{} UTC</time>').format(_iso(unix_time), shown)

    def choice(self, label: str) -> str | Markup:
        known = {"approve": self.gettext("Approve"), "reject": self.gettext("Reject")}
        if label.lower() in known:
            return known[label.lower()]
        text = _plain(label, MAX_CHOICE_CHARS) or self.gettext("Confirm")
        return text[:1].upper() + text[1:]

    def outcome(self, status: str) -> Markup:
        outcomes = {
            "completed": self.gettext("The waiting step went ahead."),
            "failed": self.gettext("The waiting step was stopped as rejected."),
            "cancelled": self.gettext("The waiting step was cancelled."),
        }
        # "canceled" is the engines' American spelling; the completer answers "cancelled".
        return outcomes.get(
            status.replace("canceled", "cancelled"), self.gettext("The waiting step was updated.")
        )


# --- shown values -----------------------------------------------------------------------------


def _plain(text: str | None, limit: int) -> str:
    """Printable text within a limit: control characters dropped, an ellipsis when cut."""
    if not text:
        return ""
    cleaned = _CONTROL.sub("", text).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


def _label(key: str) -> str:
    words = _CAMEL.sub(" ", key).replace("_", " ").replace("-", " ").strip()
    words = " ".join(words.split())
    return _plain(words[:1].upper() + words[1:].lower() if words else key, MAX_FIELD_LABEL_CHARS)


def _value(value: Any, words: _Messages) -> str | Markup:
    if value is True:
        return words.gettext("Yes")
    if value is False:
        return words.gettext("No")
    if value is None:
        return words.gettext("(empty)")
    if isinstance(value, dict):
        return words.ngettext("%(num)d detail", "%(num)d details", len(value))
    if isinstance(value, list):
        return words.ngettext("a list of %(num)d item", "a list of %(num)d items", len(value))
    if isinstance(value, str):
        return _plain(value, MAX_FIELD_VALUE_CHARS) or words.gettext("(empty)")
    try:
        return _plain(str(value), MAX_FIELD_VALUE_CHARS)
    except ValueError:  # an integer too long for str(); never sent by a valid link
        return "…"


def _fields(result: Any, words: _Messages) -> tuple[list[tuple[str, str | Markup]], int]:
    """The result as (label, value) rows, and how many more fields were left out."""
    if result is None:
        return [], 0
    if not isinstance(result, dict):
        return [(words.gettext("Result"), _value(result, words))], 0
    rows = [(_label(str(key)), _value(value, words)) for key, value in result.items()]
    return rows[:MAX_FIELDS], max(0, len(rows) - MAX_FIELDS)


def _raw_json(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, indent=2)
    except (TypeError, ValueError):  # not JSON, or an integer too long for str()
        return "…"
    return _plain(text, MAX_RAW_JSON_CHARS)


def _error_type(kind: str | None) -> str:
    return _label(kind) if kind else ""


# --- rendering --------------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("completer.pages", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(
    template: str,
    *,
    status: int,
    accept_language: str | None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> RenderedPage:
    words = _Messages(negotiate_language(accept_language))
    page = (
        _environment()
        .get_template(template)
        .render(
            language=words.language,
            _=words.gettext,
            gettext=words.gettext,
            ngettext=words.ngettext,
            words=words,
            **context,
        )
    )
    # A lone surrogate (from a hostile title or result) cannot be sent as UTF-8.
    page = page.encode("utf-8", "replace").decode("utf-8")
    answer = {**PAGE_HEADERS, "Content-Language": words.language, **(headers or {})}
    return RenderedPage(status, answer, page)


def confirmation_page(
    link: LinkView,
    *,
    sealed_link: str,
    expires_at: float,
    state_known: bool = False,
    accept_language: str | None = None,
) -> RenderedPage:
    """200: what the choice will do, one button whose form POSTs to the page's own URL.

    Args:
        link: What the link asks for.
        sealed_link: The link's sealed part, repeated in the form (the POST checks it).
        expires_at: Unix time the link stops working.
        state_known: True when a ledger said the activity is still undecided. False
            (no ledger) adds that the page cannot know until the button is pressed.
        accept_language: The request's ``Accept-Language`` header.
    """
    words = _Messages(negotiate_language(accept_language))
    rows, more = _fields(link.result, words)
    return _render(
        "confirm.html",
        status=200,
        accept_language=accept_language,
        title=_plain(link.title, MAX_TITLE_CHARS),
        description=_plain(link.description, MAX_DESCRIPTION_CHARS),
        choice=words.choice(link.choice),
        rejects=link.rejects,
        rows=rows,
        more_fields=more,
        raw_json=_raw_json(link.result),
        has_result=link.result is not None,
        error_message=_plain(link.error_message, MAX_MESSAGE_CHARS),
        error_type=_error_type(link.error_type),
        sealed_link=sealed_link,
        expires=words.when(expires_at),
        state_known=state_known,
    )


def receipt_page(
    *,
    choice: str,
    status: str,
    decided_at: float,
    title: str | None = None,
    accept_language: str | None = None,
) -> RenderedPage:
    """200: what was done and when (the GET of a receipt URL; reloading changes nothing)."""
    words = _Messages(negotiate_language(accept_language))
    return _render(
        "receipt.html",
        status=200,
        accept_language=accept_language,
        title=_plain(title, MAX_TITLE_CHARS),
        choice=words.choice(choice),
        outcome=words.outcome(status),
        when=words.when(decided_at),
    )


def decided_page(
    *,
    decided_at: float,
    decided_status: str,
    decided_choice: str | None = None,
    title: str | None = None,
    status: int = 200,
    accept_language: str | None = None,
) -> RenderedPage:
    """The activity was already decided (a ledger knows): which choice and when, no button.

    Args:
        decided_at: Unix time of the decision.
        decided_status: Its outcome status: ``"completed"``, ``"failed"`` or ``"cancelled"``.
        decided_choice: The choice's label when known (else the outcome is shown).
        title: The link's title, when it has one.
        status: 200 on a GET; 409 when a POST of another choice meets the decision.
        accept_language: The request's ``Accept-Language`` header.
    """
    words = _Messages(negotiate_language(accept_language))
    return _render(
        "decided.html",
        status=status,
        accept_language=accept_language,
        title=_plain(title, MAX_TITLE_CHARS),
        choice=words.choice(decided_choice) if decided_choice else "",
        outcome=words.outcome(decided_status),
        when=words.when(decided_at),
    )


def expired_page(*, accept_language: str | None = None) -> RenderedPage:
    """401: the link has expired; ask for a new one."""
    return _notice("expired", status=401, accept_language=accept_language)


def invalid_link_page(*, status: int = 401, accept_language: str | None = None) -> RenderedPage:
    """401 (400 for a link whose sealed completion is invalid): the link does not work."""
    return _notice("invalid", status=status, accept_language=accept_language)


def cross_site_page(*, status: int = 401, accept_language: str | None = None) -> RenderedPage:
    """401: the POST did not come from the link's own page; the link still works.

    Also the answer (with 413) to a form far larger than the page's own.
    """
    return _notice("cross_site", status=status, accept_language=accept_language)


def engine_down_page(
    *, retry_after: int, status: int = 503, accept_language: str | None = None
) -> RenderedPage:
    """503 with ``Retry-After``: nothing was changed; try again in that many seconds."""
    seconds = max(1, int(retry_after))
    return _notice(
        "engine_down",
        status=status,
        accept_language=accept_language,
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )


def activity_gone_page(*, accept_language: str | None = None) -> RenderedPage:
    """404: the step is no longer waiting (timed out, cancelled or decided elsewhere)."""
    return _notice("gone", status=404, accept_language=accept_language)


def problem_page(*, status: int = 500, accept_language: str | None = None) -> RenderedPage:
    """500 (or 504): something failed and whether the choice was recorded is unknown."""
    return _notice("problem", status=status, accept_language=accept_language)


def _notice(
    kind: str,
    *,
    status: int,
    accept_language: str | None,
    headers: dict[str, str] | None = None,
    retry_after: int = 0,
) -> RenderedPage:
    return _render(
        "notice.html",
        status=status,
        accept_language=accept_language,
        headers=headers,
        kind=kind,
        retry_after=retry_after,
    )


def _iso(unix_time: float) -> str:
    return datetime.fromtimestamp(unix_time, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
