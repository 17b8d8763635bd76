"""The ``Purging`` contract: old rows go a batch at a time, and never one a guarantee still needs.

One test per guarantee: the newest change of each record and changes not yet processed stay; an
idempotency key stays a duplicate while its change is kept; open runs and their timers stay;
messages that may still go, and dead ones, stay; claimed care occurrences stay, and a done one
keeps its occurrence from running twice until its cut-off.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from flowctl.engine.state import Step
from flowctl.ports import CareOccurrence, Processed, Store
from flowctl.store import open_store
from tests.store.contract import T0, change, done, effect, run, timer

DAY = timedelta(days=1)


def processed(store: Store, *keys: tuple[str, str], at: timedelta = timedelta(0)) -> None:
    """Append changes (record id, key) and process them at ``T0 + at``."""
    store.append_changes([change(record_id, key) for record_id, key in keys])
    store.commit_batch(done(*store.claim_changes(100, "w1", T0 + at, 30)), T0 + at)


def keys_of(store: Store, record_id: str) -> list[str]:
    return [c.idempotency_key for c in store.record_changes("deal", record_id)]


def test_processed_changes_go_but_the_newest_of_each_record_and_open_ones_stay(store: Store) -> None:
    processed(store, ("7", "k1"), ("7", "k2"), ("8", "k3"))
    processed(store, ("7", "k4"), at=3 * DAY)  # processed later: younger than the cut-off
    store.append_changes([change("9", "k5"), change("9", "k6")])  # never processed
    assert store.purgeable("changes", T0 + DAY) == 2
    assert store.purge("changes", T0 + DAY) == 2
    assert keys_of(store, "7") == ["k4"] and keys_of(store, "8") == ["k3"]  # k3: the newest of record 8
    assert keys_of(store, "9") == ["k5", "k6"]
    assert store.purge("changes", T0 + DAY) == 0 and store.purgeable("changes", T0 + DAY) == 0


def test_an_idempotency_key_is_a_duplicate_while_its_change_is_kept(store: Store) -> None:
    processed(store, ("7", "k1"), ("7", "k2"))
    assert store.purge("changes", T0) == 0  # processed at T0: not before it
    again = store.append_changes([change("7", "k1")])[0]
    assert again.duplicate and again.seq == 1
    assert store.purge("changes", T0 + DAY) == 1
    after = store.append_changes([change("7", "k1")])[0]  # the window is over: a new change
    assert not after.duplicate and after.seq > 2  # a seq is never handed out twice


def test_open_runs_and_their_timers_stay(store: Store) -> None:
    runs = [run("r-done", "done"), run("r-failed", "failed"), run("r-cancelled", "cancelled"), run("r-wait", "waiting")]
    runs.append(run("r-queued", "queued"))
    step = Step(runs={r.id: r for r in runs}, timers=[timer("t1", T0 + 40 * DAY, run_id="r-wait")])
    store.commit_batch([Processed(step=step)], T0)
    late = replace(run("r-late", "done"), updated_at=(T0 + 2 * DAY).isoformat())
    store.commit_batch([Processed(step=Step(runs={late.id: late}))], T0)
    assert store.purgeable("runs", T0 + DAY) == 3
    assert store.purge("runs", T0 + DAY, limit=2) == 2  # a batch at a time
    assert store.purge("runs", T0 + DAY) == 1
    assert {r.id for r in store.list_runs(limit=10)} == {"r-wait", "r-queued", "r-late"}
    assert [t.id for t in store.timers_of("r-wait")] == ["t1"]


def test_sent_and_cancelled_messages_go_but_waiting_held_and_dead_ones_stay(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect(f"e{i}") for i in range(1, 7)]))], T0)
    e1, e2, e3, e4, e5, e6 = store.claim_outbox(T0, 10, "d1", 60)
    store.mark_sent(e1.id, T0)
    store.mark_failed(e2.id, "550 no such user", None, T0)  # dead: waits for a person
    store.mark_failed(e3.id, "421 later", T0 + timedelta(hours=1), T0)  # retry
    store.hold_outbox_many([(e4.id, T0 + 60 * DAY, "held: budget")], T0)
    store.release_outbox([e5.id], T0)
    store.cancel_outbox(e5.id, T0)
    store.mark_sent(e6.id, T0 + 2 * DAY)  # sent later
    assert store.purgeable("messages", T0 + DAY) == 2
    assert store.purge("messages", T0 + DAY) == 2
    left = {row.key: row.status for row in store.list_outbox(limit=10)}
    assert left == {"e2": "dead", "e3": "retry", "e4": "held", "e6": "sent"}


def occurrence(record_id: str, status: str = "sent") -> CareOccurrence:
    return CareOccurrence(
        process="birthday", object="contact", record_id=record_id, occurrence="2026-03-01", status=status
    )


def test_a_done_care_occurrence_keeps_it_from_running_twice_until_its_cut_off(store: Store) -> None:
    assert store.insert_care([(occurrence("c1"), Processed())], "a", T0)
    assert store.claim_occurrences([occurrence("c2", "claimed")], "a", T0) == [occurrence("c2", "claimed")]
    store.pin_care_day("birthday", "2026-02-27", "v1")
    store.pin_care_day("birthday", "2026-03-05", "v1")
    assert store.purgeable("care", T0) == 1  # the pin of 27 February; c1 was done at T0, not before
    assert store.purge("care", T0) == 1
    assert not store.insert_care([(occurrence("c1"), Processed())], "b", T0)  # still once
    assert store.purge("care", T0 + DAY) == 1
    assert store.care_done([occurrence("c1").key, occurrence("c2").key]) == {occurrence("c2").key}  # claimed stays
    assert store.pin_care_day("birthday", "2026-03-05", "v2") == "v1"  # a pin of a later day stays
    assert store.pin_care_day("birthday", "2026-02-27", "v2") == "v2"


def test_reclaiming_space_reports_the_free_pages_left(store: Store) -> None:
    processed(store, *((str(i % 3), f"k{i}") for i in range(30)))
    assert store.purge("changes", T0 + DAY) == 27
    assert store.reclaim_space() == 0  # every free page given back (none to give on PostgreSQL or memory)


def test_a_new_sqlite_file_gives_purged_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "flowctl.db"
    store = open_store(f"sqlite:///{path}")
    try:
        big = [replace(change(str(i), f"k{i}"), fields={"text": "x" * 4000}) for i in range(400)]
        store.append_changes(big)
        store.commit_batch(done(*store.claim_changes(1000, "w1", T0, 30)), T0)
        processed(store, *((str(i), f"n{i}") for i in range(400)), at=timedelta(seconds=1))  # newer, kept
        assert store.purge("changes", T0 + timedelta(milliseconds=500), limit=1000) == 400
        engine = store.engine  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one() == 2  # INCREMENTAL
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        assert free > 300  # about one 4 KiB page per purged change
        assert store.reclaim_space(pages=100_000) == 0
    finally:
        store.close()
