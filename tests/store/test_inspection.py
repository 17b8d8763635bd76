"""The ``Inspection`` contract: listings, gauges and history as the CLI, ``/metrics`` and replay read them."""

from __future__ import annotations

from datetime import timedelta

from flowctl.engine.state import Record, Step
from flowctl.ports import Processed, Store
from flowctl.store import MemoryStore, open_store
from tests.store.contract import T0, change, effect, run, timer


def test_listing_records_and_runs(store: Store) -> None:
    recs = [Record(object="deal", id=f"{i:02}", stage="new" if i % 2 else "won") for i in range(6)]
    gone = Record(object="deal", id="99", deleted=True)
    runs = [run(id=f"r{i}", seq=i, status="done" if i == 2 else "waiting") for i in range(4)]
    step = Step(
        records={r.key: r for r in [*recs, gone, Record(object="contact", id="c")]}, runs={r.id: r for r in runs}
    )
    store.commit_batch([Processed(step=step)], T0)
    assert [r.id for r in store.list_records("deal")] == ["00", "01", "02", "03", "04", "05"]
    assert [r.id for r in store.list_records("deal", stage="new")] == ["01", "03", "05"]
    assert [r.id for r in store.list_records("deal", limit=2, after="01")] == ["02", "03"]
    assert store.record("deal", "99") == gone
    assert [r.id for r in store.list_runs()] == ["r3", "r2", "r1", "r0"]
    assert [r.id for r in store.list_runs(limit=2, status="waiting")] == ["r3", "r1"]
    assert [r.id for r in store.list_runs(object="deal", record_id="7", status="done")] == ["r2"]
    assert store.list_runs(record_id="8") == []
    assert [r.id for r in store.active_runs("deal", "7")] == ["r0", "r1", "r3"]


def test_queue_counts_give_the_outbox_lag_from_the_earliest_due_row(store: Store) -> None:
    """``flowctl_outbox_lag_seconds``: the earliest pending or retry row's due time; sent, dead and
    sending rows do not count."""
    assert store.queue_counts()["oldest_due_at"] is None
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2")]))], T0)
    assert store.queue_counts()["oldest_due_at"] == T0
    first, second = store.claim_outbox(T0, 10, "w1", 30)
    assert store.queue_counts()["oldest_due_at"] is None  # both in a sender's hands
    store.mark_failed(first.id, "busy", T0 + timedelta(minutes=5), T0)
    store.mark_sent(second.id, T0)
    assert store.queue_counts()["oldest_due_at"] == T0 + timedelta(minutes=5)


def test_open_store_gives_a_memory_store_or_a_migrated_sql_store(db_url: str) -> None:
    store = open_store(db_url)
    try:
        assert isinstance(store, MemoryStore) == (db_url == "memory://")
        assert store.counts()["records"] == 0
    finally:
        store.close()


def test_replay_reads_changes_after_a_seq_and_the_outbox_of_a_window(store: Store) -> None:
    appended = store.append_changes([change("1", "k1"), change("2", "k2"), change("3", "k3")])
    assert [c.idempotency_key for c in store.changes_after(0)] == ["k1", "k2", "k3"]
    assert [c.idempotency_key for c in store.changes_after(appended[0].seq, limit=1)] == ["k2"]
    assert store.changes_after(appended[2].seq) == []
    store.commit_batch([Processed(step=Step(effects=[effect("e1")]))], T0)
    store.commit_batch([Processed(step=Step(effects=[effect("e2"), effect("e3")]))], T0 + timedelta(hours=1))
    assert [r.key for r in store.outbox_between(T0, T0 + timedelta(hours=1))] == ["e1"]  # the end is left out
    assert [r.key for r in store.outbox_between(T0, T0 + timedelta(hours=2))] == ["e1", "e2", "e3"]
    assert store.outbox_between(T0 - timedelta(hours=1), T0) == []


def test_the_outbox_is_listed_newest_first_and_a_row_read_by_id(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2"), effect("e3")]))], T0)
    e1, _, _ = store.claim_outbox(T0, 10, "d", 60)
    store.mark_sent(e1.id, T0)
    assert [r.key for r in store.list_outbox()] == ["e3", "e2", "e1"]
    assert [r.key for r in store.list_outbox(status="sending")] == ["e3", "e2"]
    assert [r.key for r in store.list_outbox(limit=1)] == ["e3"]
    row = store.outbox_row(e1.id)
    assert row is not None and (row.key, row.status, row.sent_at, row.recipient) == ("e1", "sent", T0, "a@example.com")
    assert store.outbox_row(e1.id + 1000) is None


def test_counts_give_every_gauge_even_when_zero(store: Store) -> None:
    zero = store.counts()
    assert set(zero) >= {"records", "timers", "changes_pending", "outbox_pending", "runs_waiting"}
    assert not any(zero.values())
    store.append_changes([change("1", "k1"), change("2", "k2")])
    store.claim_changes(1, "w", T0, 30)
    recs = {("deal", "1"): Record(object="deal", id="1"), ("deal", "2"): Record(object="deal", id="2", deleted=True)}
    step = Step(
        records=recs,
        runs={"r1": run("r1"), "r2": run("r2", status="done")},
        timers=[timer("t1", T0)],
        effects=[effect("e1"), effect("e2")],
    )
    store.commit_batch([Processed(step=step)], T0)
    store.claim_outbox(T0, 1, "d", 60)
    counts = store.counts()
    assert (counts["records"], counts["timers"], counts["runs_waiting"]) == (2, 1, 1)
    assert (counts["changes_pending"], counts["changes_claimed"]) == (1, 1)
    assert (counts["outbox_pending"], counts["outbox_sending"]) == (1, 1)
