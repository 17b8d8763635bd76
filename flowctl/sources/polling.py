"""The SQL polling source: a table of another database, turned into record changes.

Every ``interval`` the poller reads the rows whose cursor (``cursor: [updated_at, id]``) is past
the stored one, in cursor order, a page at a time: ``WHERE (updated_at, id) > (:u, :i) ORDER BY
updated_at, id LIMIT n``, which an index on the cursor columns answers by reading only those
rows, so a poll costs what changed, not the size of the table. Each row is hashed (all its
columns) and compared with the copy's hash in ``source_rows``: a new key becomes a ``put``, a
changed one a ``patch`` with the mapped fields, an unchanged one nothing. Changes go through the
same ``Ingest`` as the HTTP API, with the idempotency key ``<source>:<key>:<hash>``; the hashes
and the cursor are saved only after the changes are stored, so a crash in between replays the
page and the keys drop the copies. The cursor lives in ``source_cursors`` and survives restarts.
A row changed twice between two polls is read once, with its latest values: one change.

Deletes: a row that disappeared never shows up in a cursor query, so every ``delete_every``-th
poll (and the first after start) is followed by a key scan: ``SELECT key FROM table`` (keys only)
compared with the stored keys; each missing key becomes a ``delete``.

Rows whose cursor value is NULL are never read. A row committed late with a cursor value below
one already read (a long transaction) is missed until it changes again: use a cursor the
database stamps at commit, or poll a view that does.

Across replicas one poller runs per source: a lease in the source's ``source_cursors`` row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from flowctl.ports import AppendResult, ChangeOp, Clock, NewChange, SourceCursors
from flowctl.sources.foreign import ForeignTable
from flowctl.sources.mapping import compile_value
from flowctl.spec import model as m
from flowctl.spec.env import substitute

log = logging.getLogger("flowctl.polling")

PAGE = 5000
DELETE_EVERY = 10
DEFAULT_INTERVAL = 30.0


class Ingest(Protocol):
    """Where the poller's changes go: the daemon's ``Ingest``, which stores them in group commits."""

    def submit_many(self, changes: Sequence[NewChange]) -> list[Future[AppendResult]]: ...


class Counter(Protocol):
    def inc(self, amount: float = 1.0, /, **labels: str) -> None: ...


class Metrics(Protocol):
    """The part of the daemon's metrics registry the poller counts its accepted changes in."""

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter: ...


@dataclass(frozen=True, slots=True)
class PollResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    read: int = 0

    def __add__(self, other: PollResult) -> PollResult:
        return PollResult(
            self.created + other.created,
            self.updated + other.updated,
            self.deleted + other.deleted,
            self.read + other.read,
        )


def plain(value: Any) -> Any:
    """A column value as JSON: datetimes and dates as ISO text, decimals as numbers."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def row_hash(row: Mapping[str, Any]) -> str:
    text = json.dumps({k: plain(v) for k, v in row.items()}, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SqlPoller:
    """Polls ``source`` (``type: sql``) into ``ingest``. ``fields``: the object type's field names
    (columns outside them are left out when ``map.fields`` is not given; empty: keep all)."""

    def __init__(
        self,
        source: m.Source,
        store: SourceCursors,
        ingest: Ingest,
        clock: Clock,
        *,
        env: Mapping[str, str],
        owner: str,
        metrics: Metrics | None = None,
        fields: Collection[str] = (),
        page: int = PAGE,
        delete_every: int = DELETE_EVERY,
    ) -> None:
        self.source = source
        self.name = source.name
        self.store = store
        self.ingest = ingest
        self.clock = clock
        self.env = env
        self.owner = owner
        self.fields = set(fields)
        self.page = page
        self.delete_every = max(delete_every, 1)
        self.interval = source.interval.value.total_seconds() if source.interval else DEFAULT_INTERVAL
        self.lease_seconds = max(3 * self.interval, 30.0)
        self.polls = 0
        mapping = source.map.get("fields") if source.map else None
        self._map = compile_value(mapping, f"{self.name}.map.fields") if mapping is not None else None
        self._foreign: ForeignTable | None = None
        self.accepted: Counter | None = None
        if metrics is not None:
            help = "Record changes and events stored for processing."
            self.accepted = metrics.counter("flowctl_changes_accepted_total", help, ("source",))

    # ---- the external table

    def table(self) -> ForeignTable:
        if self._foreign is None:
            self._foreign = foreign = ForeignTable(substitute(self.source.url, self.env), self.source.table)
            missing = [c for c in (self.source.key, *self.source.cursor) if not foreign.has(c)]
            if missing:
                raise ValueError(f"source {self.name}: table {self.source.table} has no column {missing[0]!r}")
        return self._foreign

    def close(self) -> None:
        if self._foreign is not None:
            self._foreign.close()

    def _decode(self, position: Sequence[Any] | None) -> list[Any] | None:
        if not position:
            return None
        table = self.table()
        out = []
        for name, value in zip(self.source.cursor, position, strict=True):
            kind = table.python_type(name)
            if value is not None and kind is datetime:
                value = datetime.fromisoformat(value)
            elif value is not None and kind is date:
                value = date.fromisoformat(value)
            elif value is not None and kind is Decimal:
                value = Decimal(str(value))
            out.append(value)
        return out

    # ---- one poll

    def poll_once(self, *, full: bool = False) -> PollResult:
        """Read what changed since the cursor (all pages); with ``full``, then look for deleted rows.
        Nothing happens while another replica holds this source's lease."""
        now = self.clock.now()
        state = self.store.claim_source(self.name, self.owner, now, self.lease_seconds)
        if state is None:
            return PollResult()
        table = self.table()
        position = self._decode(state.get("position"))
        result = PollResult()
        while True:
            found = table.page(self.source.cursor, position, self.page)
            if not found:
                break
            keyed = {str(row[self.source.key]): row for row in found}
            stored = self.store.source_hashes(self.name, list(keyed))
            changes: list[NewChange] = []
            hashes: dict[str, str | None] = {}
            created = updated = 0
            for key, row in keyed.items():
                digest = row_hash(row)
                if stored.get(key) == digest:
                    continue
                op: ChangeOp = "patch" if key in stored else "put"
                created, updated = created + (op == "put"), updated + (op == "patch")
                changes.append(
                    NewChange(
                        object=self.source.object,
                        record_id=key,
                        op=op,
                        fields=self._fields(row),
                        idempotency_key=f"{self.name}:{key}:{digest}",
                        source=self.name,
                        received_at=now,
                    )
                )
                hashes[key] = digest
            self._submit(changes)
            last = found[-1]
            position = [last[name] for name in self.source.cursor]
            state = {**state, "position": [plain(v) for v in position]}
            self.store.save_source(self.name, state, hashes, self.owner, now, self.lease_seconds)
            result += PollResult(created=created, updated=updated, read=len(found))
            if len(found) < self.page:
                break
        if full:
            result += self._deletes(now, state)
        self.polls += 1
        return result

    def _fields(self, row: Mapping[str, Any]) -> dict[str, Any]:
        values = {k: plain(v) for k, v in row.items()}
        if self._map is not None:
            mapped = self._map({"row": values, "payload": values})
            return dict(mapped) if isinstance(mapped, Mapping) else {}
        return {k: v for k, v in values.items() if k != self.source.key and (not self.fields or k in self.fields)}

    def _deletes(self, now: datetime, state: Mapping[str, Any]) -> PollResult:
        present = self.table().keys(self.source.key)
        gone = sorted(self.store.source_keys(self.name) - present)
        if not gone:
            return PollResult()
        stored = self.store.source_hashes(self.name, gone)
        self._submit(
            [
                NewChange(
                    object=self.source.object,
                    record_id=key,
                    op="delete",
                    source=self.name,
                    idempotency_key=f"{self.name}:{key}:deleted:{stored.get(key, '')}",
                    received_at=now,
                )
                for key in gone
            ]
        )
        self.store.save_source(self.name, state, dict.fromkeys(gone), self.owner, now, self.lease_seconds)
        return PollResult(deleted=len(gone))

    def _submit(self, changes: list[NewChange]) -> None:
        """Store ``changes`` through the ingest and wait for the commit (raises if it failed)."""
        fresh = 0
        for future in self.ingest.submit_many(changes):
            fresh += 0 if future.result(timeout=120).duplicate else 1
        if fresh and self.accepted is not None:
            self.accepted.inc(fresh, source=self.name)

    # ---- the loop

    def run(self, stop: threading.Event) -> None:
        """Poll every ``interval`` until ``stop``; the first poll and every ``delete_every``-th one
        also scan for deleted rows. A failed poll is logged and tried again next interval."""
        rounds = 0
        failing = 0  # polls failed in a row: the first is logged with its traceback, the rest in a line
        try:
            while not stop.is_set():
                try:
                    result = self.poll_once(full=rounds % self.delete_every == 0)
                    rounds += 1
                    if result.created or result.updated or result.deleted:
                        log.info(
                            "source %s: %d created, %d updated, %d deleted",
                            self.name,
                            result.created,
                            result.updated,
                            result.deleted,
                        )
                    if failing:
                        log.info("source %s: polling again after %d failed polls", self.name, failing)
                    failing = 0
                except Exception as exc:
                    failing += 1
                    if failing == 1:
                        log.exception("source %s: poll failed; trying again every %.0fs", self.name, self.interval)
                    else:
                        log.warning(
                            "source %s: poll failed again (%d in a row): %s",
                            self.name,
                            failing,
                            str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
                        )
                stop.wait(self.interval)
        finally:
            self.close()
