"""``RecycleBin`` in memory: as the SQL store, over the dictionaries."""

from __future__ import annotations

from datetime import datetime

from flowctl.engine.state import Record
from flowctl.store import rows
from flowctl.store.memory.base import MemoryBase, load


class MemoryRecycleBin(MemoryBase):
    def deleted_records(
        self, object: str, after: str = "", limit: int = 100, stage: str = ""
    ) -> list[tuple[Record, datetime | None]]:
        with self._lock:
            binned = (r for r in self._records.values() if r["object"] == object and r["deleted"] and r["id"] > after)
            kept = sorted((r for r in binned if not stage or r["stage"] == stage), key=lambda r: r["id"])
            found = kept[: max(limit, 0)]
            return [(rows.record_from(load("records", r)), r["updated_at"]) for r in found]

    def purge_deleted(self, before: datetime, limit: int = 1000) -> int:
        before = rows.utc(before)
        with self._lock:
            due = sorted(
                (row["updated_at"], key)
                for key, row in self._records.items()
                if row["deleted"] and row["updated_at"] is not None and row["updated_at"] < before
            )[: max(limit, 0)]
            keys = {key for _, key in due}
            for key in keys:
                del self._records[key]
                self._stage_entries.pop(key, None)
                self._dates.pop(key, None)
            self._notes = {k: n for k, n in self._notes.items() if (n["object"], n["record_id"]) not in keys}
        return len(keys)
