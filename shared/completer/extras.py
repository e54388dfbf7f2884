"""The optional parts of the package (extras) and the sentence that asks for a missing one.

Each engine, trigger and ledger store is an extra of the distribution, declared once in
``pyproject.toml`` (``activity-completer[temporal]``, ``[s3]``, ``[ledger-firestore]`` …). The
packages an extra brings are read from the installed distribution's own metadata, so this
module keeps no list of its own.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import metadata

from completer.errors import ConfigurationError

__all__ = ["DISTRIBUTION", "extra_packages", "missing_extra"]

DISTRIBUTION = "activity-completer"
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


@cache
def extra_packages(extra: str) -> tuple[str, ...]:
    """The packages the extra ``extra`` brings, as the installed metadata declares them.

    Empty when the distribution's metadata cannot be read (a source checkout on sys.path).
    """
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return ()
    names: list[str] = []
    for requirement in requirements:
        requirement_text, _, marker = requirement.partition(";")
        found = _EXTRA_MARKER.search(marker)
        name = _NAME.match(requirement_text.strip())
        if found and found.group(1) == extra and name and name.group(0) not in names:
            names.append(name.group(0))
    return tuple(names)


def missing_extra(what: str, extra: str, exc: ModuleNotFoundError) -> ConfigurationError:
    """The one sentence for a configuration that needs an extra that is not installed.

    Args:
        what: What needs it, in the user's words (``COMPLETER_BACKEND=temporal``).
        extra: The extra's name (``temporal``).
        exc: The import that failed.
    """
    packages = extra_packages(extra)
    brings = f" ({', '.join(packages)})" if packages else ""
    return ConfigurationError(
        f"{what} needs the extra '{extra}'{brings}, which is not installed ({exc.name} is "
        f"missing): pip install '{DISTRIBUTION}[{extra}]'."
    )
