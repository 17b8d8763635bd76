"""``CareLedger`` on SQL: records due on a day (the ``record_dates`` month-day index) and the ledger.

The ledger (``care_occurrences``) has one row per (process, record, occurrence), inserted once:
whoever inserts it runs it, so replicas and restarts never repeat one. A claim not finished within
its lease is taken over; an outcome is written only while its claimer still holds the row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowctl.engine.state import Record
from flowctl.ports import CareOccurrence, CareSummary, Processed
from flowctl.store import rows
from flowctl.store.sql.base import SqlBase, chunks
from flowctl.store.tables import care_days, care_occurrences, outbox, record_dates, records, runs


class SqlCareLedger(SqlBase):
    """Care schedules: due records and the once-only ledger."""

    def care_records(
        self, object: str, field: str, month_days: Sequence[int], on_dates: Sequence[str] = ()
    ) -> list[Record]:
        """Live records whose ``field`` falls on ``month_days``: one indexed join, rows as found."""
        if not month_days:
            return []
        d, r = record_dates.c, records.c
        stmt = (
            sa.select(records)
            .join(record_dates, sa.and_(r.object == d.object, r.id == d.record_id))
            .where(d.object == object, d.field == field, d.month_day.in_(sorted(set(month_days))), r.deleted.is_(False))
        )
        if on_dates:
            stmt = stmt.where(d.value.in_(sorted(set(on_dates))))
        with self.engine.connect() as conn:
            return [rows.record_from(row._mapping) for row in conn.execute(stmt)]

    def record_ids(self, object: str, after: str = "", limit: int = 1000) -> list[str]:
        """Ids of live records of ``object`` after ``after``, in order: the primary key, no JSON."""
        r = records.c
        stmt = sa.select(r.id).where(r.object == object, r.deleted.is_(False), r.id > after).order_by(r.id).limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def care_undated(self, object: str, field: str) -> tuple[int, int]:
        """(live records of ``object``, those without a usable date in ``field``): two index counts
        (the month-day index holds a row per live record and parseable date)."""
        r, d = records.c, record_dates.c
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(records).where(r.object == object, r.deleted.is_(False))
            ).scalar_one()
            dated = conn.execute(
                sa.select(sa.func.count()).select_from(record_dates).where(d.object == object, d.field == field)
            ).scalar_one()
        return int(total), max(0, int(total) - int(dated))

    def pin_care_day(self, process: str, day: str, version: str) -> str:
        stmt = self._insert_for(care_days).on_conflict_do_nothing()
        with self._writer.begin() as conn:
            conn.execute(stmt, {"process": process, "day": day, "config_version": version})
            d = care_days.c
            pinned = conn.execute(sa.select(d.config_version).where(d.process == process, d.day == day)).scalar_one()
        return str(pinned)

    def claim_occurrence(self, process: str, object: str, id: str, occurrence: str, now: datetime) -> bool:
        """True the first time (process, record, occurrence) is claimed, False ever after."""
        row = {
            "process": process,
            "object": object,
            "record_id": id,
            "occurrence": occurrence,
            "status": "claimed",
            "claimed_at": now,
            "done_at": None,
        }
        with self._write_lock, self._writer.begin() as conn:
            return conn.execute(self._insert_occurrence, row).first() is not None

    def claim_occurrences(self, wanted: Sequence[CareOccurrence], owner: str, now: datetime) -> list[CareOccurrence]:
        """Insert a ``claimed`` row per occurrence; a row already there (claimed by anyone, ever)
        is left alone. RETURNING tells which went in: those are ours."""
        if not wanted:
            return []
        c = care_occurrences.c
        stmt = (
            self._insert_for(care_occurrences)
            .on_conflict_do_nothing()
            .returning(c.process, c.object, c.record_id, c.occurrence)
        )
        by_key = {o.key: o for o in wanted}
        won: set[tuple[str, str, str, str]] = set()
        with self._writer.begin() as conn:
            for part in chunks(list(by_key.values()), 1000):
                params = [
                    {
                        "process": o.process,
                        "object": o.object,
                        "record_id": o.record_id,
                        "occurrence": o.occurrence,
                        "status": "claimed",
                        "claimed_at": now,
                        "done_at": None,
                        "owner": owner,
                        "config_version": o.config_version,
                    }
                    for o in part
                ]
                won.update(tuple(row) for row in conn.execute(stmt, params))
        return [o for key, o in by_key.items() if key in won]

    def reclaim_occurrences(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[CareOccurrence]:
        c = care_occurrences.c
        cutoff = now - timedelta(seconds=lease_seconds)
        expired = sa.and_(c.status == "claimed", c.claimed_at <= cutoff)
        key = sa.tuple_(c.process, c.object, c.record_id, c.occurrence)
        sub = sa.select(c.process, c.object, c.record_id, c.occurrence).where(expired).limit(limit)
        stmt = (
            sa.update(care_occurrences)
            .where(key.in_(sub), expired)
            .values(owner=owner, claimed_at=now)
            .returning(*care_occurrences.c)
        )
        with self._writer.begin() as conn:
            found = [row._mapping for row in conn.execute(stmt)]
        return [
            CareOccurrence(
                process=r["process"],
                object=r["object"],
                record_id=r["record_id"],
                occurrence=r["occurrence"],
                config_version=r["config_version"] or "",
            )
            for r in found
        ]

    def commit_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> int:
        if not items:
            return 0
        c = care_occurrences.c
        key = sa.tuple_(c.process, c.object, c.record_id, c.occurrence)
        groups: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {}
        for occurrence, _ in items:
            groups.setdefault((occurrence.status, occurrence.config_version), []).append(occurrence.key)
        kept: set[tuple[str, str, str, str]] = set()
        with self._writer.begin() as conn:
            for (status, version), keys in groups.items():
                for part in chunks(keys, 200):
                    stmt = (
                        sa.update(care_occurrences)
                        .where(key.in_(list(part)), c.status == "claimed", c.owner == owner)
                        .values(status=status, done_at=now, config_version=version)
                        .returning(c.process, c.object, c.record_id, c.occurrence)
                    )
                    kept.update(tuple(row) for row in conn.execute(stmt))
            plan = rows.plan_batch([p for o, p in items if o.key in kept], now)
            self._many(conn, self._upsert_records, plan.records.values())
            self._write_dates(conn, plan.records.values())
            self._many(conn, self._upsert_runs, plan.runs.values())
            self._many(conn, self._upsert_timers, plan.timer_upserts)
            self._many(conn, self._insert_outbox, plan.outbox.values())
            self._many(conn, self._upsert_allocations, plan.allocations.values())
            self._many(conn, self._insert_stage_entries, plan.stage_entries)
            self._many(conn, self._insert_notes, plan.notes.values())
        return len(kept)

    def insert_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> bool:
        """Insert each occurrence with its outcome and write its step, in one transaction; False
        (and nothing written) if any occurrence is in the ledger already. A plain INSERT: the
        primary key refuses a second row, on PostgreSQL after waiting for the other replica's
        transaction to end, so exactly one of two racing ticks commits an occurrence.

        The runs of these occurrences and their outbox rows are new too (their ids derive from the
        occurrence, and were written only with its ledger row), so PostgreSQL takes them by COPY,
        several times faster than row-by-row statements; the rest of the step (runs a care action
        started or woke) goes through the usual upserts. Should a care run be there anyway (a
        ledger row deleted by hand), the transaction is written again the usual way."""
        if not items:
            return True
        ordered = sorted(items, key=lambda item: item[0].key)  # one lock order for every replica
        ledger = [
            {
                "process": o.process,
                "object": o.object,
                "record_id": o.record_id,
                "occurrence": o.occurrence,
                "status": o.status,
                "claimed_at": now,
                "done_at": now,
                "owner": owner,
                "config_version": o.config_version,
            }
            for o, _ in ordered
        ]
        plan = rows.plan_batch([p for _, p in items], now)
        ours = {f"care:{o.process}:{o.object}:{o.record_id}:{o.occurrence}" for o, _ in items}  # care.run_id
        new_runs = [row for run_id, row in plan.runs.items() if run_id in ours]
        new_outbox = [row for row in plan.outbox.values() if row["run_id"] in ours]
        other_runs = [row for run_id, row in plan.runs.items() if run_id not in ours]
        other_outbox = [row for row in plan.outbox.values() if row["run_id"] not in ours]
        taken: tuple[type[BaseException], ...] = (sa.exc.IntegrityError,)
        if self._postgres:
            import psycopg

            taken = (sa.exc.IntegrityError, psycopg.errors.IntegrityError)
        for fast in (True, False) if self._postgres else (False,):
            try:
                with self._write_lock, self._writer.begin() as conn:
                    if fast:
                        self._copy(conn, care_occurrences, ledger)
                        self._copy(conn, runs, new_runs)
                        self._copy(conn, outbox, new_outbox)
                    else:
                        self._many(conn, self._insert_ledger, ledger)
                        self._many(conn, self._upsert_runs, new_runs)
                        self._many(conn, self._insert_outbox, new_outbox)
                    self._many(conn, self._upsert_records, plan.records.values())
                    self._write_dates(conn, plan.records.values())
                    self._many(conn, self._upsert_runs, other_runs)
                    self._many(conn, self._upsert_timers, plan.timer_upserts)
                    self._many(conn, self._insert_outbox, other_outbox)
                    self._many(conn, self._upsert_allocations, plan.allocations.values())
                    self._many(conn, self._insert_stage_entries, plan.stage_entries)
                    self._many(conn, self._insert_notes, plan.notes.values())
                return True
            except taken:
                if self.care_done([o.key for o, _ in items]):
                    return False  # another tick committed some of them first
                if not fast:
                    raise  # not a taken occurrence: a real error
        return False  # unreachable: the last attempt returns or raises

    def _copy(self, conn: Connection, table: sa.Table, new: Sequence[Mapping[str, Any]]) -> None:
        """PostgreSQL ``COPY`` of new rows (a duplicate key fails the transaction, as an INSERT would)."""
        if not new:
            return
        names = list(new[0])
        dumps = getattr(self.engine.dialect, "_json_serializer", None) or json.dumps
        convert = [dumps if isinstance(table.c[n].type, sa.JSON) else None for n in names]
        columns = ", ".join(f'"{n}"' for n in names)
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
            for row in new:
                copy.write_row([f(row[n]) if f is not None else row[n] for n, f in zip(names, convert, strict=True)])

    def care_done(self, keys: Sequence[tuple[str, str, str, str]]) -> set[tuple[str, str, str, str]]:
        """Which of these occurrences the ledger holds (in any status): primary-key lookups."""
        c = care_occurrences.c
        groups: dict[tuple[str, str, str], list[str]] = {}
        for process, object_, record_id, occurrence in keys:
            groups.setdefault((process, object_, occurrence), []).append(record_id)
        found: set[tuple[str, str, str, str]] = set()
        with self.engine.connect() as conn:
            for (process, object_, occurrence), ids in groups.items():
                for part in chunks(sorted(set(ids))):
                    stmt = sa.select(c.record_id).where(
                        c.process == process, c.object == object_, c.record_id.in_(part), c.occurrence == occurrence
                    )
                    found.update((process, object_, id_, occurrence) for id_ in conn.execute(stmt).scalars())
        return found

    def care_summary(self, process: str) -> CareSummary:
        c = care_occurrences.c
        with self.engine.connect() as conn:
            counts: dict[Any, Any] = dict(
                conn.execute(sa.select(c.status, sa.func.count()).where(c.process == process).group_by(c.status)).all()
            )
            last = conn.execute(sa.select(sa.func.max(c.done_at)).where(c.process == process)).scalar()
        if isinstance(last, str):  # max() over SQLite text loses the column type
            last = datetime.fromisoformat(last)
        return CareSummary(counts={str(k): int(v) for k, v in counts.items()}, last_done_at=last)
