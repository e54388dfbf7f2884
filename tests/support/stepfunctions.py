"""Step Functions on moto in server mode, with state machines that really wait for a token.

moto executes state machines when its ``stepfunctions.execute_state_machine`` option is on:
a ``.waitForTaskToken`` SQS task then hands out a real task token and waits for the callback.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import requests

from tests.support.services import free_port, missing_service

REGION = "us-east-1"
OUTPUT_LIMIT = 262_144
ROLE = "arn:aws:iam::123456789012:role/completer-test"

# A task that sends its token to the SQS queue named in the input, then waits for the callback.
WAITING_MACHINE = {
    "StartAt": "WaitForCallback",
    "States": {
        "WaitForCallback": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {
                "QueueUrl.$": "$.queue",
                "MessageBody": {"token.$": "$$.Task.Token"},
            },
            "HeartbeatSeconds": 300,
            "End": True,
        }
    },
}


@dataclass
class MotoStepFunctions:
    endpoint: str
    sfn: Any
    sqs: Any
    state_machine_arn: str

    def start_waiting(self) -> WaitingTask:
        """Start an execution and return it once its task has handed out a token."""
        queue = self.sqs.create_queue(QueueName=f"tokens-{uuid.uuid4().hex}")["QueueUrl"]
        execution = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=f"wait-{uuid.uuid4().hex}",
            input=json.dumps({"queue": queue}),
        )["executionArn"]
        for _ in range(60):
            messages = self.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages")
            if messages:
                token = json.loads(messages[0]["Body"])["token"]
                return WaitingTask(self, execution, token)
        raise AssertionError("the state machine never handed out a task token")


@dataclass
class WaitingTask:
    moto: MotoStepFunctions
    execution_arn: str
    task_token: str

    def describe(self) -> dict[str, Any]:
        result: dict[str, Any] = self.moto.sfn.describe_execution(executionArn=self.execution_arn)
        return result

    async def finished(self) -> dict[str, Any]:
        for _ in range(100):
            described = self.describe()
            if described["status"] != "RUNNING":
                return described
            await asyncio.sleep(0.05)
        raise AssertionError("the execution is still running")


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_SFN": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }


def moto_stepfunctions() -> Iterator[MotoStepFunctions]:
    """Run moto in server mode with a waiting state machine for the whole session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - moto[server] is a dev dependency
        missing_service(f"moto[server] is not installed ({exc})")
    port = free_port()
    # moto's state-machine interpreter calls SQS through its own server on MOTO_PORT.
    previous = os.environ.get("MOTO_PORT")
    os.environ["MOTO_PORT"] = str(port)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        requests.post(
            f"{endpoint}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        ).raise_for_status()
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        sfn = session.client("stepfunctions", endpoint_url=endpoint)
        sqs = session.client("sqs", endpoint_url=endpoint)
        machine = sfn.create_state_machine(
            name=f"waiting-{uuid.uuid4().hex[:8]}",
            definition=json.dumps(WAITING_MACHINE),
            roleArn=ROLE,
        )["stateMachineArn"]
        yield MotoStepFunctions(endpoint, sfn, sqs, machine)
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = previous
