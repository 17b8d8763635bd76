"""``Inspection`` in memory: listings, gauges and history for the CLI and ``/metrics``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowctl.engine.state import ACTIVE, Record, Run
from flowctl.ports import OutboxRow, StoredChange
from flowctl.store import rows
from flowctl.store.memory.base import MemoryBase, load


class MemoryInspection(MemoryBase):
    """The read side: listings, gauges, history."""

    def list_records(self, object: str, stage: str = "", limit: int = 100, after: str = "") -> list[Record]:
        with self._lock:
            found = sorted(
                (
                    r
                    for r in self._records.values()
                    if r["object"] == object
                    and not r["deleted"]
                    and (not stage or r["stage"] == stage)
                    and r["id"] > after
                ),
                key=lambda r: r["id"],
            )
            return [rows.record_from(load("records", r)) for r in found[:limit]]

    def list_runs(self, limit: int = 50, status: str = "", object: str = "", record_id: str = "") -> list[Run]:
        with self._lock:
            found = sorted(
                (
                    r
                    for r in self._runs.values()
                    if (not status or r["status"] == status)
                    and (not object or r["object"] == object)
                    and (not record_id or r["record_id"] == record_id)
                ),
                key=lambda r: (r["seq"], r["id"]),
                reverse=True,
            )
            return [rows.run_from(load("runs", r)) for r in found[:limit]]

    def list_outbox(self, limit: int = 50, status: str = "") -> list[OutboxRow]:
        with self._lock:
            found = [r for r in reversed(self._outbox.values()) if not status or r["status"] == status]
            return [rows.outbox_from(load("outbox", r)) for r in found[:limit]]

    def outbox_row(self, row_id: int) -> OutboxRow | None:
        with self._lock:
            row = self._outbox.get(row_id)
            return rows.outbox_from(load("outbox", row)) if row else None

    def counts(self) -> Mapping[str, int]:
        with self._lock:
            out = dict.fromkeys(rows.COUNTS, 0)
            out["records"] = len(self._records)
            out["timers"] = len(self._timers)
            for seq in self._open:
                out[f"changes_{self._changes[seq]['status']}"] += 1
            out["changes_failed"] = sum(1 for c in self._changes.values() if c["status"] == "failed")
            for run in self._runs.values():
                if run["status"] in ACTIVE:
                    out[f"runs_{run['status']}"] += 1
            for row in self._outbox.values():
                if f"outbox_{row['status']}" in out:
                    out[f"outbox_{row['status']}"] += 1
            return out

    def queue_counts(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"changes_pending": 0, "changes_claimed": 0, "oldest_received_at": None}
            for seq in self._open:
                row = self._changes[seq]
                out[f"changes_{row['status']}"] += 1
                if out["oldest_received_at"] is None:
                    out["oldest_received_at"] = row["received_at"]
            for status in rows.OUTBOX_GAUGES:
                out[f"outbox_{status}"] = sum(1 for row in self._outbox.values() if row["status"] == status)
            due = [
                row["next_attempt_at"]
                for row in self._outbox.values()
                if row["status"] in ("pending", "retry") and row["next_attempt_at"] is not None
            ]
            out["oldest_due_at"] = min(due, default=None)
            out["timers"] = len(self._timers)
            return out

    def changes_after(self, seq: int, limit: int = 1000) -> list[StoredChange]:
        with self._lock:
            found = sorted(s for s in self._changes if s > seq)[: max(limit, 0)]
            return [rows.change_from(load("changes", self._changes[s])) for s in found]

    def outbox_between(self, since: datetime, until: datetime) -> list[OutboxRow]:
        since, until = rows.utc(since), rows.utc(until)
        with self._lock:
            return [
                rows.outbox_from(load("outbox", r))
                for r in self._outbox.values()
                if r["created_at"] is not None and since <= r["created_at"] < until
            ]
