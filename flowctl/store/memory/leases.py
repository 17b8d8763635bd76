"""``Leases`` in memory: extend, end and give up on the leases of claimed work."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flowctl.engine.state import ACTIVE, Timer
from flowctl.ports import StoredChange
from flowctl.store import rows
from flowctl.store.memory.base import MemoryBase, leased, load


class MemoryLeases(MemoryBase):
    """Leases across replicas: extend, end, give up."""

    def extend_leases(
        self,
        owner: str,
        until: datetime,
        *,
        change_seqs: Sequence[int] = (),
        timer_ids: Sequence[str] = (),
        outbox_ids: Sequence[int] = (),
    ) -> int:
        until = rows.utc(until)
        extended = 0
        with self._lock:
            held: list[tuple[dict[str, Any] | None, str | None]]
            held = [(self._changes.get(seq), "claimed") for seq in change_seqs]
            held += [(self._timers.get(tid), None) for tid in timer_ids]
            held += [(self._outbox.get(oid), "sending") for oid in outbox_ids]
            for row, status in held:
                if row is not None and row["lease_owner"] == owner and (status is None or row["status"] == status):
                    row["lease_until"] = until
                    extended += 1
        return extended

    def expire_leases(self, now: datetime, owner: str | None = None) -> int:
        now = rows.utc(now)
        ended = 0
        with self._lock:
            for table in (self._changes, self._timers, self._outbox):
                for row in table.values():
                    if leased(row, now) and (owner is None or row.get("lease_owner") == owner):
                        row["lease_until"] = now
                        ended += 1
        return ended

    def fail_exhausted_changes(self, now: datetime, max_attempts: int) -> list[StoredChange]:
        now = rows.utc(now)
        out: list[StoredChange] = []
        with self._lock:
            for seq in list(self._open):
                row = self._changes[seq]
                if row["status"] == "claimed" and not leased(row, now) and row["attempts"] >= max_attempts:
                    row.update(
                        status="failed",
                        processed_at=now,
                        lease_owner=None,
                        lease_until=None,
                        error=f"gave up after {row['attempts']} attempts: the lease of every worker "
                        f"that claimed it ran out (it died or hung)",
                    )
                    self._open.pop(seq, None)
                    out.append(rows.change_from(load("changes", row)))
        return out

    def fail_exhausted_timers(self, now: datetime, max_attempts: int) -> list[Timer]:
        now = rows.utc(now)
        out: list[Timer] = []
        with self._lock:
            for timer_id, row in list(self._timers.items()):
                if (
                    row.get("lease_until") is not None
                    and not leased(row, now)
                    and row.get("attempts", 0) >= max_attempts
                ):
                    out.append(rows.timer_from(row))
                    del self._timers[timer_id]
            for timer in out:
                run = self._runs.get(timer.run_id)
                if run is not None and run["status"] in ACTIVE:
                    run.update(status="failed", updated_at=now.isoformat())
        return out
