"""mkdocs hook: pages generated from the code, so they cannot drift from it.

``<!-- generated:settings -->`` in a page becomes the table of every setting, read from
:class:`completer.settings.Settings` (variable, meaning, default).
"""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticUndefined

_MARKER = "<!-- generated:settings -->"


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return "computed"
    value = field.default
    if value is PydanticUndefined or value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"


def settings_table() -> str:
    """The Markdown table of every ``COMPLETER_*`` (and engine) variable of the settings model."""
    from completer.settings import Settings

    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None) or [name]
        variable = " / ".join(f"`{choice}`" for choice in choices)
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {variable} | {meaning} | {_default(field)} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the generated-content markers of a page."""
    if _MARKER in markdown:
        markdown = markdown.replace(_MARKER, settings_table())
    return markdown
