"""``Deployments`` in memory: config versions, one current, and what a deploy must know."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flowctl.engine.state import ACTIVE, Run
from flowctl.ports import ConfigVersion
from flowctl.store import rows
from flowctl.store.memory.base import MemoryBase, dump, load


class MemoryDeployments(MemoryBase):
    """Config versions and what a deploy must know."""

    def save_version(self, version: ConfigVersion) -> None:
        row = dump("config_versions", rows.version_row(version))
        with self._lock:
            for other in self._versions.values():
                other["current"] = False
            self._versions[version.id] = row

    def current_version(self) -> ConfigVersion | None:
        with self._lock:
            for row in self._versions.values():
                if row["current"]:
                    return rows.version_from(load("config_versions", row))
            return None

    def versions(self, limit: int = 50) -> list[ConfigVersion]:
        with self._lock:
            found = sorted(self._versions.values(), key=lambda r: r["id"])
            found.sort(key=lambda r: (r["applied_at"], r["current"]), reverse=True)
            return [rows.version_from(load("config_versions", r)) for r in found[:limit]]

    def version(self, id: str) -> ConfigVersion | None:
        with self._lock:
            row = self._versions.get(id)
            return rows.version_from(load("config_versions", row)) if row else None

    def deploy_version(
        self,
        version: ConfigVersion,
        expected_current: str | None,
        cancel_runs: Sequence[str] = (),
        now: datetime | None = None,
    ) -> bool:
        row = dump("config_versions", rows.version_row(version))
        stamp = (now or version.applied_at).isoformat()
        with self._lock:
            current = next((r["id"] for r in self._versions.values() if r["current"]), None)
            if current != expected_current:
                return False
            for other in self._versions.values():
                other["current"] = False
            self._versions[version.id] = row
            cancel = set(cancel_runs)
            for timer_id in [t for t, timer in self._timers.items() if timer["run_id"] in cancel]:
                del self._timers[timer_id]
            for run_id in cancel:
                run = self._runs.get(run_id)
                if run is not None and run["status"] in ACTIVE:
                    run.update(status="cancelled", waiting_for="", updated_at=stamp)
            return True

    def versions_in_use(self, since_day: str) -> set[str]:
        with self._lock:
            found = {r["config_version"] for r in self._runs.values() if r["status"] in ACTIVE}
            pins = self._care_days
            return found | {version for (_, day), version in pins.items() if day >= since_day}

    def stage_counts(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            out: dict[tuple[str, str, str], int] = {}
            for r in self._records.values():
                if not r["deleted"]:
                    key = (r["object"], r["pipeline"], r["stage"])
                    out[key] = out.get(key, 0) + 1
            return out

    def pending_work(self) -> list[tuple[Run, int]]:
        with self._lock:
            held: dict[str, int] = {}
            for timer in self._timers.values():
                held[timer["run_id"]] = held.get(timer["run_id"], 0) + 1
            found = sorted((r for r in self._runs.values() if r["status"] in ACTIVE), key=lambda r: (r["seq"], r["id"]))
            return [(rows.run_from({**load("runs", r), "trace": []}), held.get(r["id"], 0)) for r in found]

    def care_claims_since(self, since: datetime) -> dict[str, int]:
        since = rows.utc(since)
        with self._lock:
            out: dict[str, int] = {}
            for (process, *_), row in self._occurrences.items():
                if row["claimed_at"] is not None and row["claimed_at"] >= since:
                    out[process] = out.get(process, 0) + 1
            return out
