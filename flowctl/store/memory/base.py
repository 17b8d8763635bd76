"""``MemoryStore``: the ``Store`` in memory, for unit tests; same contract as ``SqlStore``.

Rows are the ``dict``s of ``rows.py`` with JSON columns kept as JSON text, so a value that
could not be stored in a database fails here too (before anything is applied), and every read
hands out fresh objects. One lock makes each method atomic.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flowctl.engine.state import ACTIVE, Record, Run, Timer
from flowctl.ports import (
    AppendResult,
    CareOccurrence,
    CareSummary,
    ConfigVersion,
    LeaseLost,
    NewChange,
    OutboxRow,
    Processed,
    StoredChange,
)
from flowctl.store import rows
from flowctl.store.dates import date_rows

_JSON = {
    "records": ("fields",),
    "changes": ("fields", "data"),
    "runs": ("visits", "trace"),
    "outbox": ("payload",),
    "allocations": ("state",),
    "config_versions": ("documents", "files"),
}

Key = tuple[str, str]


def _dump(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON.get(table, ()):
        out[name] = json.dumps(out[name], separators=(",", ":"), ensure_ascii=False)
    for name, value in out.items():
        if isinstance(value, datetime):
            out[name] = rows.utc(value)
    return out


def _load(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON.get(table, ()):
        out[name] = json.loads(out[name])
    return out


def _leased(row: Mapping[str, Any], now: datetime) -> bool:
    return row["lease_until"] is not None and row["lease_until"] > now


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._records: dict[Key, dict[str, Any]] = {}
        self._changes: dict[int, dict[str, Any]] = {}
        self._open: dict[int, Key] = {}  # pending or claimed changes, in seq order
        self._keys: dict[str, int] = {}  # idempotency key -> seq
        self._runs: dict[str, dict[str, Any]] = {}
        self._timers: dict[str, dict[str, Any]] = {}
        self._outbox: dict[int, dict[str, Any]] = {}
        self._outbox_keys: set[str] = set()
        self._allocations: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, dict[str, Any]] = {}
        self._occurrences: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._seq = 0
        self._outbox_id = 0

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ engine state (StateView)

    def record(self, object: str, id: str) -> Record | None:
        with self._lock:
            row = self._records.get((object, id))
            return rows.record_from(_load("records", row)) if row else None

    def active_runs(self, object: str, id: str) -> list[Run]:
        with self._lock:
            found = [r for r in self._runs.values()
                     if r["object"] == object and r["record_id"] == id and r["status"] in ACTIVE]  # fmt: skip
            found.sort(key=lambda r: (r["seq"], r["id"]))
            return [rows.run_from(_load("runs", r)) for r in found]

    def run(self, run_id: str) -> Run | None:
        with self._lock:
            row = self._runs.get(run_id)
            return rows.run_from(_load("runs", row)) if row else None

    def timers_of(self, run_id: str) -> list[Timer]:
        with self._lock:
            found = sorted((t for t in self._timers.values() if t["run_id"] == run_id),
                           key=lambda t: (t["due"], t["id"]))  # fmt: skip
            return [rows.timer_from(t) for t in found]

    def allocation(self, rule: str) -> Mapping[str, Any]:
        with self._lock:
            row = self._allocations.get(rule)
            return _load("allocations", row)["state"] if row else {}

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> dict[str, int]:
        counts = dict.fromkeys(users, 0)
        with self._lock:
            for row in self._records.values():
                if (row["object"] == object and row["owner"] in counts and not row["deleted"]
                        and (row["pipeline"], row["stage"]) not in final):  # fmt: skip
                    counts[row["owner"]] += 1
        return counts

    def records_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        with self._lock:
            return {key: rows.record_from(_load("records", self._records[key])) for key in keys if key in self._records}

    def active_runs_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Run]]:
        with self._lock:
            return {key: self.active_runs(*key) for key in keys}

    # ------------------------------------------------------------------ ingest

    def append_changes(self, changes: Sequence[NewChange]) -> list[AppendResult]:
        prepared = [_dump("changes", rows.change_row(change)) for change in changes]
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

    # ------------------------------------------------------------------ the worker loop

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
                if key in held_back or (row["status"] == "claimed" and _leased(row, now)):
                    held_back.add(key)
                    continue
                wanted.append(seq)
            out = []
            for seq in wanted:
                row = self._changes[seq]
                row.update(status="claimed", lease_owner=owner, lease_until=until, attempts=row["attempts"] + 1)
                out.append(rows.change_from(_load("changes", row)))
            return out

    def claim_due_timers(self, now: datetime, limit: int, owner: str, lease_seconds: float) -> list[Timer]:
        now = rows.utc(now)
        until = now + timedelta(seconds=lease_seconds)
        with self._lock:
            due = sorted((t for t in self._timers.values() if t["due"] <= now and not _leased(t, now)),
                         key=lambda t: (t["due"], t["id"]))[: max(limit, 0)]  # fmt: skip
            for row in due:
                row.update(lease_owner=owner, lease_until=until, attempts=row.get("attempts", 0) + 1)
            return [rows.timer_from(row) for row in due]

    def commit_batch(self, items: Sequence[Processed], now: datetime, *, owner: str | None = None) -> None:
        now = rows.utc(now)
        plan = rows.plan_batch(items, now)
        # serialize everything first: a value that cannot be stored fails before anything is applied
        records = {key: _dump("records", row) for key, row in plan.records.items()}
        runs = {run_id: _dump("runs", row) for run_id, row in plan.runs.items()}
        timers = {timer_id: (_dump("timers", row) if row else None) for timer_id, row in plan.timers.items()}
        outbox = [_dump("outbox", row) for row in plan.outbox.values()]
        allocations = {rule: _dump("allocations", row) for rule, row in plan.allocations.items()}
        with self._lock:
            if owner is not None:
                self._fence(items, owner)
            self._records.update(records)
            self._index_dates(plan.records.values())
            self._runs.update(runs)
            for timer_id, timer in timers.items():
                if timer is None:
                    self._timers.pop(timer_id, None)
                else:
                    self._timers[timer_id] = timer
            for row in outbox:
                if row["key"] not in self._outbox_keys:
                    self._outbox_id += 1
                    self._outbox[self._outbox_id] = {**row, "id": self._outbox_id}
                    self._outbox_keys.add(row["key"])
            self._allocations.update(allocations)
            for done in plan.changes:
                change = self._changes.get(done["b_seq"])
                if change is not None:
                    change.update(status=done["b_status"], error=done["b_error"], processed_at=now,
                                  lease_owner=None, lease_until=None)  # fmt: skip
                    self._open.pop(done["b_seq"], None)

    def _fence(self, items: Sequence[Processed], owner: str) -> None:
        """As ``SqlStore._fence``: :class:`LeaseLost` unless ``owner`` holds every change and timer."""
        for kind, held in (("change", [(self._changes.get(i.change.seq), i.change.attempts)
                                       for i in items if i.change is not None]),
                           ("timer", [(self._timers.get(i.timer.id), None) for i in items if i.timer is not None])):
            holders: dict[str, int] = {}
            for row, attempts in held:
                if row is None:
                    holders["nobody"] = holders.get("nobody", 0) + 1
                elif (row.get("lease_owner") != owner or (kind == "change" and row["status"] != "claimed")
                      or (attempts is not None and row["attempts"] != attempts)):  # fmt: skip
                    who = row.get("lease_owner") or "nobody"
                    holders[who] = holders.get(who, 0) + 1
            if holders:
                raise LeaseLost(kind, owner, len(held), holders)

    def _held_by(self, row: Mapping[str, Any], owner: str | None) -> bool:
        return owner is None or (row["status"] == "sending" and row["lease_owner"] == owner)

    # ------------------------------------------------------------------ delivery

    def claim_outbox(self, now: datetime, limit: int, owner: str, lease_seconds: float,
                     skip_channels: Sequence[str] = ()) -> list[OutboxRow]:  # fmt: skip
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
                due = row["status"] == "pending" or (row["status"] in ("retry", "held") and (
                    row["next_attempt_at"] is None or row["next_attempt_at"] <= now
                ))  # pending: never tried, due whatever the clock says (it may have gone back)
                cut_off = row["status"] == "sending" and not _leased(row, now)
                if due or cut_off:
                    row.update(status="sending", lease_owner=owner, lease_until=until, attempts=row["attempts"] + 1)
                    out.append(rows.outbox_from(_load("outbox", row)))
            return out

    def mark_sent(self, row_id: int, now: datetime) -> None:
        self.mark_sent_many([row_id], now)

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

    def mark_failed(self, row_id: int, error: str, next_attempt_at: datetime | None, now: datetime, *,
                    owner: str | None = None) -> bool:  # fmt: skip
        next_attempt_at = rows.utc(next_attempt_at) if next_attempt_at else None
        with self._lock:
            row = self._outbox.get(row_id)
            if row is None or not self._held_by(row, owner):
                return owner is None
            row.update(status="dead" if next_attempt_at is None else "retry", last_error=error,
                       next_attempt_at=next_attempt_at, lease_owner=None, lease_until=None)  # fmt: skip
            return True

    def retry_outbox(self, row_id: int, now: datetime) -> bool:
        now = rows.utc(now)
        with self._lock:
            row = self._outbox.get(row_id)
            if row is None or row["status"] not in ("dead", "retry"):
                return False
            row.update(status="pending", attempts=0, next_attempt_at=now, lease_owner=None, lease_until=None)
            return True

    # ------------------------------------------------------------------ care

    def claim_occurrence(self, process: str, object: str, id: str, occurrence: str, now: datetime) -> bool:
        now = rows.utc(now)
        key = (process, object, id, occurrence)
        with self._lock:
            if key in self._occurrences:
                return False
            self._occurrences[key] = {"status": "claimed", "claimed_at": now, "done_at": None}
            return True

    # ------------------------------------------------------------------ inspection

    def change(self, seq: int) -> StoredChange | None:
        with self._lock:
            row = self._changes.get(seq)
            return rows.change_from(_load("changes", row)) if row else None

    def open_changes(self, object: str, id: str) -> list[StoredChange]:
        with self._lock:
            found = [row for row in self._changes.values() if row["object"] == object and row["record_id"] == id
                     and row["status"] in ("pending", "claimed")]  # fmt: skip
            return sorted((rows.change_from(_load("changes", row)) for row in found), key=lambda c: c.seq)

    def list_records(self, object: str, stage: str = "", limit: int = 100, after: str = "") -> list[Record]:
        with self._lock:
            found = sorted((r for r in self._records.values()
                            if r["object"] == object and not r["deleted"] and (not stage or r["stage"] == stage)
                            and r["id"] > after), key=lambda r: r["id"])  # fmt: skip
            return [rows.record_from(_load("records", r)) for r in found[:limit]]

    def list_runs(self, limit: int = 50, status: str = "", object: str = "", record_id: str = "") -> list[Run]:
        with self._lock:
            found = sorted((r for r in self._runs.values()
                            if (not status or r["status"] == status) and (not object or r["object"] == object)
                            and (not record_id or r["record_id"] == record_id)),
                           key=lambda r: (r["seq"], r["id"]), reverse=True)  # fmt: skip
            return [rows.run_from(_load("runs", r)) for r in found[:limit]]

    def list_outbox(self, limit: int = 50, status: str = "") -> list[OutboxRow]:
        with self._lock:
            found = [r for r in reversed(self._outbox.values()) if not status or r["status"] == status]
            return [rows.outbox_from(_load("outbox", r)) for r in found[:limit]]

    def outbox_row(self, row_id: int) -> OutboxRow | None:
        with self._lock:
            row = self._outbox.get(row_id)
            return rows.outbox_from(_load("outbox", row)) if row else None

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

    # ------------------------------------------------------------------ config versions

    def save_version(self, version: ConfigVersion) -> None:
        row = _dump("config_versions", rows.version_row(version))
        with self._lock:
            for other in self._versions.values():
                other["current"] = False
            self._versions[version.id] = row

    def current_version(self) -> ConfigVersion | None:
        with self._lock:
            for row in self._versions.values():
                if row["current"]:
                    return rows.version_from(_load("config_versions", row))
            return None

    # ------------------------------------------------------------------ deployments

    def versions(self, limit: int = 50) -> list[ConfigVersion]:
        with self._lock:
            found = sorted(self._versions.values(), key=lambda r: r["id"])
            found.sort(key=lambda r: (r["applied_at"], r["current"]), reverse=True)
            return [rows.version_from(_load("config_versions", r)) for r in found[:limit]]

    def version(self, id: str) -> ConfigVersion | None:
        with self._lock:
            row = self._versions.get(id)
            return rows.version_from(_load("config_versions", row)) if row else None

    def deploy_version(self, version: ConfigVersion, expected_current: str | None,
                       cancel_runs: Sequence[str] = (), now: datetime | None = None) -> bool:  # fmt: skip
        row = _dump("config_versions", rows.version_row(version))
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
            return [(rows.run_from({**_load("runs", r), "trace": []}), held.get(r["id"], 0)) for r in found]

    def versions_in_use(self, since_day: str) -> set[str]:
        with self._lock:
            found = {r["config_version"] for r in self._runs.values() if r["status"] in ACTIVE}
            pins: dict[tuple[str, str], str] = self.__dict__.get("_care_days", {})
            return found | {version for (_, day), version in pins.items() if day >= since_day}

    def care_claims_since(self, since: datetime) -> dict[str, int]:
        since = rows.utc(since)
        with self._lock:
            out: dict[str, int] = {}
            for (process, *_), row in self._occurrences.items():
                if row["claimed_at"] is not None and row["claimed_at"] >= since:
                    out[process] = out.get(process, 0) + 1
            return out

    def changes_after(self, seq: int, limit: int = 1000) -> list[StoredChange]:
        with self._lock:
            found = sorted(s for s in self._changes if s > seq)[: max(limit, 0)]
            return [rows.change_from(_load("changes", self._changes[s])) for s in found]

    def outbox_between(self, since: datetime, until: datetime) -> list[OutboxRow]:
        since, until = rows.utc(since), rows.utc(until)
        with self._lock:
            return [rows.outbox_from(_load("outbox", r)) for r in self._outbox.values()
                    if r["created_at"] is not None and since <= r["created_at"] < until]  # fmt: skip

    # ------------------------------------------------------------------ care schedules

    def _index_dates(self, written: Any) -> None:
        """Caller holds the lock. Re-index the date fields of the records just written."""
        dates: dict[tuple[str, str], list[dict[str, Any]]] = self.__dict__.setdefault("_dates", {})
        written = list(written)
        for row in written:
            dates.pop((row["object"], row["id"]), None)
        for row in date_rows(written):
            dates.setdefault((row["object"], row["record_id"]), []).append(row)

    def care_records(self, object: str, field: str, month_days: Sequence[int],
                     on_dates: Sequence[str] = ()) -> list[Record]:  # fmt: skip
        wanted, exact = set(month_days), set(on_dates)
        with self._lock:
            dates: dict[tuple[str, str], list[dict[str, Any]]] = self.__dict__.get("_dates", {})
            found = [key for key, rows_ in dates.items() if key[0] == object and any(
                d["field"] == field and d["month_day"] in wanted and (not exact or d["value"] in exact)
                for d in rows_)]  # fmt: skip
            return [rows.record_from(_load("records", self._records[key])) for key in sorted(found)
                    if key in self._records and not self._records[key]["deleted"]]  # fmt: skip

    def pin_care_day(self, process: str, day: str, version: str) -> str:
        with self._lock:
            pins: dict[tuple[str, str], str] = self.__dict__.setdefault("_care_days", {})
            return pins.setdefault((process, day), version)

    def claim_occurrences(self, wanted: Sequence[CareOccurrence], owner: str, now: datetime) -> list[CareOccurrence]:
        now = rows.utc(now)
        won = []
        with self._lock:
            for o in wanted:
                if o.key in self._occurrences:
                    continue
                self._occurrences[o.key] = {"status": "claimed", "claimed_at": now, "done_at": None, "owner": owner,
                                            "config_version": o.config_version}  # fmt: skip
                won.append(o)
        return won

    def reclaim_occurrences(self, owner: str, now: datetime, lease_seconds: float,
                            limit: int) -> list[CareOccurrence]:  # fmt: skip
        now = rows.utc(now)
        cutoff = now - timedelta(seconds=lease_seconds)
        out: list[CareOccurrence] = []
        with self._lock:
            for key, row in self._occurrences.items():
                if len(out) >= limit:
                    break
                if row["status"] == "claimed" and row["claimed_at"] <= cutoff:
                    row.update(owner=owner, claimed_at=now)
                    out.append(CareOccurrence(process=key[0], object=key[1], record_id=key[2], occurrence=key[3],
                                              config_version=row.get("config_version") or ""))  # fmt: skip
        return out

    def commit_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> int:
        now = rows.utc(now)
        with self._lock:
            kept = []
            for occurrence, processed in items:
                row = self._occurrences.get(occurrence.key)
                if row is not None and row["status"] == "claimed" and row.get("owner") == owner:
                    kept.append((row, occurrence, processed))
            self.commit_batch([p for _, _, p in kept], now)  # the lock is re-entrant; fails before applying
            for row, occurrence, _ in kept:
                row.update(status=occurrence.status, done_at=now, config_version=occurrence.config_version)
            return len(kept)

    def care_done(self, keys: Sequence[tuple[str, str, str, str]]) -> set[tuple[str, str, str, str]]:
        with self._lock:
            return {key for key in keys if key in self._occurrences}

    def insert_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> bool:
        now = rows.utc(now)
        with self._lock:
            if any(o.key in self._occurrences for o, _ in items):
                return False
            self.commit_batch([p for _, p in items], now)  # the lock is re-entrant; fails before applying
            for o, _ in items:
                self._occurrences[o.key] = {"status": o.status, "claimed_at": now, "done_at": now, "owner": owner,
                                            "config_version": o.config_version}  # fmt: skip
            return True

    def care_undated(self, object: str, field: str) -> tuple[int, int]:
        with self._lock:
            dates: dict[tuple[str, str], list[dict[str, Any]]] = self.__dict__.get("_dates", {})
            live = [key for key, row in self._records.items() if key[0] == object and not row["deleted"]]
            undated = sum(1 for key in live if not any(d["field"] == field for d in dates.get(key, ())))
            return len(live), undated

    def record_ids(self, object: str, after: str = "", limit: int = 1000) -> list[str]:
        with self._lock:
            ids = sorted(key[1] for key, row in self._records.items()
                         if key[0] == object and not row["deleted"] and key[1] > after)  # fmt: skip
            return ids[:limit]

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

    # ------------------------------------------------------------------ replicas, policies, metrics, polling

    def extend_leases(self, owner: str, until: datetime, *, change_seqs: Sequence[int] = (),
                      timer_ids: Sequence[str] = (), outbox_ids: Sequence[int] = ()) -> int:  # fmt: skip
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
                    if _leased(row, now) and (owner is None or row.get("lease_owner") == owner):
                        row["lease_until"] = now
                        ended += 1
        return ended

    def fail_exhausted_changes(self, now: datetime, max_attempts: int) -> list[StoredChange]:
        now = rows.utc(now)
        out: list[StoredChange] = []
        with self._lock:
            for seq in list(self._open):
                row = self._changes[seq]
                if row["status"] == "claimed" and not _leased(row, now) and row["attempts"] >= max_attempts:
                    row.update(status="failed", processed_at=now, lease_owner=None, lease_until=None,
                               error=f"gave up after {row['attempts']} attempts: the lease of every worker "
                                     f"that claimed it ran out (it died or hung)")  # fmt: skip
                    self._open.pop(seq, None)
                    out.append(rows.change_from(_load("changes", row)))
        return out

    def fail_exhausted_timers(self, now: datetime, max_attempts: int) -> list[Timer]:
        now = rows.utc(now)
        out: list[Timer] = []
        with self._lock:
            for timer_id, row in list(self._timers.items()):
                if row.get("lease_until") is not None and not _leased(row, now) \
                        and row.get("attempts", 0) >= max_attempts:  # fmt: skip
                    out.append(rows.timer_from(row))
                    del self._timers[timer_id]
            for timer in out:
                run = self._runs.get(timer.run_id)
                if run is not None and run["status"] in ACTIVE:
                    run.update(status="failed", updated_at=now.isoformat())
        return out

    def hold_outbox_many(self, holds: Sequence[tuple[int, datetime, str]], now: datetime, *,
                         owner: str | None = None) -> list[int]:  # fmt: skip
        lost: list[int] = []
        with self._lock:
            for row_id, until, why in holds:
                row = self._outbox.get(row_id)
                if row is None or not self._held_by(row, owner):
                    if owner is not None:
                        lost.append(row_id)
                    continue
                row.update(status="held", next_attempt_at=rows.utc(until), last_error=why,
                           attempts=max(row["attempts"] - 1, 0), lease_owner=None, lease_until=None)  # fmt: skip
        return sorted(lost)

    def release_held(self, channels: Sequence[str], reason_prefix: str, now: datetime) -> int:
        wanted, released = set(channels), 0
        with self._lock:
            for row in self._outbox.values():
                if row["status"] == "held" and row["channel"] in wanted and row["last_error"].startswith(reason_prefix):
                    row["next_attempt_at"] = rows.utc(now)
                    released += 1
        return released

    def release_outbox(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> None:
        now = rows.utc(now)
        with self._lock:
            for row_id in row_ids:
                row = self._outbox.get(row_id)
                if row is not None and row["status"] == "sending" and self._held_by(row, owner):
                    row.update(status="retry" if row["attempts"] > 1 else "pending", next_attempt_at=now,
                               attempts=max(row["attempts"] - 1, 0), lease_owner=None, lease_until=None)  # fmt: skip

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

    def sent_counts(self, channel: str, since: datetime,
                    recipients: Sequence[str] = ()) -> tuple[int, dict[str, int]]:  # fmt: skip
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
            due = [row["next_attempt_at"] for row in self._outbox.values()
                   if row["status"] in ("pending", "retry") and row["next_attempt_at"] is not None]  # fmt: skip
            out["oldest_due_at"] = min(due, default=None)
            out["timers"] = len(self._timers)
            return out

    def claim_source(self, source: str, owner: str, now: datetime, lease_seconds: float) -> dict[str, Any] | None:
        with self._lock:
            sources: dict[str, dict[str, Any]] = self.__dict__.setdefault("_sources", {})
            state = dict(sources.get(source, {}))
            holder, held_until = state.get("owner"), state.get("lease_until")
            if holder and holder != owner and held_until and datetime.fromisoformat(held_until) > now:
                return None
            state.update(owner=owner, lease_until=(now + timedelta(seconds=lease_seconds)).isoformat())
            sources[source] = json.loads(json.dumps(state))
        state.pop("owner", None)
        state.pop("lease_until", None)
        return state

    def save_source(self, source: str, state: Mapping[str, Any], hashes: Mapping[str, str | None],
                    owner: str, now: datetime, lease_seconds: float) -> None:  # fmt: skip
        until = (now + timedelta(seconds=lease_seconds)).isoformat()
        encoded = json.loads(json.dumps({**state, "owner": owner, "lease_until": until}))
        with self._lock:
            self.__dict__.setdefault("_sources", {})[source] = encoded
            copies: dict[tuple[str, str], str] = self.__dict__.setdefault("_source_rows", {})
            for key, value in hashes.items():
                if value is None:
                    copies.pop((source, key), None)
                else:
                    copies[(source, key)] = value

    def source_hashes(self, source: str, keys: Sequence[str]) -> dict[str, str]:
        with self._lock:
            copies: dict[tuple[str, str], str] = self.__dict__.get("_source_rows", {})
            return {key: copies[(source, key)] for key in keys if (source, key) in copies}

    def source_keys(self, source: str) -> set[str]:
        with self._lock:
            return {key for (src, key) in self.__dict__.get("_source_rows", {}) if src == source}
