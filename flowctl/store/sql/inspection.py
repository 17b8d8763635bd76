"""``Inspection`` on SQL: listings, gauges and history for the CLI, ``/metrics`` and replay.

Reads only, each from an index where the table may be large (gauges read one count per status).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from flowctl.engine.state import ACTIVE, Record, Run, StageEntry
from flowctl.ports import ConfigVersion, Note, OutboxFilter, OutboxRow, RunFilter, StoredChange
from flowctl.store import rows
from flowctl.store.sql.base import SqlBase
from flowctl.store.tables import (
    UtcDateTime,
    changes,
    config_versions,
    notes,
    outbox,
    records,
    runs,
    stage_entries,
    timers,
)


def _ms(at: datetime) -> int:
    """A time as a run's seq counts it: milliseconds since the epoch."""
    return int(at.timestamp() * 1000)


class SqlInspection(SqlBase):
    """The read side: listings, gauges, history."""

    def list_records(
        self, object: str, stage: str = "", limit: int = 100, after: str = "", deleted: bool = False
    ) -> list[Record]:
        """Live (or with ``deleted``, deleted) records of ``object`` by id, from just after ``after``."""
        r = records.c
        stmt = records.select().where(r.object == object, r.deleted.is_(deleted))
        if stage:
            stmt = stmt.where(r.stage == stage)
        if after:
            stmt = stmt.where(r.id > after)
        with self.engine.connect() as conn:
            return [rows.record_from(row._mapping) for row in conn.execute(stmt.order_by(r.id).limit(limit))]

    def list_runs(self, limit: int = 50, status: str = "", object: str = "", record_id: str = "") -> list[Run]:
        """Newest first."""
        stmt = runs.select()
        if status:
            stmt = stmt.where(runs.c.status == status)
        if object:
            stmt = stmt.where(runs.c.object == object)
        if record_id:
            stmt = stmt.where(runs.c.record_id == record_id)
        stmt = stmt.order_by(runs.c.seq.desc(), runs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [rows.run_from(row._mapping) for row in conn.execute(stmt)]

    def list_outbox(self, limit: int = 50, status: str = "") -> list[OutboxRow]:
        """Newest first."""
        stmt = outbox.select()
        if status:
            stmt = stmt.where(outbox.c.status == status)
        stmt = stmt.order_by(outbox.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [rows.outbox_from(row._mapping) for row in conn.execute(stmt)]

    def outbox_row(self, row_id: int) -> OutboxRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(outbox.select().where(outbox.c.id == row_id)).first()
        return rows.outbox_from(row._mapping) if row else None

    def counts(self) -> Mapping[str, int]:
        """Gauges for ``/metrics``: see ``rows.COUNTS`` for the names."""
        count = sa.func.count()
        with self.engine.connect() as conn:
            out = dict.fromkeys(rows.COUNTS, 0)
            out["records"] = conn.execute(sa.select(count).select_from(records)).scalar_one()
            out["timers"] = conn.execute(sa.select(count).select_from(timers)).scalar_one()
            for status in rows.CHANGE_GAUGES:
                stmt = sa.select(count).select_from(changes).where(changes.c.status == status)
                out[f"changes_{status}"] = conn.execute(stmt).scalar_one()
            for status in rows.OUTBOX_GAUGES:
                stmt = sa.select(count).select_from(outbox).where(outbox.c.status == status)
                out[f"outbox_{status}"] = conn.execute(stmt).scalar_one()
            by_status = sa.select(runs.c.status, count).where(runs.c.status.in_(ACTIVE)).group_by(runs.c.status)
            for status, n in conn.execute(by_status):
                out[f"runs_{status}"] = n
        return out

    def queue_counts(self) -> dict[str, Any]:
        """What an operator graphs, each from an index: open changes by status, the oldest open
        change's ``received_at`` (the lag), outbox rows by status except ``sent``, the earliest
        ``next_attempt_at`` of a pending or retry row (the outbox's lag), pending timers."""
        c, o = changes.c, outbox.c
        count = sa.func.count()
        out: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for status in ("pending", "claimed"):
                out[f"changes_{status}"] = conn.execute(
                    sa.select(count).select_from(changes).where(c.status == status)
                ).scalar_one()
            oldest = None
            for status in ("pending", "claimed"):
                seq = conn.execute(sa.select(c.seq).where(c.status == status).order_by(c.seq).limit(1)).scalar()
                if seq is not None and (oldest is None or seq < oldest):
                    oldest = seq
            out["oldest_received_at"] = (
                conn.execute(sa.select(c.received_at).where(c.seq == oldest)).scalar() if oldest is not None else None
            )
            for status in rows.OUTBOX_GAUGES:
                out[f"outbox_{status}"] = conn.execute(
                    sa.select(count).select_from(outbox).where(o.status == status)
                ).scalar_one()
            due = [
                conn.execute(sa.select(sa.func.min(o.next_attempt_at)).where(o.status == status)).scalar()
                for status in ("pending", "retry")
            ]  # each the first entry of the (status, next_attempt_at) index
            out["oldest_due_at"] = min((d for d in due if d is not None), default=None)
            out["timers"] = conn.execute(sa.select(count).select_from(timers)).scalar_one()
        return out

    def changes_after(self, seq: int, limit: int = 1000) -> list[StoredChange]:
        """Up to ``limit`` recorded changes with a seq above ``seq``, in seq order."""
        stmt = changes.select().where(changes.c.seq > seq).order_by(changes.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [rows.change_from(row._mapping) for row in conn.execute(stmt)]

    def outbox_between(self, since: datetime, until: datetime) -> list[OutboxRow]:
        """Outbox rows created in ``[since, until)``, oldest first."""
        o = outbox.c
        stmt = outbox.select().where(o.created_at >= since, o.created_at < until).order_by(o.id)
        with self.engine.connect() as conn:
            return [rows.outbox_from(row._mapping) for row in conn.execute(stmt)]

    def runs_page(self, filter: RunFilter, before: tuple[int, str] | None = None, limit: int = 50) -> list[Run]:
        """Newest first by (seq, id). Each filter has an index ending in (seq, id): (object,
        record_id, …), (status, …), (automation, …) or (seq, id) alone, so a page reads ``limit``
        entries of one index however many runs there are."""
        r = runs.c
        stmt = runs.select()
        if filter.object:
            stmt = stmt.where(r.object == filter.object)
        if filter.record_id:
            stmt = stmt.where(r.record_id == filter.record_id)
        if filter.status:
            stmt = stmt.where(r.status == filter.status)
        if filter.automation:
            stmt = stmt.where(r.automation == filter.automation)
        if filter.since is not None:
            stmt = stmt.where(r.seq >= _ms(filter.since))
        if filter.until is not None:
            stmt = stmt.where(r.seq < _ms(filter.until))
        if before is not None:
            stmt = stmt.where(
                sa.tuple_(r.seq, r.id)
                < sa.tuple_(sa.literal(before[0], sa.BigInteger()), sa.literal(before[1], sa.String()))
            )
        stmt = stmt.order_by(r.seq.desc(), r.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [rows.run_from(row._mapping) for row in conn.execute(stmt)]

    def outbox_page(self, filter: OutboxFilter, before: int | None = None, limit: int = 50) -> list[OutboxRow]:
        """Newest first by id, from the (object, record_id, id), (channel, id) or (status, id) index."""
        o = outbox.c
        stmt = outbox.select()
        for column, value in (
            (o.object, filter.object),
            (o.record_id, filter.record_id),
            (o.channel, filter.channel),
            (o.status, filter.status),
        ):
            if value:
                stmt = stmt.where(column == value)
        if before is not None:
            stmt = stmt.where(o.id < before)
        with self.engine.connect() as conn:
            return [rows.outbox_from(row._mapping) for row in conn.execute(stmt.order_by(o.id.desc()).limit(limit))]

    def _board_filter(self, object: str, pipeline: str, owner: str, q: str) -> list[Any]:
        r = records.c
        where = [r.object == object, r.pipeline == pipeline, r.deleted == sa.false()]  # `=`: indexable
        if owner:
            where.append(r.owner == owner)
        if q:
            needle = q.lower()
            text = sa.func.lower(sa.cast(r.fields, sa.Text))
            where.append(
                sa.or_(sa.func.lower(r.id).contains(needle, autoescape=True), text.contains(needle, autoescape=True))
            )
        return where

    def _number(self, field: str) -> Any:
        """The record's ``field`` as a number when it is a JSON number, else 0."""
        f = records.c.fields
        if self._postgres:
            return sa.case(
                (sa.func.json_typeof(f.op("->")(field)) == "number", sa.cast(f.op("->>")(field), sa.Numeric)),
                else_=0,
            )
        path = '$."' + field.replace('"', '""') + '"'
        return sa.case((sa.func.json_type(f, path).in_(("integer", "real")), sa.func.json_extract(f, path)), else_=0)

    def stage_totals(
        self, object: str, pipeline: str, sum_field: str = "", owner: str = "", q: str = ""
    ) -> dict[str, tuple[int, float]]:
        """One GROUP BY over the (object, pipeline, stage, deleted, id) index; the sum reads the rows."""
        r = records.c
        total = sa.func.sum(self._number(sum_field)) if sum_field else sa.literal(0)
        stmt = (
            sa.select(r.stage, sa.func.count(), total)
            .where(*self._board_filter(object, pipeline, owner, q))
            .group_by(r.stage)
        )
        with self.engine.connect() as conn:
            return {stage: (n, float(s or 0)) for stage, n, s in conn.execute(stmt)}

    def stage_records(
        self, object: str, pipeline: str, stage: str, *, after: str = "", limit: int = 20, owner: str = "", q: str = ""
    ) -> list[tuple[Record, datetime | None]]:
        """By id from the (object, pipeline, stage, deleted, id) index: the first cards of a column of
        60,000 cost what those of a column of 60 do."""
        r = records.c
        stmt = records.select().where(r.stage == stage, *self._board_filter(object, pipeline, owner, q))
        if after:
            stmt = stmt.where(r.id > after)
        with self.engine.connect() as conn:
            found = conn.execute(stmt.order_by(r.id).limit(limit))
            return [(rows.record_from(row._mapping), row.updated_at) for row in found]

    def active_counts(self, prefix: str) -> dict[tuple[str, str], int]:
        """From the (status, seq, id) index: the active runs only, however many have finished."""
        r = runs.c
        stmt = (
            sa.select(r.automation, r.node, sa.func.count())
            .where(r.status.in_(ACTIVE), r.automation.startswith(prefix, autoescape=True))
            .group_by(r.automation, r.node)
        )
        with self.engine.connect() as conn:
            return {(automation, node): n for automation, node, n in conn.execute(stmt)}

    def versions_page(self, before: tuple[datetime, str] | None = None, limit: int = 50) -> list[ConfigVersion]:
        """Newest applied first; the table holds one row per deploy, a few thousand at most."""
        v = config_versions.c
        stmt = config_versions.select()
        if before is not None:
            stmt = stmt.where(
                sa.tuple_(v.applied_at, v.id)
                < sa.tuple_(sa.literal(before[0], UtcDateTime()), sa.literal(before[1], sa.String()))
            )
        stmt = stmt.order_by(v.applied_at.desc(), v.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [rows.version_from(row._mapping) for row in conn.execute(stmt)]

    def record_changes(self, object: str, id: str, limit: int = 1000) -> list[StoredChange]:
        """From the (object, record_id, seq) index."""
        c = changes.c
        stmt = changes.select().where(c.object == object, c.record_id == id).order_by(c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [rows.change_from(row._mapping) for row in conn.execute(stmt)]

    def notes(self, object: str, record_id: str, limit: int = 100) -> list[Note]:
        """Newest first, from the (object, record_id, id) index."""
        n = notes.c
        stmt = notes.select().where(n.object == object, n.record_id == record_id).order_by(n.id.desc())
        with self.engine.connect() as conn:
            return [rows.note_from(row._mapping) for row in conn.execute(stmt.limit(max(limit, 0)))]

    def stage_entries(self, object: str, record_id: str, limit: int = 1000) -> list[StageEntry]:
        """From the (object, record_id, id) index."""
        e = stage_entries.c
        stmt = (
            stage_entries.select()
            .where(e.object == object, e.record_id == record_id)
            .order_by(e.id)
            .limit(max(limit, 0))
        )
        with self.engine.connect() as conn:
            return [rows.stage_entry_from(row._mapping) for row in conn.execute(stmt)]
