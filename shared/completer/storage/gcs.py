"""Reading a Cloud Storage object generation, byte-capped, with google-cloud-storage.

``google-cloud-storage`` is imported on first use. It honours ``STORAGE_EMULATOR_HOST`` by
itself (a local emulator, anonymous credentials). Its errors become ours in
:func:`translate_gcs_error`, the one place that decides what a retry can fix:

============================================  =============================================
google-cloud-storage raises                   we raise
============================================  =============================================
``NotFound`` (object, generation or bucket)   :class:`ObjectGone` (permanent)
``Forbidden``, ``Unauthorized``               :class:`StorageUnavailable` (transient: the
                                              operator grants objectViewer, Eventarc retries)
5xx, ``TooManyRequests``, timeouts, network   :class:`StorageUnavailable` (transient)
any other 4xx                                 :class:`ObjectUnreadable` (permanent)
============================================  =============================================
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from completer.errors import CompleterError, InternalError, InvalidRequest

if TYPE_CHECKING:
    from google.cloud.storage import Client

    from completer.events.gcs import GcsObject

__all__ = [
    "GcsReader",
    "ObjectGone",
    "ObjectUnreadable",
    "StorageUnavailable",
    "translate_gcs_error",
]

# One read gets this long in all (retries included): well inside a function's timeout, and
# Eventarc redelivers the event if it is not enough.
READ_DEADLINE_SECONDS = 20.0


class ObjectUnreadable(InvalidRequest):
    """Cloud Storage refuses to give the object for a reason no retry can change."""


class ObjectGone(ObjectUnreadable):
    """The object generation the event names no longer exists (deleted or replaced)."""


class StorageUnavailable(InternalError):
    """Cloud Storage failed, throttled, or denied the read; a later try may succeed."""


def translate_gcs_error(exc: BaseException, uri: str) -> CompleterError:
    """The one place where Cloud Storage's errors become ours: permanent unless a retry helps."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.NotFound):
        return ObjectGone(f"{uri} is gone (deleted or replaced before it was read).")
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return StorageUnavailable(
            f"access to {uri} is denied: the function's service account needs "
            "roles/storage.objectViewer on the bucket; the event will be retried."
        )
    if isinstance(
        exc,
        gexc.ServerError | gexc.TooManyRequests | gexc.RetryError,
    ):
        return StorageUnavailable(f"Cloud Storage failed reading {uri} ({type(exc).__name__}).")
    if isinstance(exc, gexc.ClientError):
        return ObjectUnreadable(f"Cloud Storage refused to read {uri} ({exc.code}).")
    if isinstance(exc, auth_exc.GoogleAuthError | OSError | TimeoutError):
        return StorageUnavailable(
            f"Cloud Storage could not be reached to read {uri} ({type(exc).__name__})."
        )
    import requests

    if isinstance(exc, requests.RequestException):
        return StorageUnavailable(
            f"Cloud Storage could not be reached to read {uri} ({type(exc).__name__})."
        )
    return InternalError(f"unexpected error reading {uri} ({type(exc).__name__}).")


class GcsReader:
    """Reads object generations; the storage client is made on first use, once per process.

    Args:
        client: A ``google.cloud.storage.Client``; by default one from the environment
            (Application Default Credentials, or ``STORAGE_EMULATOR_HOST``).
        deadline: Seconds one read may take, its retries of transient failures included.
    """

    def __init__(
        self, client: Client | None = None, *, deadline: float = READ_DEADLINE_SECONDS
    ) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.deadline = deadline

    @property
    def client(self) -> Client:
        """The storage client objects are read with."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from google.cloud.storage import Client

                    self._client = Client()
        return self._client

    def read(self, obj: GcsObject, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of the event's generation, so 'over the limit' shows.

        Raises:
            ObjectGone: That generation no longer exists.
            StorageUnavailable: A retry may succeed (also: access denied).
            ObjectUnreadable: Cloud Storage refused the read for good.
        """
        if obj.size == 0:
            return b""  # a generation never changes: the event's size is the content's
        try:
            from google.cloud.storage.retry import DEFAULT_RETRY

            blob = self.client.bucket(obj.bucket).blob(obj.name, generation=int(obj.generation))
            # `end` is inclusive: bytes 0..limit are limit + 1 bytes. No checksum: a range
            # read cannot be checked against the whole object's hash.
            content: bytes = blob.download_as_bytes(
                start=0,
                end=limit,
                checksum=None,
                timeout=self.deadline / 2,
                retry=DEFAULT_RETRY.with_timeout(self.deadline),
            )
        except Exception as exc:
            raise translate_gcs_error(exc, obj.source) from exc
        return content[: limit + 1]
