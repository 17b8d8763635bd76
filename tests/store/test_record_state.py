"""The ``RecordState`` contract: what the engine reads, one at a time and for a whole batch."""

from __future__ import annotations

from dataclasses import replace

from flowctl.engine.state import Record, Step
from flowctl.ports import Processed, Store
from tests.store.contract import T0, run


def test_batch_reads_match_the_single_ones(store: Store) -> None:
    recs = [Record(object="deal", id="7"), Record(object="deal", id="8", stage="won"), Record(object="lead", id="7")]
    runs = [
        run(id="r2", seq=2),
        run(id="r1", seq=1),
        run(id="r3", seq=3, status="done"),
        replace(run(id="r4", seq=4), record_id="8"),
    ]
    store.commit_batch([Processed(step=Step(records={r.key: r for r in recs}, runs={r.id: r for r in runs}))], T0)
    keys = [("deal", "7"), ("deal", "8"), ("lead", "7"), ("deal", "9"), ("deal", "7")]
    assert store.records_of(keys) == {r.key: r for r in recs}
    active = store.active_runs_of(keys)
    assert active == {key: store.active_runs(*key) for key in keys}
    assert [r.id for r in active[("deal", "7")]] == ["r1", "r2"]
    assert active[("deal", "9")] == []
    assert store.records_of([]) == {} and store.active_runs_of([]) == {}


def test_open_records_owned_are_counted_per_user_without_deleted_final_or_other_objects(store: Store) -> None:
    def deal(id: str, owner: str, stage: str = "new", pipeline: str = "sales", deleted: bool = False) -> Record:
        return Record(object="deal", id=id, owner=owner, stage=stage, pipeline=pipeline, deleted=deleted, version=1)

    recs = [
        deal("1", "lan"),
        deal("2", "lan", stage="won"),
        deal("3", "lan", stage="won", pipeline="recare"),
        deal("4", "lan", stage="", pipeline=""),
        deal("5", "minh", stage="lost"),
        deal("6", "minh", deleted=True),
        deal("7", "tuan"),
        deal("8", ""),
        Record(object="contact", id="1", owner="minh"),
    ]
    store.commit_batch([Processed(step=Step(records={r.key: r for r in recs}))], T0)
    final = [("sales", "won"), ("sales", "lost")]  # won is final in sales only
    assert store.open_owned("deal", ["lan", "minh", "hoa"], final) == {"lan": 3, "minh": 0, "hoa": 0}
    assert store.open_owned("deal", ["tuan", "lan"], []) == {"tuan": 1, "lan": 4}
    assert store.open_owned("contact", ["minh"], final) == {"minh": 1}
    assert store.open_owned("deal", [], final) == {}
