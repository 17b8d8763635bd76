"""On SQLite a claim reads ``limit`` rows per status, not the whole backlog.

A single ``status = 'pending' OR …  ORDER BY id`` made SQLite gather every due row and sort it
(a multi-index OR), so a daemon behind on its sends spent 50 ms a claim at 64,000 pending
messages and fell further behind. The plan, not a timing, is what is checked.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from flowctl.store import open_store
from flowctl.store.sql.base import CLAIMABLE_OUTBOX
from flowctl.store.sql.outbox import due_ids_per_status


def plan(database: Path, statement: sa.Select[tuple[int]]) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{database}")
    compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    try:
        with engine.connect() as conn:
            return [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")]
    finally:
        engine.dispose()


def test_each_status_is_walked_in_id_order_and_stops_at_the_limit(tmp_path: Path) -> None:
    database = tmp_path / "flowctl.db"
    open_store(f"sqlite:///{database}").close()
    for statement in (due_ids_per_status(), due_ids_per_status(["sms"])):
        steps = plan(database, statement.params(now=None, limit=64))
        assert not any("MULTI-INDEX OR" in step for step in steps), steps
        assert not any(step.startswith("SCAN outbox") for step in steps), steps
        searches = [step for step in steps if step.startswith("SEARCH outbox") and "ix_outbox_status_" in step]
        # one indexed search per claimable status, and one for the sends whose lease ran out
        assert len(searches) == len(CLAIMABLE_OUTBOX) + 1, steps
        assert "ix_outbox_status_id" in searches[0], steps  # the pending backlog is walked in id order
