"""Build the deployable artefacts of activity-completer into ``dist/``.

    python packaging/build.py                      # all five artefacts
    python packaging/build.py --only aws-s3 --lambda-arch arm64 --lambda-backends stepfunctions

Artefacts:

- ``gcp-http.zip``, ``gcp-pubsub.zip`` and ``gcp-gcs.zip``: Cloud Functions (2nd gen,
  ``python312``) source archives: the function's ``main.py`` at the root, the ``completer``
  package vendored, and a ``requirements.txt`` pinned to the versions installed in the
  building environment (the whole dependency closure, so the deployed function runs what the
  tests ran). Cloud Build installs the requirements at deploy time.
- ``aws-s3.zip``: a Lambda (``python3.12``) deployment package with ``main.py`` (handler
  ``main.handler``), ``completer`` and the dependencies installed for the Lambda platform
  (``pip install --platform manylinux2014_<arch> --only-binary=:all:``). boto3 is bundled,
  pinned, rather than taken from the runtime (whose version changes under you), and
  botocore's service models are trimmed to the services the function calls.
- ``http-lambda.zip``: the HTTP function for a Lambda Function URL or HTTP API, built like
  ``aws-s3.zip`` with its own packages (completion links and their pages, no S3 reader).

Each artefact gets a ``<name>.json`` manifest beside it (SHA-256, size, pins, options).
Archives are reproducible: sorted entries, fixed timestamps, no ``__pycache__``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
COMPLETER_SOURCE = ROOT / "shared" / "completer"
FUNCTIONS = ROOT / "functions"

# Both Cloud Functions python312 and Lambda python3.12 run CPython 3.12 on Linux.
TARGET_PYTHON = "3.12"
TARGET_ENVIRONMENT = {
    "python_version": TARGET_PYTHON,
    "python_full_version": f"{TARGET_PYTHON}.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
}

# What each artefact installs comes from pyproject.toml, declared once: the core dependencies,
# each engine's extra (COMPLETER_BACKEND=<name> needs the extra <name>), and the function's
# trigger and ledger extras.
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
ALL_BACKENDS = ("temporal", "cadence", "stepfunctions")


def _names(requirements: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(Requirement(r).name for r in requirements))


def extra_packages(*extras: str) -> tuple[str, ...]:
    """The core packages and those of ``extras``, names only, in the order declared."""
    optional = PYPROJECT["optional-dependencies"]
    return _names([*PYPROJECT["dependencies"], *(r for e in extras for r in optional[e])])


# Botocore service models kept in the Lambda: S3 (read the object), Step Functions (the
# backend), Secrets Manager (completer.secrets), STS (role-chaining credential providers).
LAMBDA_BOTOCORE_SERVICES = ("s3", "stepfunctions", "secretsmanager", "sts")
LAMBDA_ARCHES = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# Fixed timestamp for reproducible archives (zip cannot store dates before 1980).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}
ARTEFACT_NAMES = ["gcp-http", "gcp-pubsub", "gcp-gcs", "aws-s3", "http-lambda"]


@dataclass(frozen=True)
class Artefact:
    """One deployable archive: which function, which platform, which packages."""

    name: str
    function: str
    packages: tuple[str, ...]
    platform: str  # "gcp" (requirements.txt, built remotely) or "aws" (dependencies inside)
    botocore_services: tuple[str, ...] = LAMBDA_BOTOCORE_SERVICES
    """The botocore service models a Lambda package keeps (the others are trimmed)."""


def gcp_artefacts(backends: Sequence[str]) -> list[Artefact]:
    """The Cloud Functions source archives (the ledger on Firestore)."""
    return [
        Artefact(
            name=f"gcp-{trigger}",
            function=trigger,
            packages=extra_packages(*backends, trigger, "ledger-firestore"),
            platform="gcp",
        )
        for trigger in ("http", "pubsub", "gcs")
    ]


def aws_artefacts(backends: Sequence[str]) -> list[Artefact]:
    """The Lambda packages (the ledger on DynamoDB)."""
    return [
        Artefact(
            name="aws-s3",
            function="s3",
            packages=extra_packages(*backends, "s3", "ledger-dynamodb"),
            platform="aws",
        ),
        Artefact(
            name="http-lambda",
            function="http_lambda",
            # SNS: the AWS example's approval notifier (completer.activity) runs from this
            # package too and publishes the links to a topic.
            botocore_services=(*LAMBDA_BOTOCORE_SERVICES, "sns"),
            packages=extra_packages(*backends, "http-lambda", "ledger-dynamodb"),
            platform="aws",
        ),
    ]


def pinned_closure(packages: Iterable[str]) -> list[str]:
    """``name==version`` for the packages and everything they need, as installed here.

    Markers are evaluated for the target (CPython 3.12 on Linux). A dependency the target needs
    but this environment lacks is an error: pinning it would be a guess.
    """
    pins: dict[str, str] = {}
    pending: list[tuple[str, frozenset[str]]] = [(p, frozenset()) for p in packages]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"{name} is needed by the artefact but not installed in {sys.prefix}: "
                "run `make install` (pip install -e '.[dev]') first."
            ) from None
        pins[canonicalize_name(name)] = f"{canonicalize_name(name)}=={dist.version}"
        for line in dist.requires or ():
            requirement = Requirement(line)
            if requirement.marker and not _wanted(requirement.marker, extras):
                continue
            pending.append((requirement.name, frozenset(requirement.extras)))
    return sorted(pins.values())


def _wanted(marker: Marker, extras: frozenset[str]) -> bool:
    environments = [{**TARGET_ENVIRONMENT, "extra": extra} for extra in extras or {""}]
    return any(marker.evaluate(env) for env in environments)


def function_source(functions: Path, function: str) -> Path:
    """The function's ``main.py``; a clear error when it is not written yet."""
    path = functions / function / "main.py"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist (yet): nothing to package.")
    return path


def copy_sources(source: Path, stage: Path) -> None:
    """main.py at the root and the completer package beside it."""
    shutil.copy2(source, stage / "main.py")
    shutil.copytree(
        COMPLETER_SOURCE,
        stage / "completer",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def build_gcp(artefact: Artefact, out: Path, *, source: Path) -> dict[str, object]:
    """A source archive; Cloud Build installs requirements.txt for python312."""
    pins = pinned_closure(artefact.packages)
    with tempfile.TemporaryDirectory(prefix=f"{artefact.name}-") as tmp:
        stage = Path(tmp)
        copy_sources(source, stage)
        header = (
            f"# {artefact.name}: pinned from the build environment by packaging/build.py\n"
            f"# for the Cloud Functions python312 runtime; direct needs: "
            f"{', '.join(artefact.packages)}\n"
        )
        (stage / "requirements.txt").write_text(header + "\n".join(pins) + "\n")
        return write_zip(stage, out / f"{artefact.name}.zip") | {"requirements": pins}


def build_aws(
    artefact: Artefact, out: Path, *, source: Path, arch: str, cache_dir: Path | None
) -> dict[str, object]:
    """A Lambda package with dependencies installed for the Lambda platform."""
    pins = pinned_closure(artefact.packages)
    with tempfile.TemporaryDirectory(prefix=f"{artefact.name}-") as tmp:
        stage = Path(tmp)
        requirements = Path(tmp).with_suffix(".requirements.txt")
        requirements.write_text("\n".join(pins) + "\n")
        try:
            pip_install_for_lambda(requirements, stage, arch=arch, cache_dir=cache_dir)
        finally:
            requirements.unlink()
        trim_for_lambda(stage, services=artefact.botocore_services)
        copy_sources(source, stage)
        return write_zip(stage, out / f"{artefact.name}.zip") | {
            "requirements": pins,
            "architecture": arch,
            "botocore_services": list(artefact.botocore_services),
        }


def pip_install_for_lambda(
    requirements: Path, target: Path, *, arch: str, cache_dir: Path | None
) -> None:
    """``pip install --platform`` binary wheels for CPython 3.12 on the Lambda architecture."""
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-deps",  # the requirements are the full pinned closure already
        "--platform",
        LAMBDA_ARCHES[arch],
        "--only-binary=:all:",
        "--python-version",
        TARGET_PYTHON,
        "--implementation",
        "cp",
        "--target",
        str(target),
        "--requirement",
        str(requirements),
    ]
    if cache_dir is not None:
        argv += ["--cache-dir", str(cache_dir)]
    subprocess.run(argv, check=True)  # noqa: S603 - our own argv: this pip, our options


def trim_for_lambda(stage: Path, *, services: Sequence[str] = LAMBDA_BOTOCORE_SERVICES) -> None:
    """Drop what a Lambda never loads: other botocore service models, metadata, scripts."""
    data = stage / "botocore" / "data"
    if data.is_dir():
        for entry in data.iterdir():
            if entry.is_dir() and entry.name not in services:
                shutil.rmtree(entry)
    for entry in stage.iterdir():
        # Console scripts and type stubs (temporalio pulls in types-protobuf) never run.
        if entry.is_dir() and (entry.name == "bin" or entry.name.endswith("-stubs")):
            shutil.rmtree(entry)
    for junk in stage.rglob("__pycache__"):
        shutil.rmtree(junk, ignore_errors=True)


def write_zip(stage: Path, path: Path) -> dict[str, object]:
    """A deterministic zip of the stage directory and its manifest facts."""
    files = sorted(
        p
        for p in stage.rglob("*")
        if p.is_file()
        and not SKIPPED_PARTS.intersection(p.relative_to(stage).parts)
        and p.suffix not in SKIPPED_SUFFIXES
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for file in files:
            info = zipfile.ZipInfo(file.relative_to(stage).as_posix(), date_time=ZIP_DATE)
            mode = 0o755 if os.access(file, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, file.read_bytes())
    partial.replace(path)
    digest = hashlib.sha256(path.read_bytes()).digest()
    return {
        "file": path.name,
        "sha256": digest.hex(),
        # Terraform's source_code_hash / filebase64sha256() form.
        "sha256_base64": base64.b64encode(digest).decode(),
        "bytes": path.stat().st_size,
        "unpacked_bytes": sum(f.stat().st_size for f in files),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory")
    parser.add_argument(
        "--only",
        action="append",
        choices=ARTEFACT_NAMES,
        help="build only these artefacts (repeatable); default: all",
    )
    parser.add_argument(
        "--gcp-backends",
        default=",".join(ALL_BACKENDS),
        help="engines the GCP functions can reach (default: all)",
    )
    parser.add_argument(
        "--lambda-backends",
        default="temporal,stepfunctions",
        help="engines the Lambda can reach; 'stepfunctions' alone leaves temporalio out",
    )
    parser.add_argument(
        "--functions-dir",
        type=Path,
        default=FUNCTIONS,
        help="where <function>/main.py live (default: functions/)",
    )
    parser.add_argument("--lambda-arch", choices=sorted(LAMBDA_ARCHES), default="x86_64")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="pip cache for the Lambda wheels (default: pip's own cache)",
    )
    return parser.parse_args(argv)


def backends_from(value: str) -> list[str]:
    """A comma-separated backend list, checked against the registry names."""
    names = [b.strip() for b in value.split(",") if b.strip()]
    unknown = sorted(set(names) - set(ALL_BACKENDS))
    if unknown or not names:
        raise SystemExit(f"unknown backend(s) {unknown or value!r}: choose from {ALL_BACKENDS}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """Build the requested artefacts and print one line per artefact."""
    args = parse_args(argv)
    wanted = set(args.only or ARTEFACT_NAMES)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    gcp_backends = backends_from(args.gcp_backends)
    lambda_backends = backends_from(args.lambda_backends)
    for artefact in [*gcp_artefacts(gcp_backends), *aws_artefacts(lambda_backends)]:
        if artefact.name not in wanted:
            continue
        source = function_source(args.functions_dir, artefact.function)
        if artefact.platform == "gcp":
            manifest = build_gcp(artefact, out, source=source)
            manifest["backends"] = gcp_backends
            manifest["runtime"] = "python312"
        else:
            manifest = build_aws(
                artefact, out, source=source, arch=args.lambda_arch, cache_dir=args.cache_dir
            )
            manifest["backends"] = lambda_backends
            manifest["runtime"] = "python3.12"
        manifest["entry_point"] = "main.handler" if artefact.platform == "aws" else "complete"
        (out / f"{artefact.name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
        megabytes = int(str(manifest["bytes"])) / 1e6
        digest = str(manifest["sha256"])[:12]
        print(f"{out / str(manifest['file'])}  {megabytes:.1f} MB  sha256:{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
