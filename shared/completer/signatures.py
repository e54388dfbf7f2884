"""Signed requests to the HTTP function: Standard Webhooks verification, replay memory, scopes.

A sender signs ``<webhook-id>.<webhook-timestamp>.<raw body>`` with HMAC-SHA256 under one of
the secrets in ``COMPLETER_SIGNING_SECRETS`` and sends the three Standard Webhooks headers.
The HTTP handler calls, in this order, before it parses the body::

    signed = verifier.verify(body, headers)          # Unauthorized (401)
    answer, replayed = await answer_once(replays, signed, carry_out)
    # carry_out: parse_request(body) (400), check_scope(signed.scope, request) (403),
    # execute; a replay gets the first final answer again, plus "replayed": true.

Secrets are ``[name=]whsec_<base64>``: the optional name lets ``COMPLETER_SIGNING_SCOPES``
restrict what that secret may do (see docs/security.md). HMAC and the header parsing are
done here with :mod:`hmac` rather than the ``standardwebhooks`` library: the library stops
at the first malformed ``webhook-signature`` entry (hiding a valid one after it), decodes
secrets leniently (dropping invalid characters) and fixes the tolerance at 5 minutes. The
signatures are the library's byte for byte (the tests sign with it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from completer.errors import ConfigurationError, Conflict, Forbidden, Unauthorized
from completer.models import Action, CompletionRequest

if TYPE_CHECKING:
    from completer.settings import Settings

__all__ = [
    "MIN_SECRET_BYTES",
    "MemoryReplayStore",
    "Naming",
    "RememberedAnswer",
    "ReplayStore",
    "Scope",
    "SignatureVerifier",
    "SignedRequest",
    "SigningKey",
    "answer_once",
    "check_scope",
    "is_final",
    "parse_scopes",
    "parse_signing_secrets",
]

# Standard Webhooks specification, "Signature scheme": the three headers a sender sets.
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
# Standard Webhooks: secrets are "whsec_" + base64; signatures "v1," + base64 of HMAC-SHA256.
SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
SIGNATURE_VERSION = "v1"
# Standard Webhooks recommends secrets of 24 to 64 random bytes; fewer is a guessable key.
MIN_SECRET_BYTES = 24
# A webhook-id is the sender's message id (msg_<ksuid> in practice); longer is not one.
MAX_WEBHOOK_ID_LENGTH = 256
MAX_SIGNATURE_HEADER_LENGTH = 4096
DEFAULT_REPLAY_CAPACITY = 10_000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE_BYTES = hashlib.sha256().digest_size

Naming = Literal["token", "ids"]
"""How a request names its activity: by ``task_token``, or by ``workflow_id`` + ``activity_id``."""
NAMINGS: tuple[Naming, ...] = ("token", "ids")


@dataclass(frozen=True)
class Scope:
    """What requests signed by one secret may do; ``None`` in a field means "anything".

    Attributes:
        workflow_id_prefixes: The workflow IDs the secret may name start with one of these.
        actions: The actions the secret may ask for.
        namings: How the secret's requests may name activities (``token``, ``ids``).
    """

    workflow_id_prefixes: tuple[str, ...] | None = None
    actions: frozenset[Action] | None = None
    namings: frozenset[Naming] | None = None

    @property
    def unrestricted(self) -> bool:
        """True when the scope allows everything."""
        return self.workflow_id_prefixes is None and self.actions is None and self.namings is None


UNRESTRICTED = Scope()


@dataclass(frozen=True)
class SigningKey:
    """One signing secret: its optional name, its HMAC key and the scope that applies to it."""

    name: str | None
    key: bytes = field(repr=False)
    scope: Scope = UNRESTRICTED
    number: int = 1
    """Its position in ``COMPLETER_SIGNING_SECRETS`` (1-based), for unnamed secrets' logs."""

    @property
    def label(self) -> str:
        """What logs call this secret: its name, else ``#<number>``; never the secret."""
        return self.name if self.name is not None else f"#{self.number}"


@dataclass(frozen=True)
class SignedRequest:
    """A request whose signature checked out.

    Attributes:
        webhook_id: The sender's message id (with the secret, the replay memory's key).
        timestamp: The signed Unix time.
        key: The secret that matched (its scope applies to the request).
        body_digest: SHA-256 of the raw body, so a reused id with another body is told apart.
    """

    webhook_id: str
    timestamp: int
    key: SigningKey
    body_digest: str

    @property
    def scope(self) -> Scope:
        """The matching secret's scope."""
        return self.key.scope

    @property
    def replay_key(self) -> str:
        """What replays are recognised by: the secret's label and the ``webhook-id``.

        Two partners (two secret names) may use the same ids without meeting; secrets that
        share a name (rotation) share their ids.
        """
        return f"{self.key.label} {self.webhook_id}"


def parse_signing_secrets(value: str) -> tuple[tuple[str | None, bytes], ...]:
    """Split ``COMPLETER_SIGNING_SECRETS`` into (name, key) pairs, strictly.

    Each space-separated entry is ``whsec_<base64>`` or ``<name>=whsec_<base64>``; the
    base64 must be canonical (standard alphabet, padded) and decode to at least
    :data:`MIN_SECRET_BYTES` bytes.

    Raises:
        ValueError: An entry is malformed; the message gives its position, never its text.
    """
    entries: list[tuple[str | None, bytes]] = []
    for number, entry in enumerate(value.split(), start=1):
        name: str | None = None
        secret = entry
        if not entry.startswith(SECRET_PREFIX) and "=" in entry:
            name, _, secret = entry.partition("=")
            if not _NAME.match(name):
                raise ValueError(
                    f"secret number {number} has an invalid name: names are 1-64 letters, "
                    "digits, '.', '_' or '-'"
                )
        if not secret.startswith(SECRET_PREFIX):
            raise ValueError(f"secret number {number} does not start with '{SECRET_PREFIX}'")
        try:
            key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"secret number {number} is not '{SECRET_PREFIX}' followed by padded "
                "standard base64"
            ) from None
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"secret number {number} is {len(key)} bytes; use at least {MIN_SECRET_BYTES} "
                "random bytes, such as 'whsec_' + the output of `openssl rand -base64 32`"
            )
        entries.append((name, key))
    return tuple(entries)


_SCOPE_FIELDS = {"workflow_id_prefixes", "actions", "naming"}


def parse_scopes(value: str, *, secret_names: Sequence[str | None]) -> dict[str, Scope]:
    """Parse ``COMPLETER_SIGNING_SCOPES``: a JSON object from secret name to scope.

    Example: ``{"acme": {"workflow_id_prefixes": ["acme-"], "actions": ["complete"],
    "naming": ["ids"]}}``. A scope with workflow-ID prefixes may only name activities by
    IDs (a task token is opaque here), so ``naming`` then defaults to ``["ids"]`` and
    may not include ``token``.

    Raises:
        ValueError: Not such an object, an unknown field, action or naming, or a name that
            no secret in ``secret_names`` carries.
    """
    try:
        data = json.loads(value)
    except ValueError:
        raise ValueError("must be a JSON object from secret name to scope") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object from secret name to scope")  # noqa: TRY004 - pydantic reports ValueError
    known = {name for name in secret_names if name is not None}
    scopes: dict[str, Scope] = {}
    for name, spec in data.items():
        if name not in known:
            raise ValueError(
                f"the scope {name[:64]!r} names no secret; name a secret "
                "'<name>=whsec_…' in COMPLETER_SIGNING_SECRETS"
            )
        scopes[name] = _scope(name, spec)
    return scopes


def _scope(name: str, spec: Any) -> Scope:
    where = f"the scope {name!r}"
    if not isinstance(spec, dict) or not spec:
        raise ValueError(f"{where} must be an object with workflow_id_prefixes, actions or naming")
    unknown = set(spec) - _SCOPE_FIELDS
    if unknown:
        raise ValueError(f"{where} has unknown fields: {', '.join(sorted(unknown))[:200]}")
    prefixes = _strings(spec.get("workflow_id_prefixes"), f"{where}: workflow_id_prefixes")
    actions_given = _strings(spec.get("actions"), f"{where}: actions")
    naming_given = _strings(spec.get("naming"), f"{where}: naming")
    actions: frozenset[Action] | None = None
    if actions_given is not None:
        valid = {a.value for a in Action}
        if not set(actions_given) <= valid:
            raise ValueError(f"{where}: actions must be among {', '.join(sorted(valid))}")
        actions = frozenset(Action(a) for a in actions_given)
    namings: frozenset[Naming] | None = None
    if naming_given is not None:
        if not set(naming_given) <= set(NAMINGS):
            raise ValueError(f"{where}: naming must be among token, ids")
        namings = frozenset(n for n in NAMINGS if n in naming_given)
    if prefixes is not None:
        if any(not p for p in prefixes):
            raise ValueError(f"{where}: a workflow-ID prefix must not be empty")
        if namings is not None and "token" in namings:
            raise ValueError(
                f"{where}: a secret limited to workflow-ID prefixes cannot use task tokens "
                '(a token does not show its workflow ID); set naming to ["ids"]'
            )
        namings = frozenset({"ids"})
    return Scope(
        workflow_id_prefixes=None if prefixes is None else tuple(prefixes),
        actions=actions,
        namings=namings,
    )


def _strings(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where} must be a non-empty list of strings")
    return value


def check_scope(scope: Scope, request: CompletionRequest) -> None:
    """Refuse a request its signing secret's scope does not cover.

    Raises:
        Forbidden: The action, the naming form or the workflow ID is outside ``scope``.
    """
    if scope.unrestricted:
        return
    if scope.actions is not None and request.action not in scope.actions:
        raise Forbidden(f"this signing secret may not '{request.action.value}' activities.")
    if request.correlation_key is not None and (
        scope.namings is not None or scope.workflow_id_prefixes is not None
    ):
        # A key names whatever activity registered it: a restricted scope cannot vouch for it.
        raise Forbidden("this signing secret may not name activities by correlation key.")
    naming: Naming = "token" if request.by_token else "ids"
    if scope.namings is not None and naming not in scope.namings:
        shown = "by task token" if naming == "token" else "by workflow and activity ID"
        raise Forbidden(f"this signing secret may not name activities {shown}.")
    prefixes = scope.workflow_id_prefixes
    if prefixes is not None:
        workflow_id = request.workflow_id or ""
        if not workflow_id.startswith(prefixes):
            raise Forbidden("this signing secret may not complete activities of this workflow.")


class SignatureVerifier:
    """Verifies Standard Webhooks signatures against one or more secrets (for rotation).

    Build it once per process (:meth:`from_settings`); :meth:`verify` is pure and cheap.
    """

    def __init__(self, keys: Sequence[SigningKey], *, tolerance_seconds: int) -> None:
        """Bind the keys and the timestamp tolerance.

        Raises:
            ConfigurationError: No key, or a tolerance outside 1..3600 seconds.
        """
        if not keys:
            raise ConfigurationError("COMPLETER_SIGNING_SECRETS is empty.")
        if not 1 <= tolerance_seconds <= 3600:
            raise ConfigurationError(
                "COMPLETER_SIGNATURE_TOLERANCE_SECONDS must be between 1 and 3600."
            )
        self.keys = tuple(keys)
        self.tolerance_seconds = tolerance_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> SignatureVerifier | None:
        """The verifier the settings ask for; None without signing secrets."""
        keys = settings.signing_keys
        if not keys:
            return None
        return cls(keys, tolerance_seconds=settings.signature_tolerance_seconds)

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> SignedRequest:
        """Check that one of the secrets signed ``body`` with these headers, recently.

        Args:
            body: The raw body, exactly as received.
            headers: The request headers, names in lower case.
            now: The current Unix time (for tests); defaults to the clock.

        Returns:
            The ``webhook-id``, timestamp and the secret that matched.

        Raises:
            Unauthorized: Headers missing or malformed, timestamp outside the tolerance
                (either direction), or no well-formed ``v1`` entry matches.
        """
        message_id = headers.get(WEBHOOK_ID, "")
        timestamp = headers.get(WEBHOOK_TIMESTAMP, "")
        signatures = headers.get(WEBHOOK_SIGNATURE, "")
        if not (message_id and timestamp and signatures):
            raise Unauthorized(
                "the request is not signed: send the Standard Webhooks headers "
                f"{WEBHOOK_ID}, {WEBHOOK_TIMESTAMP} and {WEBHOOK_SIGNATURE}."
            )
        if len(message_id) > MAX_WEBHOOK_ID_LENGTH or not message_id.isprintable():
            raise Unauthorized(
                f"{WEBHOOK_ID} must be printable and at most {MAX_WEBHOOK_ID_LENGTH} characters."
            )
        if not _UNIX_SECONDS.match(timestamp):
            raise Unauthorized(f"{WEBHOOK_TIMESTAMP} must be a Unix time in whole seconds.")
        skew = int(timestamp) - (time.time() if now is None else now)
        if abs(skew) > self.tolerance_seconds:
            direction = "ahead of" if skew > 0 else "behind"
            raise Unauthorized(
                f"{WEBHOOK_TIMESTAMP} is {abs(skew):.0f} s {direction} this server's clock, "
                f"outside the {self.tolerance_seconds} s tolerance."
            )
        offered = _offered_signatures(signatures[:MAX_SIGNATURE_HEADER_LENGTH])
        try:
            signed = b"%s.%s." % (message_id.encode("utf-8"), timestamp.encode("ascii")) + body
        except UnicodeEncodeError:
            raise Unauthorized(f"{WEBHOOK_ID} is not text.") from None
        for key in self.keys:
            expected = hmac.new(key.key, signed, hashlib.sha256).digest()
            # Every offered entry is compared (constant time each), matched or not.
            matched = False
            for candidate in offered:
                matched |= hmac.compare_digest(expected, candidate)
            if matched:
                return SignedRequest(
                    webhook_id=message_id,
                    timestamp=int(timestamp),
                    key=key,
                    body_digest=hashlib.sha256(body).hexdigest(),
                )
        raise Unauthorized(f"no {WEBHOOK_SIGNATURE} matches the body with a configured secret.")


def _offered_signatures(header: str) -> list[bytes]:
    # Space-separated "v1,<base64>" entries; a malformed or other-version entry is skipped,
    # never allowed to hide a valid one after it.
    offered: list[bytes] = []
    for entry in header.split():
        version, comma, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION or not comma:
            continue
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == _SIGNATURE_BYTES:
            offered.append(raw)
    return offered


@dataclass(frozen=True)
class RememberedAnswer:
    """A final answer to a signed request, kept to answer its replays.

    Attributes:
        status: The HTTP status that was answered.
        body: The JSON body that was answered (without ``replayed``).
    """

    status: int
    body: dict[str, Any]

    def replayed(self) -> dict[str, Any]:
        """The body to answer a replay with: the first body plus ``"replayed": true``."""
        return {**self.body, "replayed": True}


class ReplayStore(Protocol):
    """Where the answers to signed requests are kept for their tolerance window.

    The in-process :class:`MemoryReplayStore` is the default; the ledger can back this
    interface to share it across instances.
    """

    async def first_answer(self, signed: SignedRequest) -> RememberedAnswer | None:
        """The answer already given to ``signed.replay_key``, or None when it is new.

        Raises:
            Conflict: The id was already used for a different body.
        """
        ...

    async def remember(self, signed: SignedRequest, answer: RememberedAnswer | None) -> None:
        """Keep ``answer`` for ``signed.replay_key`` until its signature expires.

        ``None`` releases the id without an answer (the outcome was transient, so the
        sender's retry must be carried out).
        """
        ...


def is_final(answer: RememberedAnswer) -> bool:
    """True when an answer may be given again to a replay (not a 5xx: those are retried)."""
    return answer.status < 500


async def answer_once(
    store: ReplayStore,
    signed: SignedRequest,
    carry_out: Callable[[], Awaitable[RememberedAnswer]],
) -> tuple[RememberedAnswer, bool]:
    """Carry a signed request out at most once per ``webhook-id``.

    Args:
        store: The replay memory.
        signed: What :meth:`SignatureVerifier.verify` returned for the request.
        carry_out: Parses, scope-checks and executes the request; returns the answer.

    Returns:
        The answer and whether it is a replay (then answer ``answer.replayed()``).

    Raises:
        Conflict: The id was already used for a different body.
    """
    first = await store.first_answer(signed)
    if first is not None:
        return first, True
    answer: RememberedAnswer | None = None
    try:
        answer = await carry_out()
    finally:
        await store.remember(signed, answer if answer is not None and is_final(answer) else None)
    return answer, False


class MemoryReplayStore:
    """A per-instance replay memory, bounded in entries and in time.

    An answer is kept until its signed timestamp leaves the tolerance window (after which the
    signature is refused anyway). A request that arrives while the first with its id is
    still being carried out waits for that first answer instead of running twice. When
    full, the oldest answers are forgotten first; ids being carried out are never dropped.
    """

    def __init__(
        self,
        *,
        tolerance_seconds: int,
        capacity: int = DEFAULT_REPLAY_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Size the memory; ``clock`` returns the Unix time (for tests)."""
        self.tolerance_seconds = tolerance_seconds
        self.capacity = capacity
        self._clock = clock
        # webhook-id -> (body digest, expiry, answer), oldest first.
        self._answers: OrderedDict[str, tuple[str, float, RememberedAnswer]] = OrderedDict()
        # webhook-id -> (body digest, set when its first request ends).
        self._running: dict[str, tuple[str, asyncio.Event]] = {}

    def __len__(self) -> int:
        return len(self._answers) + len(self._running)

    async def first_answer(self, signed: SignedRequest) -> RememberedAnswer | None:
        """See :meth:`ReplayStore.first_answer`; a new id is claimed until :meth:`remember`.

        A request whose id is being carried out right now waits for that first answer.
        """
        replay_key = signed.replay_key
        while True:
            self._expire()
            known = self._answers.get(replay_key)
            running = self._running.get(replay_key)
            if known is not None:
                _same_body(known[0], signed)
                return known[2]
            if running is None:
                self._running[replay_key] = (signed.body_digest, asyncio.Event())
                return None
            _same_body(running[0], signed)
            # Carried out right now: wait, then take its answer or, if it was released
            # without one (a transient outcome), claim the id in turn.
            await running[1].wait()

    async def remember(self, signed: SignedRequest, answer: RememberedAnswer | None) -> None:
        """Keep a final answer, or release the claim with ``None`` (a transient outcome)."""
        running = self._running.pop(signed.replay_key, None)
        if answer is not None:
            expires_at = signed.timestamp + self.tolerance_seconds
            self._answers[signed.replay_key] = (signed.body_digest, expires_at, answer)
            self._answers.move_to_end(signed.replay_key)
            while len(self._answers) > self.capacity:
                self._answers.popitem(last=False)
        if running is not None:
            running[1].set()

    def _expire(self) -> None:
        now = self._clock()
        # Kept in the order they were answered, which is close to timestamp order: trimming
        # the stale head is enough, and the capacity bounds the rest.
        while self._answers and next(iter(self._answers.values()))[1] < now:
            self._answers.popitem(last=False)


def _same_body(digest: str, signed: SignedRequest) -> None:
    if not hmac.compare_digest(digest, signed.body_digest):
        raise Conflict(f"this {WEBHOOK_ID} was already used for a different body.")
