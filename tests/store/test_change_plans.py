"""On SQLite a change claim, and the hot path's look for what holds a record back, read what
they need on their indexes, however long the pending backlog.

The claim sends the seqs it planned as one JSON array (one statement, compiled once). Beside
``status = 'pending' OR …`` SQLite's planner cannot tell that array is short, and it chose the
status index: a walk through every pending change on each claim. The plan, not a timing, is
what is checked, on a store with a backlog and statistics (as ``PRAGMA optimize`` leaves them).
The hot path's check used to read every open change to find the records they hold back: 3,000
rows under the write lock for each one-change write while a backlog waited; and it found a
record's leased timer through the index of due timers, every timer already due (migration 0013
indexes timers by record).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowctl.ports import NewChange
from flowctl.store import open_store
from flowctl.store.sql import SqlStore
from flowctl.store.tables import UtcDateTime


def backlog(database: Path) -> SqlStore:
    """A SQLite store with 3,000 pending changes, of records d0 to d2999."""
    store = open_store(f"sqlite:///{database}")
    assert isinstance(store, SqlStore)
    store.append_changes(
        [NewChange(object="deal", record_id=f"d{n}", op="put", idempotency_key=f"k{n}") for n in range(3000)]
    )
    return store


def plan(database: Path, prepared: tuple[str, list[Any]] | None) -> list[str]:
    """SQLite's plan for a statement ``SqlBase._prepare`` made, with statistics gathered first."""
    assert prepared is not None
    sql, (binds,) = prepared
    with sqlite3.connect(database) as conn:
        conn.execute("ANALYZE")
        return [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", binds)]


def test_the_claimed_changes_are_read_by_seq_not_by_walking_the_pending_backlog(tmp_path: Path) -> None:
    database = tmp_path / "flowctl.db"
    store = backlog(database)
    now = datetime.now(UTC)
    try:
        listed = {"seqs_json": "[1, 2, 3]", "now": now, "owner": "w", "until": now}
        prepared = store._prepare(store._claim_listed_changes, [listed])
        claimed = store.claim_changes(3, "w", now, 30)
    finally:
        store.close()
    assert [change.seq for change in claimed] == [1, 2, 3]
    steps = plan(database, prepared)
    assert any(step.startswith("SEARCH changes USING INTEGER PRIMARY KEY") for step in steps), steps
    assert not any("ix_changes_status" in step or "MULTI-INDEX OR" in step for step in steps), steps


def test_the_hot_paths_check_reads_the_records_own_changes_not_the_backlog(tmp_path: Path) -> None:
    database = tmp_path / "flowctl.db"
    store = backlog(database)
    try:
        params = {"object": "deal", "id": "new", "before": 3000, "now": datetime.now(UTC)}
        prepared = store._prepare(store._held_back_record, [params])
    finally:
        store.close()
    steps = plan(database, prepared)
    assert any("SEARCH changes USING INDEX ix_changes_object_record_id_seq" in step for step in steps), steps
    assert not any(step.startswith("SCAN changes") or "ix_changes_status" in step for step in steps), steps


def test_the_hot_paths_check_reads_the_records_own_timers_not_every_timer_due(tmp_path: Path) -> None:
    database = tmp_path / "flowctl.db"
    store = backlog(database)
    now = datetime.now(UTC)
    stamp = UtcDateTime().process_bind_param(now - timedelta(hours=1), store.engine.dialect)
    with sqlite3.connect(database) as conn:  # 3,000 delayed messages due an hour ago (a restart after a stop)
        conn.executemany(
            "INSERT INTO timers (id, run_id, due, kind, node, object, record_id, attempts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
            [(f"t{n}", f"r{n}", stamp, "delay", "wait", "deal", f"d{n}") for n in range(3000)],
        )
    try:
        params = {"object": "deal", "id": "new", "before": 3000, "now": now}
        prepared = store._prepare(store._held_back_record, [params])
    finally:
        store.close()
    steps = plan(database, prepared)
    assert any("SEARCH timers USING INDEX ix_timers_object_record_id" in step for step in steps), steps
    assert not any("ix_timers_due" in step or step.startswith("SCAN timers") for step in steps), steps
