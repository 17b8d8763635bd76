"""``Inspection`` in memory: listings, gauges and history for the CLI and ``/metrics``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowctl.engine.state import ACTIVE, Record, Run, StageEntry
from flowctl.ports import ConfigVersion, Note, OutboxFilter, OutboxRow, RunFilter, StoredChange
from flowctl.store import rows
from flowctl.store.memory.base import MemoryBase, load


class MemoryInspection(MemoryBase):
    """The read side: listings, gauges, history."""

    def list_records(
        self, object: str, stage: str = "", limit: int = 100, after: str = "", deleted: bool = False
    ) -> list[Record]:
        with self._lock:
            found = sorted(
                (
                    r
                    for r in self._records.values()
                    if r["object"] == object
                    and bool(r["deleted"]) is deleted
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

    def runs_page(self, filter: RunFilter, before: tuple[int, str] | None = None, limit: int = 50) -> list[Run]:
        since = None if filter.since is None else int(filter.since.timestamp() * 1000)
        until = None if filter.until is None else int(filter.until.timestamp() * 1000)
        with self._lock:
            found = sorted(
                (
                    r
                    for r in self._runs.values()
                    if all(
                        not want or r[name] == want
                        for name, want in (
                            ("status", filter.status),
                            ("automation", filter.automation),
                            ("object", filter.object),
                            ("record_id", filter.record_id),
                        )
                    )
                    and (since is None or r["seq"] >= since)
                    and (until is None or r["seq"] < until)
                    and (before is None or (r["seq"], r["id"]) < before)
                ),
                key=lambda r: (r["seq"], r["id"]),
                reverse=True,
            )
            return [rows.run_from(load("runs", r)) for r in found[:limit]]

    def outbox_page(self, filter: OutboxFilter, before: int | None = None, limit: int = 50) -> list[OutboxRow]:
        wanted = [
            (name, value)
            for name, value in (
                ("status", filter.status),
                ("channel", filter.channel),
                ("object", filter.object),
                ("record_id", filter.record_id),
            )
            if value
        ]
        with self._lock:
            found = [
                r
                for i, r in sorted(self._outbox.items(), reverse=True)
                if (before is None or i < before) and all(r[name] == value for name, value in wanted)
            ]
            return [rows.outbox_from(load("outbox", r)) for r in found[:limit]]

    def _on_board(self, object: str, pipeline: str, owner: str, q: str) -> list[dict[str, Any]]:
        """Caller holds the lock. The live records of the board, as stored rows (fields as JSON text)."""
        needle = q.lower()
        return [
            r
            for r in self._records.values()
            if r["object"] == object
            and r["pipeline"] == pipeline
            and not r["deleted"]
            and (not owner or r["owner"] == owner)
            and (not needle or needle in r["id"].lower() or needle in r["fields"].lower())
        ]

    def stage_totals(
        self, object: str, pipeline: str, sum_field: str = "", owner: str = "", q: str = ""
    ) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        with self._lock:
            for row in self._on_board(object, pipeline, owner, q):
                value = json.loads(row["fields"]).get(sum_field) if sum_field else None
                number = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
                n, total = out.get(row["stage"], (0, 0.0))
                out[row["stage"]] = (n + 1, total + number)
        return out

    def stage_records(
        self, object: str, pipeline: str, stage: str, *, after: str = "", limit: int = 20, owner: str = "", q: str = ""
    ) -> list[tuple[Record, datetime | None]]:
        with self._lock:
            found = sorted(
                (r for r in self._on_board(object, pipeline, owner, q) if r["stage"] == stage and r["id"] > after),
                key=lambda r: r["id"],
            )
            return [(rows.record_from(load("records", r)), r["updated_at"]) for r in found[:limit]]

    def active_counts(self, prefix: str) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        with self._lock:
            for r in self._runs.values():
                if r["status"] in ACTIVE and r["automation"].startswith(prefix):
                    key = (r["automation"], r["node"])
                    out[key] = out.get(key, 0) + 1
        return out

    def versions_page(self, before: tuple[datetime, str] | None = None, limit: int = 50) -> list[ConfigVersion]:
        with self._lock:
            found = sorted(
                (
                    v
                    for v in self._versions.values()
                    if before is None or (v["applied_at"], v["id"]) < (rows.utc(before[0]), before[1])
                ),
                key=lambda v: (v["applied_at"], v["id"]),
                reverse=True,
            )
            return [rows.version_from(load("config_versions", v)) for v in found[:limit]]

    def record_changes(self, object: str, id: str, limit: int = 1000) -> list[StoredChange]:
        with self._lock:
            found = [
                row for _, row in sorted(self._changes.items()) if row["object"] == object and row["record_id"] == id
            ]
            return [rows.change_from(load("changes", row)) for row in found[:limit]]

    def notes(self, object: str, record_id: str, limit: int = 100) -> list[Note]:
        with self._lock:
            found = [n for n in self._notes.values() if n["object"] == object and n["record_id"] == record_id]
            return [rows.note_from(row) for row in reversed(found)][: max(limit, 0)]

    def stage_entries(self, object: str, record_id: str, limit: int = 1000) -> list[StageEntry]:
        with self._lock:
            found = self._stage_entries.get((object, record_id), [])[: max(limit, 0)]
            return [rows.stage_entry_from(row) for row in found]
