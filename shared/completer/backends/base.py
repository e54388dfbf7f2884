"""The port every engine adapter implements.

An adapter has a small abstract surface: connect and close, the encoded size of a value,
one coroutine per action, and one function that turns the engine's errors into
:mod:`completer.errors`. Everything shared (naming the activity, the payload limit, the
deadline, classifying what escaped) lives in :class:`completer.client.CompletionClient`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal, NamedTuple, Self

from completer.errors import CompleterError, InvalidRequest
from completer.models import Action, CompletionRequest
from completer.tokens import decode_token

if TYPE_CHECKING:
    from types import TracebackType

    from pydantic import JsonValue

    from completer.models import ActivityError
    from completer.settings import Settings

__all__ = ["ActivityIds", "Backend", "Target"]


class ActivityIds(NamedTuple):
    """An activity named by its workflow and activity IDs (survives activity retries)."""

    workflow_id: str
    activity_id: str
    run_id: str | None = None


Target = bytes | str | ActivityIds
"""A decoded task token (bytes for binary engines, text for Step Functions) or IDs."""


class Backend(ABC):
    """One engine. Subclasses set the class attributes and implement the abstract methods.

    Attributes:
        name: The ``COMPLETER_BACKEND`` value.
        token_format: ``"binary"``: tokens travel base64-encoded and are decoded here;
            ``"text"``: tokens are passed on as issued.
        max_token_chars: For text tokens, the longest the engine accepts.
        supports_ids: Whether workflow_id + activity_id can name an activity.
        supported_actions: The actions the engine can carry out.
    """

    name: ClassVar[str]
    token_format: ClassVar[Literal["binary", "text"]] = "binary"  # noqa: S105 - not a secret
    max_token_chars: ClassVar[int] = 2048
    supports_ids: ClassVar[bool] = True
    supported_actions: ClassVar[frozenset[Action]] = frozenset(Action)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def resolve_target(self, request: CompletionRequest) -> Target:
        """Name the activity in this engine's terms, before any call.

        Raises:
            InvalidRequest: The token is malformed, or the engine cannot do what is asked.
        """
        if request.action not in self.supported_actions:
            raise InvalidRequest(self.unsupported_action_message(request.action))
        if request.correlation_key is not None:
            # Keys are resolved by completer.correlation, which needs the ledger's registry.
            raise InvalidRequest(
                "this completer cannot resolve correlation keys: name the activity by "
                "task_token or workflow_id + activity_id."
            )
        if request.task_token is None:
            if not self.supports_ids:
                raise InvalidRequest(
                    f"{self.name} cannot name an activity by workflow_id + activity_id; "
                    "send its task_token."
                )
            assert request.workflow_id is not None
            assert request.activity_id is not None
            return ActivityIds(request.workflow_id, request.activity_id, request.run_id)
        if self.token_format == "binary":  # noqa: S105 - not a secret
            return decode_token(request.task_token)
        if len(request.task_token) > self.max_token_chars:
            raise InvalidRequest(f"task_token is over {self.max_token_chars} characters.")
        return request.task_token

    def unsupported_action_message(self, action: Action) -> str:
        """The sentence refusing an action this engine lacks."""
        return f"{self.name} does not support the action '{action}'."

    @abstractmethod
    async def connect(self) -> None:
        """Open the one connection this process uses."""

    @abstractmethod
    async def close(self) -> None:
        """Release the connection; safe to call twice."""

    async def probe(self) -> None:
        """Succeed when the engine answers; the circuit breaker's recovery check.

        Called only after :meth:`connect` succeeded. Any answer counts, even a refusal:
        the question is whether the engine can be reached. The default trusts a
        successful connect; adapters whose connect does not touch the network override it.
        """
        return

    @abstractmethod
    async def encoded_size(self, request: CompletionRequest) -> int:
        """Bytes the engine will store for the request's result, error details or details."""

    @abstractmethod
    async def complete(self, target: Target, result: JsonValue) -> None:
        """Complete the activity with ``result``."""

    @abstractmethod
    async def fail(self, target: Target, error: ActivityError) -> None:
        """Fail the activity with ``error``."""

    @abstractmethod
    async def heartbeat(self, target: Target, details: JsonValue) -> bool:
        """Record a heartbeat; return whether cancellation of the activity was requested."""

    @abstractmethod
    async def cancel(self, target: Target, details: JsonValue) -> None:
        """Report the activity cancelled (after the workflow asked for it)."""

    @abstractmethod
    def translate_error(self, exc: BaseException) -> CompleterError:
        """Map one of this engine's exceptions to a public error (the one place per adapter)."""

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
