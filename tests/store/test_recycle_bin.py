"""The ``RecycleBin`` contract (and the recycle bin's listing): deleted records are listed apart
and forgotten for good only once their retention ended."""

from __future__ import annotations

from datetime import timedelta

from flowctl.engine.state import Effect, Record, StageEntry, Step
from flowctl.ports import Processed, Store
from tests.store.contract import T0


def write(store: Store, *records: Record, at: timedelta = timedelta(0)) -> None:
    store.commit_batch([Processed(step=Step(records={r.key: r for r in records}))], T0 + at)


def test_deleted_records_are_listed_apart_from_live_ones(store: Store) -> None:
    write(store, Record(object="deal", id="1"), Record(object="deal", id="2", deleted=True, stage="won"))
    write(store, Record(object="deal", id="3", deleted=True), Record(object="lead", id="4", deleted=True))
    assert [r.id for r in store.list_records("deal")] == ["1"]
    assert [r.id for r in store.list_records("deal", deleted=True)] == ["2", "3"]
    assert [r.id for r in store.list_records("deal", stage="won", deleted=True)] == ["2"]
    assert [r.id for r in store.list_records("deal", deleted=True, after="2", limit=5)] == ["3"]
    assert store.deleted_records("deal") == [(store.record("deal", "2"), T0), (store.record("deal", "3"), T0)]
    assert [r.id for r, _ in store.deleted_records("deal", after="2", limit=1)] == ["3"]
    assert store.deleted_records("contact") == []


def test_purging_forgets_records_deleted_before_the_moment_with_their_notes_and_history(store: Store) -> None:
    old = Record(object="deal", id="old", deleted=True, fields={"closes": "2020-05-01"})
    note = Effect(key="r:0", action="add_note", run_id="r", object="deal", record_id="old", params={"text": "x"})
    entry = StageEntry(object="deal", record_id="old", pipeline="sales", stage="new", at=T0, key="c1")
    step = Step(records={old.key: old}, effects=[note], stage_entries=[entry])
    store.commit_batch([Processed(step=step)], T0)
    write(store, Record(object="deal", id="recent", deleted=True), at=timedelta(days=20))
    write(store, Record(object="deal", id="live"))
    back = Record(object="deal", id="back", deleted=True)
    write(store, back)
    write(store, Record(object="deal", id="back", version=2), at=timedelta(days=1))  # written again: live

    assert store.purge_deleted(T0 + timedelta(days=10)) == 1
    assert store.record("deal", "old") is None
    assert store.notes("deal", "old") == [] and store.stage_entries("deal", "old") == []
    assert [r.id for r in store.list_records("deal", deleted=True)] == ["recent"]
    assert {r.id for r in store.list_records("deal")} == {"back", "live"}
    assert store.purge_deleted(T0 + timedelta(days=10)) == 0  # nothing more is due


def test_a_purge_takes_at_most_limit_records_oldest_deleted_first(store: Store) -> None:
    for day in (3, 1, 2):
        write(store, Record(object="deal", id=f"d{day}", deleted=True), at=timedelta(days=day))
    assert store.purge_deleted(T0 + timedelta(days=30), limit=2) == 2
    assert [r.id for r in store.list_records("deal", deleted=True)] == ["d3"]
