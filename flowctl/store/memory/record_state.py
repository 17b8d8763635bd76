"""``RecordState`` in memory: what the engine reads, as fresh copies of the stored rows."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from flowctl.engine.state import ACTIVE, Record, Run, Timer
from flowctl.store import rows
from flowctl.store.memory.base import MemoryBase, load


class MemoryRecordState(MemoryBase):
    """Records, runs, timers and allocation state, as the engine reads them."""

    def record(self, object: str, id: str) -> Record | None:
        with self._lock:
            row = self._records.get((object, id))
            return rows.record_from(load("records", row)) if row else None

    def active_runs(self, object: str, id: str) -> list[Run]:
        with self._lock:
            found = [
                r
                for r in self._runs.values()
                if r["object"] == object and r["record_id"] == id and r["status"] in ACTIVE
            ]
            found.sort(key=lambda r: (r["seq"], r["id"]))
            return [rows.run_from(load("runs", r)) for r in found]

    def run(self, run_id: str) -> Run | None:
        with self._lock:
            row = self._runs.get(run_id)
            return rows.run_from(load("runs", row)) if row else None

    def timers_of(self, run_id: str) -> list[Timer]:
        with self._lock:
            found = sorted(
                (t for t in self._timers.values() if t["run_id"] == run_id), key=lambda t: (t["due"], t["id"])
            )
            return [rows.timer_from(t) for t in found]

    def allocation(self, rule: str) -> Mapping[str, Any]:
        with self._lock:
            row = self._allocations.get(rule)
            return load("allocations", row)["state"] if row else {}

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> dict[str, int]:
        counts = dict.fromkeys(users, 0)
        with self._lock:
            for row in self._records.values():
                if (
                    row["object"] == object
                    and row["owner"] in counts
                    and not row["deleted"]
                    and (row["pipeline"], row["stage"]) not in final
                ):
                    counts[row["owner"]] += 1
        return counts

    def records_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        with self._lock:
            return {key: rows.record_from(load("records", self._records[key])) for key in keys if key in self._records}

    def active_runs_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Run]]:
        with self._lock:
            return {key: self.active_runs(*key) for key in keys}
