"""``Outbox`` in memory: claims of effects to send and their outcomes, written only while the
sender still holds the row when it names an ``owner``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flowctl.engine.state import Effect
from flowctl.ports import OutboxRow
from flowctl.store import rows
from flowctl.store.memory.base import MemoryBase, dump, leased, load


class MemoryOutbox(MemoryBase):
    """Effects to send: claims and their outcomes."""

    def claim_outbox(
        self, now: datetime, limit: int, owner: str, lease_seconds: float, skip_channels: Sequence[str] = ()
    ) -> list[OutboxRow]:
        now = rows.utc(now)
        until = now + timedelta(seconds=lease_seconds)
        skip = set(skip_channels)
        with self._lock:
            out: list[OutboxRow] = []
            for row in self._outbox.values():
                if len(out) >= limit:
                    break
                if row["channel"] in skip:
                    continue
                due = row["status"] == "pending" or (
                    row["status"] in ("retry", "held")
                    and (row["next_attempt_at"] is None or row["next_attempt_at"] <= now)
                )  # pending: never tried, due whatever the clock says (it may have gone back)
                cut_off = row["status"] == "sending" and not leased(row, now)
                if due or cut_off:
                    row.update(status="sending", lease_owner=owner, lease_until=until, attempts=row["attempts"] + 1)
                    out.append(rows.outbox_from(load("outbox", row)))
            return out

    def release_outbox(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> None:
        now = rows.utc(now)
        with self._lock:
            for row_id in row_ids:
                row = self._outbox.get(row_id)
                if row is not None and row["status"] == "sending" and self._held_by(row, owner):
                    row.update(
                        status="retry" if row["attempts"] > 1 else "pending",
                        next_attempt_at=now,
                        attempts=max(row["attempts"] - 1, 0),
                        lease_owner=None,
                        lease_until=None,
                    )

    def mark_sent(self, row_id: int, now: datetime) -> None:
        self.mark_sent_many([row_id], now)

    def _held_by(self, row: Mapping[str, Any], owner: str | None) -> bool:
        return owner is None or (row["status"] == "sending" and row["lease_owner"] == owner)

    def mark_sent_many(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> list[int]:
        now = rows.utc(now)
        lost: list[int] = []
        with self._lock:
            for row_id in row_ids:
                row = self._outbox.get(row_id)
                if row is not None and self._held_by(row, owner):
                    row.update(status="sent", sent_at=now, lease_owner=None, lease_until=None)
                elif owner is not None:
                    lost.append(row_id)
        return lost

    def mark_failed(
        self, row_id: int, error: str, next_attempt_at: datetime | None, now: datetime, *, owner: str | None = None
    ) -> bool:
        next_attempt_at = rows.utc(next_attempt_at) if next_attempt_at else None
        with self._lock:
            row = self._outbox.get(row_id)
            if row is None or not self._held_by(row, owner):
                return owner is None
            row.update(
                status="dead" if next_attempt_at is None else "retry",
                last_error=error,
                next_attempt_at=next_attempt_at,
                lease_owner=None,
                lease_until=None,
            )
            return True

    def retry_outbox(self, row_id: int, now: datetime) -> bool:
        now = rows.utc(now)
        with self._lock:
            row = self._outbox.get(row_id)
            if row is None or row["status"] not in rows.RETRYABLE:
                return False
            row.update(status="pending", attempts=0, next_attempt_at=now, lease_owner=None, lease_until=None)
            return True

    def cancel_outbox(self, row_id: int, now: datetime) -> bool:
        with self._lock:
            row = self._outbox.get(row_id)
            if row is None or row["status"] not in rows.CANCELLABLE:
                return False
            row.update(status="cancelled", next_attempt_at=None, lease_owner=None, lease_until=None)
            return True

    def hold_outbox_many(
        self, holds: Sequence[tuple[int, datetime, str]], now: datetime, *, owner: str | None = None
    ) -> list[int]:
        lost: list[int] = []
        with self._lock:
            for row_id, until, why in holds:
                row = self._outbox.get(row_id)
                if row is None or not self._held_by(row, owner):
                    if owner is not None:
                        lost.append(row_id)
                    continue
                row.update(
                    status="held",
                    next_attempt_at=rows.utc(until),
                    last_error=why,
                    attempts=max(row["attempts"] - 1, 0),
                    lease_owner=None,
                    lease_until=None,
                )
        return sorted(lost)

    def release_held(self, channels: Sequence[str], reason_prefix: str, now: datetime) -> int:
        wanted, released = set(channels), 0
        with self._lock:
            for row in self._outbox.values():
                if row["status"] == "held" and row["channel"] in wanted and row["last_error"].startswith(reason_prefix):
                    row["next_attempt_at"] = rows.utc(now)
                    released += 1
        return released

    def clamp_retries(self, longest: float, now: datetime) -> int:
        now, clamped = rows.utc(now), 0
        latest = now + timedelta(seconds=longest)
        with self._lock:
            for row in self._outbox.values():
                if row["status"] == "retry" and row["next_attempt_at"] is not None and row["next_attempt_at"] > latest:
                    row["next_attempt_at"] = now
                    clamped += 1
        return clamped

    def shift_outbox(self, seconds: float, now: datetime) -> int:
        now, step, moved = rows.utc(now), timedelta(seconds=seconds), 0
        with self._lock:
            for row in self._outbox.values():
                at = row["next_attempt_at"]
                if row["status"] in ("retry", "held") and at is not None and at > now:
                    row["next_attempt_at"] = max(now, at - step)
                    moved += 1
        return moved

    def sent_counts(self, channel: str, since: datetime, recipients: Sequence[str] = ()) -> tuple[int, dict[str, int]]:
        since = rows.utc(since)
        wanted = set(recipients)
        total, per = 0, dict[str, int]()
        with self._lock:
            for row in self._outbox.values():
                if row["channel"] == channel and row["sent_at"] is not None and row["sent_at"] >= since:
                    total += 1
                    if row["recipient"] in wanted:
                        per[row["recipient"]] = per.get(row["recipient"], 0) + 1
        return total, per

    def queue_outbox(self, effects: Sequence[Effect], now: datetime) -> list[str]:
        fresh = [dump("outbox", rows.outbox_row(effect, now)) for effect in effects]
        queued: list[str] = []
        with self._lock:
            for row in fresh:
                if row["key"] not in self._outbox_keys:
                    self._outbox_id += 1
                    self._outbox[self._outbox_id] = {**row, "id": self._outbox_id}
                    self._outbox_keys.add(row["key"])
                    queued.append(row["key"])
        return queued
