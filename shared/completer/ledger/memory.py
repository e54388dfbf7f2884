"""The in-process ledger: per instance, bounded (the default when ``COMPLETER_LEDGER`` is unset)."""

from __future__ import annotations

import time
from collections import OrderedDict

from completer.ledger.base import LedgerStore, Record

__all__ = ["MemoryStore"]

DEFAULT_MAX_RECORDS = 10_000
"""Records kept at most; the oldest written go first (a few MiB at most)."""


class MemoryStore(LedgerStore):
    """Records in a dict of this process: shared by every request of one instance only.

    Every method runs without awaiting, so on one event loop each is atomic.
    """

    kind = "memory"

    def __init__(self, url: str = "memory://", *, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        super().__init__(url)
        self._records: OrderedDict[str, Record] = OrderedDict()
        self._max_records = max_records

    async def _create(self, record: Record) -> Record | None:
        held = self._records.get(record.key)
        if held is not None and held.live(time.time()):
            return held
        self._put(record)
        return None

    async def _get(self, key: str) -> Record | None:
        return self._records.get(key)

    async def _replace(self, record: Record) -> None:
        self._put(record)

    async def _delete(self, key: str) -> None:
        self._records.pop(key, None)

    async def _take(self, key: str) -> Record | None:
        return self._records.pop(key, None)

    def _put(self, record: Record) -> None:
        self._records[record.key] = record
        self._records.move_to_end(record.key)
        while len(self._records) > self._max_records:
            self._records.popitem(last=False)
