"""The completion ledger: what was carried out, so a repeat gets the first answer.

``COMPLETER_LEDGER`` chooses the store (see docs/ledger.md)::

    firestore://<database>/<collection>    Firestore (GCP); "(default)" is a database name
    dynamodb://<table>                      DynamoDB (AWS): key "id", TTL "expiration"
    (unset)                                 in-process: per instance, bounded

Only the chosen store's module (and its SDK) is imported. Typical use by a trigger::

    ledger = create_ledger(settings)
    executor = ledger.wrap(client)                       # an Executor
    outcome = await executor.execute(request, origin=Origin("http", webhook_id))
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from completer.errors import ConfigurationError
from completer.extras import missing_extra
from completer.ledger.base import LedgerStore, Record, RecordState
from completer.ledger.core import DEFAULT_TTL_SECONDS, Decision, Ledger
from completer.ledger.deliveries import Answer, DeliveryLog
from completer.ledger.executor import LedgerExecutor
from completer.ledger.registry import BufferedRequest, CorrelationRegistry, Registration

if TYPE_CHECKING:
    from completer.settings import Settings

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "Answer",
    "BufferedRequest",
    "CorrelationRegistry",
    "Decision",
    "DeliveryLog",
    "Ledger",
    "LedgerExecutor",
    "LedgerLocation",
    "LedgerStore",
    "Record",
    "RecordState",
    "Registration",
    "create_ledger",
    "create_store",
    "parse_ledger_url",
]

_FIRESTORE = re.compile(r"^firestore://(?P<database>[^/\s]+)/(?P<collection>[^/\s]+)$")
_DYNAMODB = re.compile(r"^dynamodb://(?P<table>[A-Za-z0-9_.-]{3,255})$")

# Each shared store is the extra ledger-<kind> (pyproject.toml).
STORES: dict[str, str] = {
    "memory": "completer.ledger.memory:MemoryStore",
    "firestore": "completer.ledger.firestore:FirestoreStore",
    "dynamodb": "completer.ledger.dynamodb:DynamoDBStore",
}


@dataclass(frozen=True, slots=True)
class LedgerLocation:
    """A parsed ``COMPLETER_LEDGER``: the store kind and where in it."""

    kind: str
    url: str
    database: str = ""
    collection: str = ""
    table: str = ""


def parse_ledger_url(url: str | None) -> LedgerLocation:
    """Parse ``COMPLETER_LEDGER`` (None or empty: the in-process store).

    Raises:
        ValueError: The URL has neither accepted form; the message says which they are.
    """
    if url is None or not url.strip():
        return LedgerLocation(kind="memory", url="memory://")
    if match := _FIRESTORE.match(url):
        return LedgerLocation(kind="firestore", url=url, **match.groupdict())
    if match := _DYNAMODB.match(url):
        return LedgerLocation(kind="dynamodb", url=url, table=match.group("table"))
    raise ValueError(
        "must be firestore://<database>/<collection> (e.g. firestore://(default)/completer-ledger) "
        "or dynamodb://<table>"
    )


def create_store(location: LedgerLocation, *, timeout: float = 5.0) -> LedgerStore:
    """Build (without calling it yet) the store ``location`` names, importing it now.

    Raises:
        ConfigurationError: The store's SDK is not installed.
    """
    module_name, _, attribute = STORES[location.kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise missing_extra(
            f"COMPLETER_LEDGER={location.url}", f"ledger-{location.kind}", exc
        ) from exc
    try:
        return _build(getattr(module, attribute), location, timeout=timeout)
    except Exception as exc:
        # No credentials, no region, no project: say so at start, in one sentence.
        raise ConfigurationError(
            f"COMPLETER_LEDGER={location.url} cannot be used: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}"
        ) from exc


def _build(store_class: Any, location: LedgerLocation, *, timeout: float) -> LedgerStore:
    if location.kind == "firestore":
        store: LedgerStore = store_class(
            location.url,
            database=location.database,
            collection=location.collection,
            timeout=timeout,
        )
    elif location.kind == "dynamodb":
        store = store_class(location.url, table=location.table, timeout=timeout)
    else:
        store = store_class(location.url)
    return store


def create_ledger(settings: Settings) -> Ledger:
    """The ledger the settings configure (``COMPLETER_LEDGER``, ``COMPLETER_LEDGER_TTL_SECONDS``).

    Raises:
        ConfigurationError: The store's SDK is missing.
    """
    timeout = max(1.0, min(5.0, settings.rpc_timeout_seconds))
    return Ledger(
        create_store(parse_ledger_url(settings.ledger), timeout=timeout),
        ttl_seconds=settings.ledger_ttl_seconds,
        rpc_timeout_seconds=settings.rpc_timeout_seconds,
        scope=settings.backend,
    )
