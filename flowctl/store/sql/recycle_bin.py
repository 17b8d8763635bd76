"""``RecycleBin`` on SQL: deleted records listed by id, with when; purged when deleted before a
moment, oldest first, a batch at a time."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from flowctl.engine.state import Record
from flowctl.store import rows
from flowctl.store.sql.base import SqlBase, chunks
from flowctl.store.tables import notes, record_dates, records, stage_entries


class SqlRecycleBin(SqlBase):
    def deleted_records(
        self, object: str, after: str = "", limit: int = 100, stage: str = ""
    ) -> list[tuple[Record, datetime | None]]:
        r = records.c
        stmt = records.select().where(r.object == object, r.deleted.is_(True), r.id > after)
        if stage:
            stmt = stmt.where(r.stage == stage)
        with self.engine.connect() as conn:
            found = conn.execute(stmt.order_by(r.id).limit(max(limit, 0)))
            return [(rows.record_from(row._mapping), row._mapping["updated_at"]) for row in found]

    def purge_deleted(self, before: datetime, limit: int = 1000) -> int:
        r = records.c
        due = (
            sa.select(r.object, r.id)
            .where(r.deleted.is_(True), r.updated_at < before)
            .order_by(r.updated_at)
            .limit(max(limit, 0))
        )
        with self._write_lock, self._writer.begin() as conn:
            keys = [(row.object, row.id) for row in conn.execute(due)]
            for part in chunks(keys, 200):
                for table, id_column in (
                    (notes, notes.c.record_id),
                    (stage_entries, stage_entries.c.record_id),
                    (record_dates, record_dates.c.record_id),
                    (records, r.id),
                ):
                    conn.execute(sa.delete(table).where(sa.tuple_(table.c.object, id_column).in_(part)))
        return len(keys)
