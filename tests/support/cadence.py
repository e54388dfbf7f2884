"""A model of the Cadence frontend for tests, built from the Cadence server's source.

No Cadence server runs in the test environment, so the Cadence backend is verified at the
gRPC wire against this in-process ``grpc.aio`` servicer of ``cadence.api.v1``'s ``WorkerAPI``
and ``DomainAPI``. It holds domains, workflows and their pending activities, records every
request with its metadata, and answers each case the way the server's source says it does.
Every behaviour cites the file (and function) of github.com/cadence-workflow/cadence, or of
go.uber.org/yarpc v1.88.0 (the version Cadence's go.mod pins), that it follows.

How an error reaches the wire (the chain built in ``service/frontend/service.go``:
grpc -> accesscontrolled -> clusterredirection -> metered -> ratelimited -> versioncheck ->
``api.WorkflowHandler``):

- ``common/types/mapper/proto/errors.go`` ``FromError`` turns a typed error into a gRPC code
  plus a detail (EntityNotExists -> NOT_FOUND + ``EntityNotExistsError``, BadRequest ->
  INVALID_ARGUMENT, ...); any other error is ``CodeUnknown`` with the error's text.
- ``service/frontend/wrappers/metered/metered.go`` ``handleErr`` passes an allow-list of typed
  errors through, but rewrites ``InternalServiceError`` to an untyped
  ``"cadence internal error, msg: ..."`` and anything else (ShardOwnershipLost, ...) to
  ``"cadence internal uncategorized error, msg: ..."``: both reach the client as gRPC UNKNOWN.
- Errors raised before ``handleErr`` runs (the token's JSON, the domain lookup in
  ``clusterredirection/api_generated.go`` and ``metered/api_generated.go``) go to
  ``FromError`` as they are: a JSON error is UNKNOWN, a missing domain NOT_FOUND.

Faults outside what the model holds (a proxy answering UNAVAILABLE, a persistence outage)
are injected with :attr:`FrontendModel.fault`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from cadence.api.v1 import domain_pb2, error_pb2, service_domain_pb2, service_worker_pb2
from cadence.api.v1.service_domain_pb2_grpc import (
    DomainAPIServicer,
    add_DomainAPIServicer_to_server,
)
from cadence.api.v1.service_worker_pb2_grpc import (
    WorkerAPIServicer,
    add_WorkerAPIServicer_to_server,
)
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

MIB = 1024 * 1024
# limit.blobSize.error: common/dynamicconfig/dynamicproperties/constants.go (BlobSizeLimitError).
DEFAULT_BLOB_SIZE_LIMIT = 2 * MIB
# The frontend's gRPC receive limit: common/rpc/factory.go applies config ``grpcMaxMsgSize``
# (config/config.go: "allows overriding default (4MB)"); the model serves the 4 MB setting.
GRPC_MAX_MESSAGE_BYTES = 4 * MIB
# limit.identityLength: common/dynamicconfig/dynamicproperties/constants.go (IdentityMaxLength).
IDENTITY_MAX_LENGTH = 1000
# common/constants/constants.go EmptyEventID: the schedule ID of a ByID call's internal token.
EMPTY_EVENT_ID = -23
# common/util.go FailureReason*: reasons the frontend writes when a blob is too large.
COMPLETE_RESULT_EXCEEDS_LIMIT = "COMPLETE_RESULT_EXCEEDS_LIMIT"
FAILURE_DETAILS_EXCEEDS_LIMIT = "FAILURE_DETAILS_EXCEEDS_LIMIT"
CANCEL_DETAILS_EXCEEDS_LIMIT = "CANCEL_DETAILS_EXCEEDS_LIMIT"
HEARTBEAT_EXCEEDS_LIMIT = "HEARTBEAT_EXCEEDS_LIMIT"

# common/taskTokenSerializerInterfaces.go TaskToken: JSON field -> Go type.
TOKEN_FIELDS: dict[str, type] = {
    "domainId": str,
    "workflowId": str,
    "workflowType": str,
    "runId": str,
    "scheduleId": int,
    "scheduleAttempt": int,
    "activityId": str,
    "activityType": str,
}


class Refused(Exception):
    """A gRPC status the model answers with."""

    def __init__(self, code: grpc.StatusCode, message: str, detail: Message | None = None):
        super().__init__(message)
        self.status = status_pb2.Status(code=code.value[0], message=message)
        if detail is not None:
            self.status.details.add().Pack(detail)


def bad_request(message: str) -> Refused:
    # proto/errors.go fromBadRequestError: INVALID_ARGUMENT, no detail.
    return Refused(grpc.StatusCode.INVALID_ARGUMENT, message)


def entity_not_exists(message: str) -> Refused:
    # proto/errors.go fromEntityNotExistsError: NOT_FOUND + EntityNotExistsError.
    return Refused(grpc.StatusCode.NOT_FOUND, message, error_pb2.EntityNotExistsError())


def internal_service_error(message: str) -> Refused:
    # metered/metered.go handleErr: InternalServiceError -> fmt.Errorf (untyped) ->
    # proto/errors.go FromError's last line: CodeUnknown with the text.
    return Refused(grpc.StatusCode.UNKNOWN, f"cadence internal error, msg: {message}")


def uncategorized_error(message: str) -> Refused:
    # metered/metered.go handleErr: an error outside its allow-list (ShardOwnershipLost, ...).
    return Refused(grpc.StatusCode.UNKNOWN, f"cadence internal uncategorized error, msg: {message}")


def task_token(
    *,
    domain_id: str,
    workflow_id: str,
    run_id: str,
    schedule_id: int,
    activity_id: str,
    attempt: int = 0,
    workflow_type: str = "Workflow",
    activity_type: str = "Activity",
) -> bytes:
    """A task token as the server issues it (``common/json_task_token_serializer.go``)."""
    # Go's json.Marshal of TaskToken: fields in struct order, compact.
    return json.dumps(
        {
            "domainId": domain_id,
            "workflowId": workflow_id,
            "workflowType": workflow_type,
            "runId": run_id,
            "scheduleId": schedule_id,
            "scheduleAttempt": attempt,
            "activityId": activity_id,
            "activityType": activity_type,
        },
        separators=(",", ":"),
    ).encode()


def deserialize_token(data: bytes) -> dict[str, Any]:
    """``jsonTaskTokenSerializer.Deserialize``: Go's ``json.Unmarshal`` into ``TaskToken``.

    Raises:
        Refused: UNKNOWN with the JSON error, as the frontend sends it untyped.
    """
    # common/json_task_token_serializer.go Deserialize returns json.Unmarshal's error as is;
    # the wrappers return it before handleErr, so FromError sends CodeUnknown.
    try:
        value = json.loads(data.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise Refused(grpc.StatusCode.UNKNOWN, f"invalid character: {exc.msg}") from exc
    token: dict[str, Any] = {
        name: ("" if kind is str else 0) for name, kind in TOKEN_FIELDS.items()
    }
    if value is None:
        return token  # json.Unmarshal of null into a struct is a no-op
    if not isinstance(value, dict):
        shape = {list: "array", str: "string", bool: "bool"}.get(type(value), "number")
        raise Refused(
            grpc.StatusCode.UNKNOWN,
            f"json: cannot unmarshal {shape} into Go value of type common.TaskToken",
        )
    for key, item in value.items():
        # encoding/json matches field names case-insensitively.
        name = next((n for n in TOKEN_FIELDS if n.lower() == key.lower()), None)
        if name is None or item is None:
            continue
        go_type = TOKEN_FIELDS[name]
        fits = (
            isinstance(item, str)
            if go_type is str
            else isinstance(item, int) and not isinstance(item, bool) and -(2**63) <= item < 2**63
        )
        if not fits:
            raise Refused(
                grpc.StatusCode.UNKNOWN,
                f"json: cannot unmarshal {type(item).__name__} into Go struct field "
                f"TaskToken.{name} of type {'string' if go_type is str else 'int64'}",
            )
        token[name] = item
    return token


@dataclass
class Call:
    method: str
    request: Any
    metadata: dict[str, str]
    peer: str


@dataclass
class Activity:
    """One activity of a workflow, as the history service's mutable state holds it."""

    domain_id: str
    workflow_id: str
    run_id: str
    activity_id: str
    schedule_id: int
    attempt: int = 0
    started: bool = True
    cancel_requested: bool = False
    # Once closed: ("completed", result) / ("failed", reason, details) / ("canceled", details)
    closed: tuple[Any, ...] | None = None
    heartbeats: list[bytes] = field(default_factory=list)

    @property
    def task_token(self) -> bytes:
        return task_token(
            domain_id=self.domain_id,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            schedule_id=self.schedule_id,
            activity_id=self.activity_id,
            attempt=self.attempt,
        )


@dataclass
class Workflow:
    domain_id: str
    workflow_id: str
    run_id: str
    running: bool = True
    activities: dict[str, Activity] = field(default_factory=dict)
    next_event_id: int = 5


class FrontendModel(WorkerAPIServicer, DomainAPIServicer):  # type: ignore[misc] # generated
    """The Cadence frontend's activity and domain APIs, answering as the server's source says."""

    def __init__(self, domains: dict[str, int] | None = None) -> None:
        # domain name -> blob size limit (limit.blobSize.error, settable per domain)
        self.domains: dict[str, tuple[str, int]] = {}
        for name, limit in (domains or {}).items():
            self.add_domain(name, blob_size_limit=limit)
        self.reset()

    def reset(self) -> None:
        self.calls: list[Call] = []
        self.workflows: dict[tuple[str, str, str], Workflow] = {}
        self.current_run: dict[tuple[str, str], str] = {}
        self.fault: status_pb2.Status | None = None
        self.delay = 0.0
        self.shutting_down = False
        self.shard_ownership_lost = False

    # --- the world the tests set up --------------------------------------------------------

    def add_domain(self, name: str, *, blob_size_limit: int = DEFAULT_BLOB_SIZE_LIMIT) -> str:
        domain_id = str(uuid.uuid4())
        self.domains[name] = (domain_id, blob_size_limit)
        return domain_id

    def schedule_activity(
        self,
        activity_id: str = "activity",
        *,
        workflow_id: str | None = None,
        domain: str = "orders",
        started: bool = True,
    ) -> Activity:
        """Start a workflow run (or reuse the current one) with a pending activity."""
        domain_id = self.domains[domain][0]
        workflow_id = workflow_id or f"wf-{uuid.uuid4().hex[:8]}"
        run_id = self.current_run.get((domain_id, workflow_id))
        if run_id is None or not self.workflows[(domain_id, workflow_id, run_id)].running:
            run_id = str(uuid.uuid4())
            self.workflows[(domain_id, workflow_id, run_id)] = Workflow(
                domain_id, workflow_id, run_id
            )
            self.current_run[(domain_id, workflow_id)] = run_id
        workflow = self.workflows[(domain_id, workflow_id, run_id)]
        activity = Activity(
            domain_id, workflow_id, run_id, activity_id, workflow.next_event_id, started=started
        )
        workflow.next_event_id += 2
        workflow.activities[activity_id] = activity
        return activity

    def request_cancel(self, activity: Activity) -> None:
        """The workflow asks for the activity's cancellation (RequestCancelActivityTask)."""
        activity.cancel_requested = True

    def close_workflow(self, activity: Activity) -> None:
        self.workflows[(activity.domain_id, activity.workflow_id, activity.run_id)].running = False

    # --- transport --------------------------------------------------------------------------

    async def _serve(self, method: str, request: Any, context: Any, answer: Any) -> Any:
        metadata = dict(context.invocation_metadata())
        self.calls.append(Call(method, request, metadata, context.peer()))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.fault
        if status is None:
            try:
                self._check_yarpc(metadata, context)
                return await answer()
            except Refused as refused:
                status = refused.status
        await context.abort_with_status(rpc_status.to_status(status))
        return None

    @staticmethod
    def _check_yarpc(metadata: dict[str, str], context: Any) -> None:
        # yarpc transport/grpc/handler.go getBasicTransportRequest ->
        # api/transport/request.go ValidateRequest: the routing headers are required.
        missing = [
            what
            for header, what in (
                ("rpc-service", "service name"),
                ("rpc-caller", "caller name"),
                ("rpc-encoding", "encoding"),
            )
            if not metadata.get(header)
        ]
        if missing:
            raise bad_request(f"missing {', '.join(missing)}")
        # yarpc transport/grpc/handler.go callUnary -> ValidateRequestContext: a deadline.
        if context.time_remaining() is None:
            raise bad_request("missing TTL")

    # --- lookups ------------------------------------------------------------------------------

    def _domain_by_id(self, domain_id: str) -> tuple[str, int]:
        # common/cache/domainCache.go GetDomainByID (clusterredirection/api_generated.go).
        if not domain_id:
            raise bad_request("DomainID is empty.")
        for name, (known_id, limit) in self.domains.items():
            if known_id == domain_id:
                return name, limit
        # common/persistence/nosql/nosql_domain_store.go GetDomain.
        raise entity_not_exists(f"Domain {domain_id} does not exist.")

    def _domain_by_name(self, name: str) -> tuple[str, int]:
        # service/frontend/api/handler.go *ByID: domain name required, then GetDomainID.
        if not name:
            raise bad_request("Domain not set on request.")
        if name not in self.domains:
            raise entity_not_exists(f"Domain {name} does not exist.")
        return self.domains[name]

    def _token(self, data: bytes) -> tuple[dict[str, Any], int]:
        # handler.go RespondActivityTask*: "Task token not set on request." when absent;
        # the wrappers (clusterredirection, metered) deserialize it first.
        if not data:
            raise bad_request("Task token not set on request.")
        token = deserialize_token(data)
        _, limit = self._domain_by_id(token["domainId"])
        self._frontend_checks()
        return token, limit

    def _frontend_checks(self) -> None:
        # handler.go: "if wh.isShuttingDown() { return validate.ErrShuttingDown }", an
        # InternalServiceError "Shutting down" (frontend/validate/errors.go).
        if self.shutting_down:
            raise internal_service_error("Shutting down")

    def _activity(self, token: dict[str, Any]) -> Activity:
        """The history engine's lookup (engineimpl/respond_activity_task_*.go)."""
        if self.shard_ownership_lost:
            # history/shard/controller.go: ShardOwnershipLostError, outside metered's
            # handleErr allow-list.
            raise uncategorized_error("Shard is not owned by host: 10.0.0.7:7934")
        domain_id, workflow_id, run_id = token["domainId"], token["workflowId"], token["runId"]
        if not run_id:
            run_id = self.current_run.get((domain_id, workflow_id), "")
            if not run_id:
                # persistence GetCurrentExecution (nosql_execution_store.go).
                raise entity_not_exists(f"Workflow execution not found.  WorkflowId: {workflow_id}")
        else:
            try:
                uuid.UUID(run_id)
            except ValueError:
                # history/execution/cache.go validateWorkflowExecutionInfo.
                raise bad_request("RunID is not valid UUID.") from None
        workflow = self.workflows.get((domain_id, workflow_id, run_id))
        if workflow is None:
            raise entity_not_exists(
                f"Workflow execution not found.  WorkflowId: {workflow_id}, RunId: {run_id}"
            )
        if not workflow.running:
            # workflow.ErrAlreadyCompleted, then api/handler.go normalizeVersionedErrors:
            # a client without the WorkflowExecutionAlreadyCompletedErrorEnabled feature flag
            # (versionChecker.SupportsWorkflowAlreadyCompletedError) gets EntityNotExists.
            raise entity_not_exists("Workflow execution already completed.")
        schedule_id = token["scheduleId"]
        if schedule_id == EMPTY_EVENT_ID:
            # engineimpl/history_engine.go getScheduleID (the ByID calls).
            if not token["activityId"]:
                raise bad_request("Neither ActivityID nor ScheduleID is provided")
            pending = workflow.activities.get(token["activityId"])
            if pending is None or pending.closed is not None:
                raise bad_request("Cannot locate Activity ScheduleID")
            return pending
        for activity in workflow.activities.values():
            # "!isRunning || ai.StartedID == EmptyEventID || attempt mismatch" -> not found
            if (
                activity.schedule_id == schedule_id
                and activity.closed is None
                and activity.started
                and activity.attempt == token["scheduleAttempt"]
            ):
                return activity
        # history/workflow/errors.go ErrActivityTaskNotFound.
        raise entity_not_exists("activity task not found")

    def _by_id_token(self, request: Any) -> tuple[dict[str, Any], int]:
        # api/handler.go *ByID: domain, workflow ID and activity ID required, then an
        # internal token with ScheduleID = EmptyEventID.
        self._frontend_checks()
        domain_id, limit = self._domain_by_name(request.domain)
        execution = request.workflow_execution
        if not execution.workflow_id:
            raise bad_request("WorkflowId is not set on request.")
        if not request.activity_id:
            raise bad_request("ActivityID is not set on request.")
        token = {name: ("" if kind is str else 0) for name, kind in TOKEN_FIELDS.items()}
        token.update(
            domainId=domain_id,
            workflowId=execution.workflow_id,
            runId=execution.run_id,
            scheduleId=EMPTY_EVENT_ID,
            activityId=request.activity_id,
        )
        return token, limit

    # --- the actions ----------------------------------------------------------------------------

    @staticmethod
    def _check_identity(identity: str) -> None:
        # api/handler.go RespondActivityTask{Completed,Failed,Canceled}[ByID]:
        # common.IsValidIDLength (len in bytes) -> validate.ErrIdentityTooLong.
        if len(identity.encode()) > IDENTITY_MAX_LENGTH:
            raise bad_request("Identity length exceeds limit.")

    def _fail(self, token: dict[str, Any], reason: str, details: bytes) -> None:
        self._activity(token).closed = ("failed", reason, details)

    def _complete(self, token: dict[str, Any], limit: int, result: bytes) -> None:
        # api/handler.go RespondActivityTaskCompleted[ByID]: a result over the blob limit
        # fails the activity (COMPLETE_RESULT_EXCEEDS_LIMIT, truncated) and answers OK.
        if len(result) > limit:
            self._fail(token, COMPLETE_RESULT_EXCEEDS_LIMIT, result[:limit])
            return
        self._activity(token).closed = ("completed", result)

    def _failed(self, token: dict[str, Any], limit: int, failure: Any) -> None:
        # api/handler.go RespondActivityTaskFailed[ByID]: FAILURE_DETAILS_EXCEEDS_LIMIT.
        reason, details = failure.reason, failure.details
        if len(details) > limit:
            reason, details = FAILURE_DETAILS_EXCEEDS_LIMIT, details[:limit]
        self._fail(token, reason, details)

    def _canceled(self, token: dict[str, Any], limit: int, details: bytes) -> None:
        # api/handler.go RespondActivityTaskCanceled[ByID]: CANCEL_DETAILS_EXCEEDS_LIMIT.
        if len(details) > limit:
            self._fail(token, CANCEL_DETAILS_EXCEEDS_LIMIT, details[:limit])
            return
        activity = self._activity(token)
        if not activity.cancel_requested:
            # engineimpl/respond_activity_task_canceled.go: AddActivityTaskCanceledEvent
            # fails without CancelRequested (execution/mutable_state_builder_methods_
            # activity.go), answered as InternalServiceError, then metered's rewrite.
            raise internal_service_error("Unable to add ActivityTaskCanceled event to history.")
        activity.closed = ("canceled", details)

    def _heartbeat(self, token: dict[str, Any], limit: int, details: bytes) -> bool:
        # api/handler.go RecordActivityTaskHeartbeat[ByID]: details over the limit fail the
        # activity (HEARTBEAT_EXCEEDS_LIMIT) and answer CancelRequested: true.
        if len(details) > limit:
            self._fail(token, HEARTBEAT_EXCEEDS_LIMIT, details[:limit])
            return True
        activity = self._activity(token)
        activity.heartbeats.append(details)
        # engineimpl/respond_activity_task_heartbeat.go: cancelRequested = ai.CancelRequested
        return activity.cancel_requested

    async def RespondActivityTaskCompleted(self, request, context):
        async def answer() -> Any:
            token, limit = self._token(request.task_token)
            self._check_identity(request.identity)
            self._complete(token, limit, request.result.data)
            return service_worker_pb2.RespondActivityTaskCompletedResponse()

        return await self._serve("RespondActivityTaskCompleted", request, context, answer)

    async def RespondActivityTaskCompletedByID(self, request, context):
        async def answer() -> Any:
            token, limit = self._by_id_token(request)
            self._check_identity(request.identity)
            self._complete(token, limit, request.result.data)
            return service_worker_pb2.RespondActivityTaskCompletedByIDResponse()

        return await self._serve("RespondActivityTaskCompletedByID", request, context, answer)

    async def RespondActivityTaskFailed(self, request, context):
        async def answer() -> Any:
            token, limit = self._token(request.task_token)
            self._check_identity(request.identity)
            self._failed(token, limit, request.failure)
            return service_worker_pb2.RespondActivityTaskFailedResponse()

        return await self._serve("RespondActivityTaskFailed", request, context, answer)

    async def RespondActivityTaskFailedByID(self, request, context):
        async def answer() -> Any:
            token, limit = self._by_id_token(request)
            self._check_identity(request.identity)
            self._failed(token, limit, request.failure)
            return service_worker_pb2.RespondActivityTaskFailedByIDResponse()

        return await self._serve("RespondActivityTaskFailedByID", request, context, answer)

    async def RecordActivityTaskHeartbeat(self, request, context):
        async def answer() -> Any:
            token, limit = self._token(request.task_token)
            cancel = self._heartbeat(token, limit, request.details.data)
            return service_worker_pb2.RecordActivityTaskHeartbeatResponse(cancel_requested=cancel)

        return await self._serve("RecordActivityTaskHeartbeat", request, context, answer)

    async def RecordActivityTaskHeartbeatByID(self, request, context):
        async def answer() -> Any:
            token, limit = self._by_id_token(request)
            cancel = self._heartbeat(token, limit, request.details.data)
            return service_worker_pb2.RecordActivityTaskHeartbeatByIDResponse(
                cancel_requested=cancel
            )

        return await self._serve("RecordActivityTaskHeartbeatByID", request, context, answer)

    async def RespondActivityTaskCanceled(self, request, context):
        async def answer() -> Any:
            token, limit = self._token(request.task_token)
            self._check_identity(request.identity)
            self._canceled(token, limit, request.details.data)
            return service_worker_pb2.RespondActivityTaskCanceledResponse()

        return await self._serve("RespondActivityTaskCanceled", request, context, answer)

    async def RespondActivityTaskCanceledByID(self, request, context):
        async def answer() -> Any:
            token, limit = self._by_id_token(request)
            self._check_identity(request.identity)
            self._canceled(token, limit, request.details.data)
            return service_worker_pb2.RespondActivityTaskCanceledByIDResponse()

        return await self._serve("RespondActivityTaskCanceledByID", request, context, answer)

    async def DescribeDomain(self, request, context):
        async def answer() -> Any:
            # common/domain/handler.go DescribeDomain -> domainManager.GetDomain:
            # both or neither of id and name is a BadRequest, an unknown one EntityNotExists
            # (common/persistence/nosql/nosql_domain_store.go GetDomain).
            if request.id and request.name:
                raise bad_request(
                    "GetDomain operation failed.  Both ID and Name specified in request."
                )
            if not request.id and not request.name:
                raise bad_request("GetDomain operation failed.  Both ID and Name are empty.")
            for name, (domain_id, _) in self.domains.items():
                if request.name == name or request.id == domain_id:
                    return service_domain_pb2.DescribeDomainResponse(
                        domain=domain_pb2.Domain(
                            id=domain_id,
                            name=name,
                            status=domain_pb2.DOMAIN_STATUS_REGISTERED,
                        )
                    )
            raise entity_not_exists(f"Domain {request.name or request.id} does not exist.")

        return await self._serve("DescribeDomain", request, context, answer)


# The name the trigger tests know.
RecordingWorkerAPI = FrontendModel


@dataclass
class FakeFrontend:
    address: str
    api: FrontendModel

    @property
    def only_call(self) -> Call:
        calls = [call for call in self.api.calls if call.method != "DescribeDomain"]
        assert len(calls) == 1, [call.method for call in calls]
        return calls[0]

    @property
    def activity_calls(self) -> list[Call]:
        return [call for call in self.api.calls if call.method != "DescribeDomain"]


@contextlib.asynccontextmanager
async def fake_frontend(
    *,
    domains: dict[str, int] | None = None,
    tls: grpc.ServerCredentials | None = None,
) -> AsyncIterator[FakeFrontend]:
    """Serve a :class:`FrontendModel` on a free 127.0.0.1 port for the block.

    ``domains`` maps each registered domain to its blob size limit (default: ``orders`` at
    2 MiB); ``tls`` serves over TLS, as ``common/rpc/factory.go`` does with InboundTLS.
    """
    api = FrontendModel(domains if domains is not None else {"orders": DEFAULT_BLOB_SIZE_LIMIT})
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES)])
    add_WorkerAPIServicer_to_server(api, server)
    add_DomainAPIServicer_to_server(api, server)
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", tls)
    await server.start()
    try:
        yield FakeFrontend(f"127.0.0.1:{port}", api)
    finally:
        await server.stop(grace=None)
