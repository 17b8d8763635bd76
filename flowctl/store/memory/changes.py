"""``ChangeQueue`` in memory: appending, claiming (leases, one change of a record at a time in seq
order) and the batch commit, fenced by ``owner`` as ``SqlStore`` fences it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from flowctl.engine.state import Timer
from flowctl.ports import AppendResult, InlineRun, NewChange, Processed, StoredChange
from flowctl.store import rows
from flowctl.store.memory.base import Key, MemoryBase, dump, leased, load


class MemoryChangeQueue(MemoryBase):
    """Append, claim and commit the work of the worker loop."""

    def append_changes(self, changes: Sequence[NewChange], inline: InlineRun | None = None) -> list[AppendResult]:
        """Stores them; every change waits for a worker (``inline`` is for the SQL store's hot path)."""
        prepared = [dump("changes", rows.change_row(change)) for change in changes]
        with self._lock:
            results = []
            for row in prepared:
                key = row["idempotency_key"]
                if key in self._keys:
                    first = self._changes.get(self._keys[key], {}).get("fingerprint") or ""
                    results.append(AppendResult(seq=self._keys[key], duplicate=True, fingerprint=first))
                    continue
                self._seq += 1
                row["seq"] = self._seq
                self._changes[self._seq] = row
                self._open[self._seq] = (row["object"], row["record_id"])
                self._keys[key] = self._seq
                results.append(AppendResult(seq=self._seq, duplicate=False, fingerprint=row["fingerprint"] or ""))
            return results

    def claim_changes(self, limit: int, owner: str, now: datetime, lease_seconds: float) -> list[StoredChange]:
        now = rows.utc(now)
        until = now + timedelta(seconds=lease_seconds)
        with self._lock:
            held_back: set[Key] = set()
            wanted: list[int] = []
            for seq, key in self._open.items():
                if len(wanted) >= limit:
                    break
                row = self._changes[seq]
                if key in held_back or (row["status"] == "claimed" and leased(row, now)):
                    held_back.add(key)
                    continue
                wanted.append(seq)
            out = []
            for seq in wanted:
                row = self._changes[seq]
                row.update(status="claimed", lease_owner=owner, lease_until=until, attempts=row["attempts"] + 1)
                out.append(rows.change_from(load("changes", row)))
            return out

    def claim_due_timers(self, now: datetime, limit: int, owner: str, lease_seconds: float) -> list[Timer]:
        now = rows.utc(now)
        until = now + timedelta(seconds=lease_seconds)
        with self._lock:
            due = sorted(
                (t for t in self._timers.values() if t["due"] <= now and not leased(t, now)),
                key=lambda t: (t["due"], t["id"]),
            )[: max(limit, 0)]
            for row in due:
                row.update(lease_owner=owner, lease_until=until, attempts=row.get("attempts", 0) + 1)
            return [rows.timer_from(row) for row in due]

    def commit_batch(self, items: Sequence[Processed], now: datetime, *, owner: str | None = None) -> None:
        self._commit_steps(items, now, owner)

    def change(self, seq: int) -> StoredChange | None:
        with self._lock:
            row = self._changes.get(seq)
            return rows.change_from(load("changes", row)) if row else None

    def open_changes(self, object: str, id: str) -> list[StoredChange]:
        with self._lock:
            found = [
                row
                for row in self._changes.values()
                if row["object"] == object and row["record_id"] == id and row["status"] in ("pending", "claimed")
            ]
            return sorted((rows.change_from(load("changes", row)) for row in found), key=lambda c: c.seq)
