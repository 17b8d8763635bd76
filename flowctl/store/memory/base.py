"""The shared floor of ``MemoryBase``: its tables as dicts of rows, and the one lock.

Rows are the ``dict``s of ``rows.py`` with JSON columns kept as JSON text (``dump``/``load``), so
a value that could not be stored in a database fails here too, before anything is applied, and
every read hands out fresh objects. One re-entrant lock makes each method atomic. The roles (one
mixin module each beside this one) work on the tables declared here.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from flowctl.ports import ChannelToken, LeaseLost, Processed
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


def dump(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON.get(table, ()):
        out[name] = json.dumps(out[name], separators=(",", ":"), ensure_ascii=False)
    for name, value in out.items():
        if isinstance(value, datetime):
            out[name] = rows.utc(value)
    return out


def load(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON.get(table, ()):
        out[name] = json.loads(out[name])
    return out


def leased(row: Mapping[str, Any], now: datetime) -> bool:
    return row["lease_until"] is not None and row["lease_until"] > now


class MemoryBase:
    """The tables and the lock every role works on."""

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
        self._stage_entries: dict[Key, list[dict[str, Any]]] = {}  # per record, in the order entered
        self._notes: dict[str, dict[str, Any]] = {}  # by effect key, in the order written
        self._allocations: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, dict[str, Any]] = {}
        self._occurrences: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._dates: dict[tuple[str, str], list[dict[str, Any]]] = {}  # the month-day index of record dates
        self._care_days: dict[tuple[str, str], str] = {}  # (process, day) -> pinned config version
        self._sources: dict[str, dict[str, Any]] = {}  # polling source -> its stored state
        self._source_rows: dict[tuple[str, str], str] = {}  # (source, key) -> hash of the copied row
        self._channel_tokens: dict[str, ChannelToken] = {}  # channel -> its newest token pair
        self._seq = 0
        self._outbox_id = 0

    def kept_connection(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # no connections to keep

    def close(self) -> None:
        pass

    def _index_dates(self, written: Any) -> None:
        """Caller holds the lock. Re-index the date fields of the records just written."""
        dates = self._dates
        written = list(written)
        for row in written:
            dates.pop((row["object"], row["id"]), None)
        for row in date_rows(written):
            dates.setdefault((row["object"], row["record_id"]), []).append(row)

    def _commit_steps(self, items: Sequence[Processed], now: datetime, owner: str | None = None) -> None:
        """Write what ``items`` decided and finish their changes, atomically (``commit_batch``,
        and the care ledger's commits); with ``owner``, fenced as ``commit_batch`` says."""
        now = rows.utc(now)
        plan = rows.plan_batch(items, now)
        # serialize everything first: a value that cannot be stored fails before anything is applied
        records = {key: dump("records", row) for key, row in plan.records.items()}
        runs = {run_id: dump("runs", row) for run_id, row in plan.runs.items()}
        timers = {timer_id: (dump("timers", row) if row else None) for timer_id, row in plan.timers.items()}
        outbox = [dump("outbox", row) for row in plan.outbox.values()]
        allocations = {rule: dump("allocations", row) for rule, row in plan.allocations.items()}
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
            for entry in plan.stage_entries:
                self._stage_entries.setdefault((entry["object"], entry["record_id"]), []).append(entry)
            for key, note in plan.notes.items():
                self._notes.setdefault(key, note)
            for done in plan.changes:
                change = self._changes.get(done["b_seq"])
                if change is not None:
                    change.update(
                        status=done["b_status"],
                        error=done["b_error"],
                        processed_at=now,
                        lease_owner=None,
                        lease_until=None,
                    )
                    self._open.pop(done["b_seq"], None)

    def _fence(self, items: Sequence[Processed], owner: str) -> None:
        """As ``SqlStore._fence``: :class:`LeaseLost` unless ``owner`` holds every change and timer."""
        for kind, held in (
            ("change", [(self._changes.get(i.change.seq), i.change.attempts) for i in items if i.change is not None]),
            ("timer", [(self._timers.get(i.timer.id), None) for i in items if i.timer is not None]),
        ):
            holders: dict[str, int] = {}
            for row, attempts in held:
                if row is None:
                    holders["nobody"] = holders.get("nobody", 0) + 1
                elif (
                    row.get("lease_owner") != owner
                    or (kind == "change" and row["status"] != "claimed")
                    or (attempts is not None and row["attempts"] != attempts)
                ):
                    who = row.get("lease_owner") or "nobody"
                    holders[who] = holders.get(who, 0) + 1
            if holders:
                raise LeaseLost(kind, owner, len(held), holders)
