"""``CareLedger`` in memory: the month-day index of record dates and the once-only ledger."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from flowctl.engine.state import Record
from flowctl.ports import CareOccurrence, CareSummary, Processed
from flowctl.store import rows
from flowctl.store.memory.base import MemoryBase, load


class MemoryCareLedger(MemoryBase):
    """Care schedules: due records and the once-only ledger."""

    def care_records(
        self, object: str, field: str, month_days: Sequence[int], on_dates: Sequence[str] = ()
    ) -> list[Record]:
        wanted, exact = set(month_days), set(on_dates)
        with self._lock:
            dates = self._dates
            found = [
                key
                for key, rows_ in dates.items()
                if key[0] == object
                and any(
                    d["field"] == field and d["month_day"] in wanted and (not exact or d["value"] in exact)
                    for d in rows_
                )
            ]
            return [
                rows.record_from(load("records", self._records[key]))
                for key in sorted(found)
                if key in self._records and not self._records[key]["deleted"]
            ]

    def record_ids(self, object: str, after: str = "", limit: int = 1000) -> list[str]:
        with self._lock:
            ids = sorted(
                key[1]
                for key, row in self._records.items()
                if key[0] == object and not row["deleted"] and key[1] > after
            )
            return ids[:limit]

    def care_undated(self, object: str, field: str) -> tuple[int, int]:
        with self._lock:
            dates = self._dates
            live = [key for key, row in self._records.items() if key[0] == object and not row["deleted"]]
            undated = sum(1 for key in live if not any(d["field"] == field for d in dates.get(key, ())))
            return len(live), undated

    def pin_care_day(self, process: str, day: str, version: str) -> str:
        with self._lock:
            pins = self._care_days
            return pins.setdefault((process, day), version)

    def claim_occurrence(self, process: str, object: str, id: str, occurrence: str, now: datetime) -> bool:
        now = rows.utc(now)
        key = (process, object, id, occurrence)
        with self._lock:
            if key in self._occurrences:
                return False
            self._occurrences[key] = {"status": "claimed", "claimed_at": now, "done_at": None}
            return True

    def claim_occurrences(self, wanted: Sequence[CareOccurrence], owner: str, now: datetime) -> list[CareOccurrence]:
        now = rows.utc(now)
        won = []
        with self._lock:
            for o in wanted:
                if o.key in self._occurrences:
                    continue
                self._occurrences[o.key] = {
                    "status": "claimed",
                    "claimed_at": now,
                    "done_at": None,
                    "owner": owner,
                    "config_version": o.config_version,
                }
                won.append(o)
        return won

    def reclaim_occurrences(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[CareOccurrence]:
        now = rows.utc(now)
        cutoff = now - timedelta(seconds=lease_seconds)
        out: list[CareOccurrence] = []
        with self._lock:
            for key, row in self._occurrences.items():
                if len(out) >= limit:
                    break
                if row["status"] == "claimed" and row["claimed_at"] <= cutoff:
                    row.update(owner=owner, claimed_at=now)
                    out.append(
                        CareOccurrence(
                            process=key[0],
                            object=key[1],
                            record_id=key[2],
                            occurrence=key[3],
                            config_version=row.get("config_version") or "",
                        )
                    )
        return out

    def commit_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> int:
        now = rows.utc(now)
        with self._lock:
            kept = []
            for occurrence, processed in items:
                row = self._occurrences.get(occurrence.key)
                if row is not None and row["status"] == "claimed" and row.get("owner") == owner:
                    kept.append((row, occurrence, processed))
            self._commit_steps([p for _, _, p in kept], now)  # the lock is re-entrant; fails before applying
            for row, occurrence, _ in kept:
                row.update(status=occurrence.status, done_at=now, config_version=occurrence.config_version)
            return len(kept)

    def insert_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> bool:
        now = rows.utc(now)
        with self._lock:
            if any(o.key in self._occurrences for o, _ in items):
                return False
            self._commit_steps([p for _, p in items], now)  # the lock is re-entrant; fails before applying
            for o, _ in items:
                self._occurrences[o.key] = {
                    "status": o.status,
                    "claimed_at": now,
                    "done_at": now,
                    "owner": owner,
                    "config_version": o.config_version,
                }
            return True

    def care_done(self, keys: Sequence[tuple[str, str, str, str]]) -> set[tuple[str, str, str, str]]:
        with self._lock:
            return {key for key in keys if key in self._occurrences}

    def care_summary(self, process: str) -> CareSummary:
        with self._lock:
            counts: dict[str, int] = {}
            last = None
            for key, row in self._occurrences.items():
                if key[0] != process:
                    continue
                counts[row["status"]] = counts.get(row["status"], 0) + 1
                if row["done_at"] is not None and (last is None or row["done_at"] > last):
                    last = row["done_at"]
            return CareSummary(counts=counts, last_done_at=last)
