"""Whether ``completer dev`` / ``completer demo`` run from a source checkout, as they must.

Kept apart from the stack so that the check imports nothing the installed package may lack.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["REPO", "require_checkout"]

REPO = Path(__file__).resolve().parents[3]


def require_checkout() -> None:
    """Stop with one sentence unless this is a source checkout (the stack runs its functions/).

    Raises:
        click.ClickException: ``completer`` was installed as a package, without the checkout.
    """
    if not (REPO / "functions" / "http" / "main.py").is_file():
        raise click.ClickException(
            "`completer dev` and `completer demo` run the whole local stack from a source "
            "checkout of activity-completer (they start its functions/ and need its dev "
            "tools): clone the repository and run `make run` there."
        )
