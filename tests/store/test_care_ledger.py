"""The ``CareLedger`` contract: due records from the date index, and each occurrence run once."""

from __future__ import annotations

from datetime import timedelta

from flowctl.engine.state import Record, StageEntry, Step
from flowctl.ports import CareOccurrence, CareSummary, Processed, Store
from tests.store.contract import T0


def test_an_occurrence_is_claimed_once(store: Store) -> None:
    assert store.claim_occurrence("birthday", "contact", "c1", "2026-03-01", T0)
    assert not store.claim_occurrence("birthday", "contact", "c1", "2026-03-01", T0 + timedelta(hours=1))
    assert store.claim_occurrence("birthday", "contact", "c1", "2027-03-01", T0)
    assert store.claim_occurrence("birthday", "contact", "c2", "2026-03-01", T0)


def occurrence(
    record_id: str, status: str = "claimed", when: str = "2026-03-01", version: str = "v1"
) -> CareOccurrence:
    return CareOccurrence(
        process="birthday",
        object="contact",
        record_id=record_id,
        occurrence=when,
        status=status,
        config_version=version,
    )


def greeted(record_id: str) -> Processed:
    """The step of a care occurrence that wrote its record."""
    record = Record(object="contact", id=record_id, stage="greeted")
    entered = StageEntry(object="contact", record_id=record_id, pipeline="care", stage="greeted", at=T0, key="care")
    return Processed(step=Step(records={record.key: record}, stage_entries=[entered]))


def birthdays(store: Store) -> None:
    recs = [
        Record(object="contact", id="c1", fields={"birthday": "1990-03-01"}),
        Record(object="contact", id="c2", fields={"birthday": "02/03/1985"}),
        Record(object="contact", id="c3", fields={"birthday": "not a date"}),
        Record(object="contact", id="c4", fields={"birthday": "1990-03-01"}, deleted=True),
        Record(object="contact", id="c5"),
        Record(object="deal", id="d1", fields={"birthday": "1990-03-01"}),
    ]
    store.commit_batch([Processed(step=Step(records={r.key: r for r in recs}))], T0)


def test_care_records_are_the_live_records_whose_date_falls_on_the_days(store: Store) -> None:
    birthdays(store)
    assert [r.id for r in store.care_records("contact", "birthday", [301])] == ["c1"]
    assert sorted(r.id for r in store.care_records("contact", "birthday", [301, 302])) == ["c1", "c2"]
    assert [r.id for r in store.care_records("contact", "birthday", [302], on_dates=["1985-03-02"])] == ["c2"]
    assert store.care_records("contact", "birthday", [301], on_dates=["1985-03-01"]) == []
    assert store.care_records("contact", "birthday", []) == []
    assert store.care_records("contact", "anniversary", [301]) == []
    [c1] = store.care_records("contact", "birthday", [301])
    assert c1.fields == {"birthday": "1990-03-01"}
    moved = Record(object="contact", id="c1", fields={"birthday": "1990-04-01"})
    store.commit_batch([Processed(step=Step(records={moved.key: moved}))], T0)  # a new date moves it in the index
    assert store.care_records("contact", "birthday", [301]) == []
    assert [r.id for r in store.care_records("contact", "birthday", [401])] == ["c1"]


def test_records_without_a_usable_date_are_counted_and_cron_processes_page_through_ids(store: Store) -> None:
    birthdays(store)
    assert store.care_undated("contact", "birthday") == (4, 2)  # c3 (not a date) and c5 (none); c4 is deleted
    assert store.care_undated("contact", "anniversary") == (4, 4)
    assert store.care_undated("lead", "birthday") == (0, 0)
    assert store.record_ids("contact") == ["c1", "c2", "c3", "c5"]
    assert store.record_ids("contact", after="c2", limit=1) == ["c3"]
    assert store.record_ids("contact", after="c5") == []


def test_a_care_day_runs_on_the_version_pinned_first(store: Store) -> None:
    assert store.pin_care_day("birthday", "2026-03-01", "v1") == "v1"
    assert store.pin_care_day("birthday", "2026-03-01", "v2") == "v1"  # a reload that day keeps the pin
    assert store.pin_care_day("birthday", "2026-03-02", "v2") == "v2"
    assert store.pin_care_day("welcome", "2026-03-01", "v3") == "v3"


def test_occurrences_are_won_once_and_a_dead_claimers_are_taken_over(store: Store) -> None:
    won = store.claim_occurrences([occurrence("c1"), occurrence("c2")], "a", T0)
    assert sorted(o.record_id for o in won) == ["c1", "c2"]
    later = T0 + timedelta(seconds=60)
    assert [o.record_id for o in store.claim_occurrences([occurrence("c1"), occurrence("c3")], "b", later)] == ["c3"]
    assert store.claim_occurrences([], "b", later) == []
    assert store.care_done([occurrence("c1").key, occurrence("c9").key]) == {occurrence("c1").key}
    assert store.care_done([]) == set()
    assert store.reclaim_occurrences("b", T0 + timedelta(seconds=30), 60, 10) == []  # a's lease still runs
    taken = store.reclaim_occurrences("b", T0 + timedelta(seconds=61), 60, 10)
    assert sorted((o.record_id, o.config_version) for o in taken) == [("c1", "v1"), ("c2", "v1")]  # not c3: b's own
    assert len(store.reclaim_occurrences("c", T0 + timedelta(seconds=200), 60, 1)) == 1  # at most ``limit``


def test_an_outcome_is_committed_only_by_the_claims_holder_with_its_step(store: Store) -> None:
    store.claim_occurrences([occurrence("c1"), occurrence("c2")], "a", T0)
    store.reclaim_occurrences("b", T0 + timedelta(seconds=61), 60, 10)  # b took both over
    done_at = T0 + timedelta(seconds=70)
    assert store.commit_care([(occurrence("c1", status="sent"), greeted("c1"))], "a", done_at) == 0  # a lost it
    assert store.record("contact", "c1") is None
    assert store.stage_entries("contact", "c1") == []
    assert store.commit_care([(occurrence("c1", status="sent"), greeted("c1"))], "b", done_at) == 1
    assert store.record("contact", "c1") == Record(object="contact", id="c1", stage="greeted")
    assert [e.stage for e in store.stage_entries("contact", "c1")] == ["greeted"]  # in the same transaction
    assert store.commit_care([], "b", done_at) == 0
    summary = store.care_summary("birthday")
    assert dict(summary.counts) == {"sent": 1, "claimed": 1}
    assert summary.last_done_at == done_at
    assert store.care_summary("welcome") == CareSummary(counts={}, last_done_at=None)


def test_occurrences_inserted_with_their_outcome_go_in_all_or_none(store: Store) -> None:
    first = [(occurrence("c7", status="sent"), greeted("c7")), (occurrence("c8", status="skipped"), Processed())]
    assert store.insert_care(first, "a", T0)
    assert store.care_done([occurrence("c7").key, occurrence("c8").key]) == {occurrence("c7").key, occurrence("c8").key}
    assert store.record("contact", "c7") is not None
    assert [e.stage for e in store.stage_entries("contact", "c7")] == ["greeted"]
    clash = [(occurrence("c9", status="sent"), greeted("c9")), (occurrence("c7", status="sent"), Processed())]
    assert not store.insert_care(clash, "b", T0)  # c7 is in the ledger: nothing of the batch is written
    assert store.record("contact", "c9") is None
    assert store.stage_entries("contact", "c9") == []
    assert store.care_done([occurrence("c9").key]) == set()
    assert dict(store.care_summary("birthday").counts) == {"sent": 1, "skipped": 1}


def test_writing_dated_records_over_and_over_keeps_the_store_s_memory_flat(store: Store) -> None:
    """Each batch with a dated record re-indexes its dates. The insert of the index was built anew
    per batch, and the SQL store kept a compiled plan (and the statement) per statement it saw: a
    daemon writing birthdays grew by a plan per batch, for ever."""
    compiled = getattr(store, "_compiled", None)
    for n in range(300):
        record = Record(object="contact", id=f"c{n % 7}", fields={"birthday": f"1990-03-{n % 28 + 1:02d}"})
        store.commit_batch([Processed(step=Step(records={record.key: record}))], T0)
        if n == 0 and compiled is not None:
            after_first = len(compiled)
    if compiled is not None:  # SQL stores: the same plans serve every batch
        assert len(compiled) == after_first
    assert [r.id for r in store.care_records("contact", "birthday", [320])] == ["c5"]  # the last write of c5
