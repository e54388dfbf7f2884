"""``python -m completer.devserver``: the same as ``completer dev`` (``make run``).

The local stack lives in :mod:`completer.dev`; this module keeps the older entry point.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``completer dev`` with these arguments."""
    from completer.cli import main as cli

    cli.main(args=["dev", *(argv or [])], prog_name="completer")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
