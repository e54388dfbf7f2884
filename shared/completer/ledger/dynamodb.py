"""The ledger in DynamoDB: ``dynamodb://<table>``, on aws-lambda-powertools' idempotency layer.

The table is powertools' default idempotency table: partition key ``id`` (string), TTL
attribute ``expiration`` (epoch seconds), with ``status``, ``in_progress_expiration``
(epoch milliseconds), ``data`` and ``validation`` (the request's fingerprint). A claim is
powertools' conditional put (``attribute_not_exists(id)`` or expired or an abandoned
in-progress record), which also returns the record that holds the key in the same call.
Records written whole at once (correlation keys) use the same condition directly.
The layer is sync boto3, so every call runs in a worker thread, off the event loop.
``AWS_ENDPOINT_URL_DYNAMODB`` points boto3 at a local DynamoDB (moto, DynamoDB Local).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.idempotency.persistence.dynamodb import (
    DynamoDBPersistenceLayer,
)
from botocore.config import Config
from botocore.exceptions import ClientError

from completer.ledger.base import LedgerStore, Record, RecordState

__all__ = ["DynamoDBStore", "client_config", "create_table"]

_CLAIM_CONDITION = (
    "attribute_not_exists(#id) OR #expiry < :now OR "
    "(#status = :inprogress AND attribute_exists(#in_progress_expiry) "
    "AND #in_progress_expiry < :now_in_millis)"
)


class DynamoDBStore(LedgerStore):
    """Records as items of one table, through powertools' ``DynamoDBPersistenceLayer``."""

    kind = "dynamodb"

    def __init__(self, url: str, *, table: str, timeout: float = 5.0, client: Any = None) -> None:
        """Keep records in ``table``.

        Args:
            url: The ledger URL, for messages.
            table: The table's name.
            timeout: Seconds for each call (the default client's connect and read timeouts).
            client: A boto3 DynamoDB client to use instead of one built from the environment
                with these timeouts (e.g. one with its own ``endpoint_url``); the store
                closes it.
        """
        super().__init__(url, timeout=timeout)
        config = client_config(timeout)
        self._layer = DynamoDBPersistenceLayer(
            table_name=table, boto_config=config, boto3_client=client
        )
        # The fingerprint travels in powertools' validation attribute.
        self._layer.payload_validation_enabled = True
        self._table = table

    async def _create(self, record: Record) -> Record | None:
        if record.state is not RecordState.IN_PROGRESS:
            return await asyncio.to_thread(self._put_whole, record)
        # A claim: powertools' put (its data is written when the claim completes).
        try:
            await asyncio.to_thread(self._layer._put_record, _data_record(record))
        except IdempotencyItemAlreadyExistsError as exc:
            if exc.old_data_record is not None:
                return _record(exc.old_data_record)
            return await self._get(record.key)
        except IdempotencyValidationError as exc:
            # Held for a different request: the refused put returned that record.
            response = getattr(exc.__cause__, "response", None) or {}
            if "Item" in response:
                return _record(self._layer._item_to_data_record(response["Item"]))
            return await self._get(record.key)
        return None

    def _put_whole(self, record: Record) -> Record | None:
        # powertools' put writes no data; a record that carries it from the start (a
        # correlation key) is put here under powertools' own condition.
        # powertools' put writes no data; a record that must carry it from the start
        # (a correlation key) is put here with powertools' own condition.
        now = time.time()
        item = {
            "id": {"S": record.key},
            "status": {"S": record.state.value},
            "expiration": {"N": str(record.expires_at)},
            "validation": {"S": record.fingerprint},
            "data": {"S": _json(record.data)},
        }
        try:
            self._layer.client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression=_CLAIM_CONDITION,
                ExpressionAttributeNames={
                    "#id": "id",
                    "#expiry": "expiration",
                    "#status": "status",
                    "#in_progress_expiry": "in_progress_expiration",
                },
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now))},
                    ":now_in_millis": {"N": str(int(now * 1000))},
                    ":inprogress": {"S": RecordState.IN_PROGRESS.value},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            if old is None:
                return self._get_sync(record.key)
            return _record(self._layer._item_to_data_record(old))
        return None

    async def _get(self, key: str) -> Record | None:
        return await asyncio.to_thread(self._get_sync, key)

    def _get_sync(self, key: str) -> Record | None:
        try:
            return _record(self._layer._get_record(key))
        except IdempotencyItemNotFoundError:
            return None

    async def _replace(self, record: Record) -> None:
        await asyncio.to_thread(self._layer._update_record, _data_record(record))

    async def _delete(self, key: str) -> None:
        await asyncio.to_thread(self._layer._delete_record, DataRecord(idempotency_key=key))

    async def _take(self, key: str) -> Record | None:
        return await asyncio.to_thread(self._take_sync, key)

    def _take_sync(self, key: str) -> Record | None:
        # DeleteItem returns the item it deleted: of two racing deletes, only one sees it.
        response = self._layer.client.delete_item(
            TableName=self._table, Key={"id": {"S": key}}, ReturnValues="ALL_OLD"
        )
        old: dict[str, Any] | None = response.get("Attributes")
        if not old:
            return None
        return _record(self._layer._item_to_data_record(old))

    async def _close(self) -> None:
        self._layer.client.close()


def client_config(timeout: float) -> Config:
    """The botocore settings of a ledger client: calls bounded by ``timeout``, one retry."""
    return Config(
        connect_timeout=min(timeout, 2.0),
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
    )


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _data_record(record: Record) -> DataRecord:
    return DataRecord(
        idempotency_key=record.key,
        status=record.state.value,
        expiry_timestamp=record.expires_at,
        in_progress_expiry_timestamp=record.in_progress_until_ms,
        response_data=_json(record.data),
        payload_hash=record.fingerprint,
    )


def _record(data_record: DataRecord) -> Record:
    # DataRecord.status says EXPIRED for an expired record; the raw status is kept apart.
    raw_status = data_record._status
    in_progress = data_record.in_progress_expiry_timestamp
    return Record(
        key=data_record.idempotency_key,
        state=RecordState(raw_status),
        expires_at=int(data_record.expiry_timestamp or 0),
        fingerprint=data_record.payload_hash or "",
        data=json.loads(data_record.response_data or "{}"),
        in_progress_until_ms=int(in_progress) if in_progress is not None else None,
    )


def create_table(table: str, *, client: Any = None) -> bool:
    """Create the ledger table (on-demand, key ``id``, TTL ``expiration``) unless it exists.

    Returns:
        True when it was created, False when it already existed.
    """
    import boto3

    client = client or boto3.client("dynamodb")
    try:
        client.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        return False
    client.get_waiter("table_exists").wait(TableName=table)
    client.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
    )
    return True
