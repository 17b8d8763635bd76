"""``Purging`` on SQL: each kind's old rows, oldest first, a bounded batch per short transaction.

A batch is found on a read connection (one range of a 0012 index), then deleted by primary key
under the writer lock with its conditions checked again, so the lock (SQLite) or the row locks
(PostgreSQL) are held for the delete only, never for the search. A purge racing another replica's
removes each row once. ``reclaim_space`` runs ``PRAGMA incremental_vacuum``, which gives free
pages back on a file with ``auto_vacuum=INCREMENTAL`` (new files have it, see ``engines.py``;
``flowctl db vacuum`` converts an old one) and does nothing on other files.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from flowctl.engine.state import ACTIVE
from flowctl.ports import PurgeKind
from flowctl.store.rows import utc
from flowctl.store.sql.base import SqlBase
from flowctl.store.tables import care_days, care_occurrences, changes, outbox, runs


def run_time(moment: datetime) -> str:
    """A cut-off for ``runs.updated_at``, which holds the engine's ``isoformat()`` text in UTC."""
    return utc(moment).isoformat(timespec="microseconds")


class SqlPurging(SqlBase):
    def _old(self, kind: PurgeKind, before: datetime) -> list[tuple[Any, Any, Any]]:
        """(key column, condition, order) of what is old enough, per table of ``kind``."""
        c, r, o, k = changes.c, runs.c, outbox.c, care_occurrences.c
        if kind == "changes":
            newer = sa.alias(changes, "newer")
            has_newer = (
                sa.select(newer.c.seq)
                .where(newer.c.object == c.object, newer.c.record_id == c.record_id, newer.c.seq > c.seq)
                .exists()
            )  # the newest change of each record stays
            # processed_at is set only when a change is finished (done or failed), so the range of its
            # index is the whole search; a status test here would lead SQLite to the (status, seq) index
            return [(c.seq, sa.and_(c.processed_at < before, has_newer), c.processed_at)]
        if kind == "runs":
            return [(r.id, sa.and_(r.updated_at < run_time(before), r.status.not_in(ACTIVE)), r.updated_at)]
        if kind == "messages":
            sent = sa.and_(o.status == "sent", o.sent_at < before)
            cancelled = sa.and_(o.status == "cancelled", o.created_at < before)
            return [(o.id, sent, o.sent_at), (o.id, cancelled, o.created_at)]
        day = utc(before).date().isoformat()
        keys = sa.tuple_(k.process, k.object, k.record_id, k.occurrence)
        done = sa.and_(k.done_at < before, k.status != "claimed")
        days = sa.tuple_(care_days.c.process, care_days.c.day)
        return [(keys, done, k.done_at), (days, care_days.c.day < day, care_days.c.day)]

    def purge(self, kind: PurgeKind, before: datetime, limit: int = 1000) -> int:
        removed = 0
        for key, condition, order in self._old(kind, before):
            left = limit - removed
            if left <= 0:
                break
            table = _table_of(key)
            columns = list(key.clauses) if isinstance(key, sa.Tuple) else [key]
            with self.engine.connect() as conn:
                found = [
                    tuple(row) for row in conn.execute(sa.select(*columns).where(condition).order_by(order).limit(left))
                ]
            if not found:
                continue
            match = key.in_(found) if isinstance(key, sa.Tuple) else key.in_([f[0] for f in found])
            with self._write_lock, self._writer.begin() as conn:
                removed += conn.execute(sa.delete(table).where(match, condition)).rowcount
        return removed

    def purgeable(self, kind: PurgeKind, before: datetime) -> int:
        with self.engine.connect() as conn:
            return sum(
                int(conn.execute(sa.select(sa.func.count()).select_from(_table_of(key)).where(condition)).scalar_one())
                for key, condition, _ in self._old(kind, before)
            )

    def reclaim_space(self, pages: int = 2048) -> int:
        if self.dialect != "sqlite":
            return 0
        with self._write_lock, self.engine.connect() as conn:
            # executescript steps the pragma to the end; execute() would free one page per call
            raw: Any = conn.connection.dbapi_connection
            raw.executescript(f"PRAGMA incremental_vacuum({max(int(pages), 0)});")
            return int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())


def _table_of(key: Any) -> sa.Table:
    column = key.clauses[0] if isinstance(key, sa.Tuple) else key
    table = column.table
    assert isinstance(table, sa.Table)
    return table
