"""Stage entries: every stage a record enters, whatever moved it (its creation, a move, a trigger,
a rule, an action), is one ``StageEntry`` on the step, at the engine's time, naming the input
that caused it: what a record's stage history is made of."""

from __future__ import annotations

from datetime import timedelta

from flowctl.engine.state import StageEntry, Step
from tests.engine.conftest import T0

PIPELINE = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: documents
    - id: review
      triggers:
        - {on: updated, changed: [contract_no], if: "record.contract_no"}
      rules:
        - {name: approve, delay: 1d, action: move_stage, stage: signed}
    - id: signed
      rules:
        - {name: close, action: move_stage, stage: won}
    - id: won
      final: success
      triggers:
        - {on: event, event: deal.paid}
"""


def entered(step: Step) -> list[tuple[str, str, str]]:
    return [(e.record_id, e.stage, e.at.isoformat()) for e in step.stage_entries]


def test_a_create_a_move_a_trigger_and_rules_each_leave_one_entry_with_its_time(sim_of) -> None:
    sim = sim_of({"pipelines.yaml": PIPELINE})
    created = sim.write("create", "deal", "1", {"title": "Sofa"})  # no stage: the first one
    assert created.stage_entries == [
        StageEntry(object="deal", record_id="1", pipeline="sales", stage="new", at=T0, key=created.stage_entries[0].key)
    ]
    sim.advance_by(timedelta(hours=1))
    moved = sim.write("move", "deal", "1", stage="documents")
    assert entered(moved) == [("1", "documents", (T0 + timedelta(hours=1)).isoformat())]
    assert moved.stage_entries[0].key != created.stage_entries[0].key  # each names its own input
    sim.advance_by(timedelta(hours=1))
    untouched = sim.write("update", "deal", "1", {"title": "Sofa set"})  # no trigger holds: no entry
    assert untouched.stage_entries == []
    triggered = sim.write("update", "deal", "1", {"contract_no": "HD-1"})  # the trigger moves it on
    assert entered(triggered) == [("1", "review", (T0 + timedelta(hours=2)).isoformat())]
    # a day later the review rule's timer moves it to signed, whose rule moves it straight to won:
    # both entries are kept, at the timer's time, caused by the timer
    (fired,) = [step for step in sim.advance_by(timedelta(days=2)) if step.stage_entries]
    due = (T0 + timedelta(hours=2, days=1)).isoformat()
    assert entered(fired) == [("1", "signed", due), ("1", "won", due)]
    assert {e.key for e in fired.stage_entries} == {fired.stage_entries[0].key}
    assert sim.state.record("deal", "1").stage == "won"


def test_an_event_trigger_and_a_create_into_a_stage_each_leave_one_entry(sim_of) -> None:
    sim = sim_of({"pipelines.yaml": PIPELINE})
    assert entered(sim.write("create", "deal", "2", {"title": "Bed"}, stage="documents")) == [
        ("2", "documents", T0.isoformat())
    ]
    sim.advance_by(timedelta(minutes=5))
    paid = sim.event("deal.paid", "deal", "2")
    assert entered(paid) == [("2", "won", (T0 + timedelta(minutes=5)).isoformat())]
    assert sim.event("deal.paid", "deal", "2").stage_entries == []  # already there: no entry
    assert sim.write("update", "deal", "2", {"note": "x"}).stage_entries == []
    deleted = sim.write("delete", "deal", "2")
    assert deleted.stage_entries == []
    restored = sim.write("create", "deal", "2", {"title": "Bed"})  # put back: it enters a stage again
    assert entered(restored) == [("2", "new", (T0 + timedelta(minutes=5)).isoformat())]


def test_a_record_of_an_object_without_a_pipeline_enters_no_stage(sim_of) -> None:
    sim = sim_of({"pipelines.yaml": PIPELINE})
    assert sim.write("create", "contact", "1", {"full_name": "Lan"}).stage_entries == []
