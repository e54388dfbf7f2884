"""Engine adapters, looked up by name and imported on first use.

``COMPLETER_BACKEND`` names one of :data:`BACKENDS`; only that adapter's module (and so
only its engine SDK) is ever imported, which keeps ``temporalio`` and ``grpc`` out of a
Step Functions Lambda.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from completer.errors import ConfigurationError
from completer.extras import missing_extra

if TYPE_CHECKING:
    from completer.backends.base import Backend
    from completer.settings import Settings

__all__ = ["BACKENDS", "create_backend", "load_backend_class"]

BACKENDS: dict[str, str] = {
    "temporal": "completer.backends.temporal:TemporalBackend",
    "cadence": "completer.backends.cadence:CadenceBackend",
    "stepfunctions": "completer.backends.stepfunctions:StepFunctionsBackend",
}


def load_backend_class(name: str) -> type[Backend]:
    """Import and return the adapter class registered under ``name``.

    Raises:
        ConfigurationError: The name is unknown or its engine SDK is not installed.
    """
    try:
        dotted = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigurationError(
            f"COMPLETER_BACKEND is invalid (got {name!r}): choose one of {known}."
        ) from None
    module_name, _, attribute = dotted.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Each engine is the extra of its name (pyproject.toml).
        raise missing_extra(f"COMPLETER_BACKEND={name}", name, exc) from exc
    backend_class: type[Backend] = getattr(module, attribute)
    return backend_class


def create_backend(settings: Settings) -> Backend:
    """Build (without connecting) the adapter the settings name."""
    return load_backend_class(settings.backend)(settings)
