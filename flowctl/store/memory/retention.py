"""``Purging`` in memory: as the SQL store, over the dictionaries (a purged key can be stored again)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flowctl.engine.state import ACTIVE
from flowctl.ports import PurgeKind
from flowctl.store import rows
from flowctl.store.memory.base import MemoryBase


class MemoryPurging(MemoryBase):
    def _old(self, kind: PurgeKind, before: datetime) -> Iterator[tuple[Any, Any]]:
        """(sort key, row key) of every row of ``kind`` old enough, in no particular order."""
        before = rows.utc(before)
        if kind == "changes":
            newest: dict[tuple[str, str], int] = {}
            for seq, c in self._changes.items():
                key = (c["object"], c["record_id"])
                newest[key] = max(newest.get(key, 0), seq)
            for seq, c in self._changes.items():
                at = c["processed_at"]
                processed = c["status"] in ("done", "failed") and at is not None and at < before
                if processed and newest[(c["object"], c["record_id"])] != seq:
                    yield (at, seq), seq
        elif kind == "runs":
            cut = before.isoformat(timespec="microseconds")
            for run_id, r in self._runs.items():
                if r["status"] not in ACTIVE and r["updated_at"] < cut:
                    yield (r["updated_at"], run_id), run_id
        elif kind == "messages":
            for id_, o in self._outbox.items():
                at = o["sent_at"] if o["status"] == "sent" else o["created_at"] if o["status"] == "cancelled" else None
                if at is not None and at < before:
                    yield (at, id_), id_
        else:
            for occurrence, occ in self._occurrences.items():
                if occ["status"] != "claimed" and occ["done_at"] is not None and occ["done_at"] < before:
                    yield (occ["done_at"], occurrence), ("occurrence", occurrence)
            day = before.date().isoformat()
            for pin in self._care_days:
                if pin[1] < day:
                    yield (before, pin), ("day", pin)

    def purge(self, kind: PurgeKind, before: datetime, limit: int = 1000) -> int:
        with self._lock:
            due = [key for _, key in sorted(self._old(kind, before), key=lambda found: str(found[0]))][: max(limit, 0)]
            for key in due:
                self._remove(kind, key)
            return len(due)

    def _remove(self, kind: PurgeKind, key: Any) -> None:
        if kind == "changes":
            row = self._changes.pop(key)
            self._keys.pop(row["idempotency_key"], None)
        elif kind == "runs":
            del self._runs[key]
        elif kind == "messages":
            row = self._outbox.pop(key)
            self._outbox_keys.discard(row["key"])
        elif key[0] == "occurrence":
            del self._occurrences[key[1]]
        else:
            del self._care_days[key[1]]

    def purgeable(self, kind: PurgeKind, before: datetime) -> int:
        with self._lock:
            return sum(1 for _ in self._old(kind, before))

    def reclaim_space(self, pages: int = 2048) -> int:
        return 0
