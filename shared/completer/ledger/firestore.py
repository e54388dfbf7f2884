"""The ledger in Firestore: ``firestore://<database>/<collection>``, one document per record.

A claim is ``create()`` (fails when the document exists), so of several identical requests
exactly one writes it. An expired or abandoned record is taken over by an ``update()``
preconditioned on the update time that was read, so two instances never both take it over.
``expiration`` is a timestamp: the collection's TTL policy deletes past records (lazily,
which is why every read checks it too). ``FIRESTORE_EMULATOR_HOST`` points the client at
an emulator, as for every Google client.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as google_exceptions
from google.api_core.retry import if_transient_error
from google.api_core.retry_async import AsyncRetry
from google.cloud import firestore

from completer.ledger.base import LedgerStore, Record, RecordState

if TYPE_CHECKING:
    from google.cloud.firestore_v1.async_document import AsyncDocumentReference
    from google.cloud.firestore_v1.base_document import DocumentSnapshot

__all__ = ["FirestoreStore"]

_TAKE_OVER_ATTEMPTS = 5
# A blip is retried briefly; a ledger that stays unreachable answers engine_unavailable
# within about two seconds instead of holding the request for the whole store deadline.
_RETRY = AsyncRetry(predicate=if_transient_error, initial=0.1, maximum=0.5, timeout=2.0)


class FirestoreStore(LedgerStore):
    """Records as documents of one collection (google-cloud-firestore's AsyncClient)."""

    kind = "firestore"

    def __init__(
        self,
        url: str,
        *,
        database: str,
        collection: str,
        timeout: float = 5.0,
        client: firestore.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, timeout=timeout)
        self._client = client or firestore.AsyncClient(database=database)
        self._collection = self._client.collection(collection)

    def _doc(self, key: str) -> AsyncDocumentReference:
        return self._collection.document(key)

    async def _create(self, record: Record) -> Record | None:
        doc = self._doc(record.key)
        for _ in range(_TAKE_OVER_ATTEMPTS):
            try:
                await doc.create(_fields(record), retry=_RETRY, timeout=self.timeout)
            except google_exceptions.AlreadyExists:
                pass
            else:
                return None
            snapshot = await doc.get(retry=_RETRY, timeout=self.timeout)
            if not snapshot.exists:
                continue  # deleted in between: try to create again
            held = _record(snapshot)
            if held.live():
                return held
            try:  # expired or abandoned: take it over, unless someone else just did
                await doc.update(
                    _fields(record),
                    option=self._client.write_option(last_update_time=snapshot.update_time),
                    retry=_RETRY,
                    timeout=self.timeout,
                )
            except (google_exceptions.FailedPrecondition, google_exceptions.NotFound):
                continue
            return None
        raise TimeoutError("the record kept changing under the claim")

    async def _get(self, key: str) -> Record | None:
        snapshot = await self._doc(key).get(retry=_RETRY, timeout=self.timeout)
        return _record(snapshot) if snapshot.exists else None

    async def _replace(self, record: Record) -> None:
        await self._doc(record.key).set(_fields(record), retry=_RETRY, timeout=self.timeout)

    async def _delete(self, key: str) -> None:
        await self._doc(key).delete(retry=_RETRY, timeout=self.timeout)

    async def _take(self, key: str) -> Record | None:
        doc = self._doc(key)
        snapshot = await doc.get(retry=_RETRY, timeout=self.timeout)
        if not snapshot.exists:
            return None
        try:  # only the caller whose read is still current deletes it, and gets it
            await doc.delete(
                option=self._client.write_option(last_update_time=snapshot.update_time),
                retry=_RETRY,
                timeout=self.timeout,
            )
        except (google_exceptions.FailedPrecondition, google_exceptions.NotFound):
            return None
        return _record(snapshot)

    async def _close(self) -> None:
        api = self._client._firestore_api_internal
        if api is not None:
            with contextlib.suppress(Exception):
                await api.transport.close()


def _fields(record: Record) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": record.state.value,
        "expiration": datetime.fromtimestamp(record.expires_at, tz=UTC),
        "validation": record.fingerprint,
        "data": json.dumps(record.data, separators=(",", ":")),
        "in_progress_expiration": record.in_progress_until_ms,
    }
    return fields


def _record(snapshot: DocumentSnapshot[Any]) -> Record:
    fields = snapshot.to_dict() or {}
    expiration = fields.get("expiration")
    expires_at = int(expiration.timestamp()) if isinstance(expiration, datetime) else 0
    in_progress = fields.get("in_progress_expiration")
    return Record(
        key=snapshot.id,
        state=RecordState(fields.get("status", RecordState.COMPLETED.value)),
        expires_at=expires_at,
        fingerprint=str(fields.get("validation") or ""),
        data=json.loads(fields.get("data") or "{}"),
        in_progress_until_ms=int(in_progress) if in_progress is not None else None,
    )
