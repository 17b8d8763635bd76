"""What the database holds, per kind: rows (by status where a status says what may be purged),
bytes on disk, and the file or relation sizes. ``flowctl db stats`` prints it beside what the next
purge would remove; a SQL store only (``memory://`` holds nothing to measure).

Sizes: SQLite's ``dbstat`` table gives the pages of every table and index, counted to their table;
PostgreSQL's ``pg_total_relation_size`` the same with TOAST. Both are exact for the pages; "free"
on SQLite is the pages a purge left that ``reclaim_space`` (or ``flowctl db vacuum``) gives back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from flowctl.store.tables import metadata

#: Each kind ``flowctl db stats`` shows: its table, and the column whose values it counts rows by.
KINDS: dict[str, tuple[str, str | None]] = {
    "changes": ("changes", "status"),
    "runs": ("runs", "status"),
    "timers": ("timers", None),
    "messages": ("outbox", "status"),
    "care": ("care_occurrences", "status"),
    "care_days": ("care_days", None),
    "records": ("records", "deleted"),
    "notes": ("notes", None),
    "stage_entries": ("stage_entries", None),
    "record_dates": ("record_dates", None),
    "source_rows": ("source_rows", None),
    "config_versions": ("config_versions", None),
}


@dataclass(frozen=True, slots=True)
class KindStats:
    rows: int
    by: dict[str, int]  # rows per status (records: live/deleted); empty for kinds without one
    bytes: int | None  # table and its indexes on disk; None when the database cannot say


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    dialect: str
    kinds: dict[str, KindStats]
    files: dict[str, int] = field(default_factory=dict)  # SQLite: file, wal; bytes
    free_bytes: int | None = None  # SQLite: pages free inside the file
    auto_vacuum: str = ""  # SQLite: none, full or incremental


def read_stats(engine: sa.Engine) -> DatabaseStats:
    sizes = _sizes(engine)
    kinds = {}
    with engine.connect() as conn:
        for kind, (name, by) in KINDS.items():
            table = metadata.tables[name]
            if by is None:
                counts = {}
                rows = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            else:
                column = table.c[by]
                found = conn.execute(sa.select(column, sa.func.count()).group_by(column)).all()
                counts = {_label(value): int(n) for value, n in found}
                rows = sum(counts.values())
            kinds[kind] = KindStats(rows=rows, by=counts, bytes=sizes.get(name))
        if engine.dialect.name != "sqlite":
            return DatabaseStats(dialect=engine.dialect.name, kinds=kinds)
        page = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
        free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()) * page
        mode = int(conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one())
    path = str(engine.url.database)
    on_disk = (("file", Path(path)), ("wal", Path(f"{path}-wal")))
    files = {name: p.stat().st_size for name, p in on_disk if p.exists()}
    auto = {0: "none", 1: "full", 2: "incremental"}.get(mode, str(mode))
    return DatabaseStats(dialect="sqlite", kinds=kinds, files=files, free_bytes=free, auto_vacuum=auto)


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "deleted" if value else "live"
    return str(value)


def _sizes(engine: sa.Engine) -> dict[str, int]:
    """Bytes per table, its indexes included; {} when the database does not tell."""
    with engine.connect() as conn:
        try:
            if engine.dialect.name == "sqlite":
                found = conn.exec_driver_sql(
                    "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat AS s JOIN sqlite_schema AS m ON m.name = s.name "
                    "GROUP BY m.tbl_name"
                ).all()
            else:
                names = sorted(metadata.tables)
                stmt = sa.text(
                    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                    "WHERE c.relkind = 'r' AND c.relnamespace = to_regnamespace(current_schema())::oid "
                    "AND c.relname IN :names"
                ).bindparams(sa.bindparam("names", expanding=True))
                found = conn.execute(stmt, {"names": names}).all()
        except sa.exc.DBAPIError:
            return {}  # a SQLite built without dbstat
    return {str(name): int(size) for name, size in found}
