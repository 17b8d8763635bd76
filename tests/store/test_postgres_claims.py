"""PostgreSQL claimers run side by side: rows another transaction holds are skipped, never waited
for, and a record's later changes are not handed out past a skipped earlier one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from flowctl.engine.state import Step, Timer
from flowctl.ports import NewChange, Processed
from flowctl.store.sql import SqlStore
from flowctl.store.tables import changes, timers

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(pg_store: SqlStore) -> SqlStore:
    return pg_store


def test_a_change_locked_by_another_claimer_holds_back_its_record_only(store: SqlStore) -> None:
    store.append_changes(
        [
            NewChange(object="deal", record_id=rec, op="patch", idempotency_key=key)
            for rec, key in (("A", "a1"), ("A", "a2"), ("B", "b1"))
        ]
    )
    with store.engine.connect() as other:
        # another claimer is between locking a1 and committing its claim
        other.execute(sa.select(changes.c.seq).where(changes.c.idempotency_key == "a1").with_for_update())
        claimed = store.claim_changes(10, "w2", T0, 30)
        assert [c.idempotency_key for c in claimed] == ["b1"]
        other.rollback()
    assert [c.idempotency_key for c in store.claim_changes(10, "w3", T0, 30)] == ["a1", "a2"]


def test_a_timer_locked_by_another_claimer_is_skipped(store: SqlStore) -> None:
    step = Step(timers=[Timer(id=i, run_id="r", due=T0, kind="delay") for i in ("t1", "t2")])
    store.commit_batch([Processed(step=step)], T0)
    with store.engine.connect() as other:
        other.execute(sa.select(timers.c.id).where(timers.c.id == "t1").with_for_update())
        assert [t.id for t in store.claim_due_timers(T0, 10, "w2", 30)] == ["t2"]
        other.rollback()
