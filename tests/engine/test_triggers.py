"""Flow triggers: created, updated (with changed: fields), deleted, stage_changed, event."""

from __future__ import annotations

from flowctl.engine.simulator import SimulationError
from tests.engine.conftest import actions, runs_of

PIPELINE = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: documents
    - id: won
      final: success
"""


def sms_flow(name: str, trigger: str, object: str = "contact", text: str = "") -> str:
    return f"""
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: {name}}}
spec:
  object: {object}
  trigger: {trigger}
  start: s
  nodes:
    s: {{type: send_sms, text: "{text or name}", to: "0900000001"}}
---
"""


def texts(sim) -> list[str]:
    return [e.params["text"] for e in sim.state.effects]


def test_created_fires_once_per_new_record(sim_of) -> None:
    sim = sim_of({"flows.yaml": sms_flow("hello", '{on: created, if: "record.email"}')})
    sim.write("create", "contact", "1", {"email": "a@example.com"})
    sim.write("create", "contact", "2", {})
    sim.write("update", "contact", "1", {"note": "x"})
    assert texts(sim) == ["hello"]
    assert sim.state.effects[0].record_id == "1"


def test_updated_with_changed_fires_only_when_a_listed_field_changes(sim_of) -> None:
    sim = sim_of(
        {"flows.yaml": sms_flow("email", "{on: updated, changed: [email, phone]}") + sms_flow("any", "{on: updated}")}
    )
    sim.write("create", "contact", "1", {"email": "a@example.com"})
    assert texts(sim) == []
    sim.write("update", "contact", "1", {"note": "x"})
    assert texts(sim) == ["any"]
    sim.write("update", "contact", "1", {"email": "a@example.com"})  # same value: no change at all
    assert texts(sim) == ["any"]
    sim.write("update", "contact", "1", {"email": "b@example.com"})
    assert texts(sim) == ["any", "email", "any"]


def test_updated_condition_sees_before_and_changed(sim_of) -> None:
    condition = "record.email and not before.email and 'email' in changed"
    sim = sim_of({"flows.yaml": sms_flow("welcome", f'{{on: updated, changed: [email], if: "{condition}"}}')})
    sim.write("create", "contact", "1", {"email": None})
    sim.write("update", "contact", "1", {"email": "a@example.com"})
    sim.write("update", "contact", "1", {"email": "b@example.com"})  # before.email is set: no
    assert texts(sim) == ["welcome"]
    condition = runs_of(sim, "flow:welcome")[0].trace[0]
    assert condition.kind == "condition" and condition.result is True
    assert dict(condition.values) == {"record.email": "a@example.com", "before.email": None}


def test_deleted_fires_and_its_actions_run(sim_of) -> None:
    sim = sim_of({"flows.yaml": sms_flow("bye", "{on: deleted}", text="bye {{ record.full_name }}")})
    sim.write("create", "contact", "1", {"full_name": "Lan"})
    sim.write("delete", "contact", "1")
    assert texts(sim) == ["bye Lan"]
    assert runs_of(sim, "flow:bye")[0].status == "done"


def test_stage_changed_with_from_and_to(sim_of) -> None:
    sim = sim_of(
        {
            "pipelines.yaml": PIPELINE,
            "flows.yaml": sms_flow("any-move", "{on: stage_changed}", object="deal")
            + sms_flow("to-won", "{on: stage_changed, to: won}", object="deal")
            + sms_flow("docs-to-won", "{on: stage_changed, from: documents, to: won}", object="deal"),
        }
    )
    sim.write("create", "deal", "1", {})  # entering the first stage is not a change of stage
    assert texts(sim) == []
    sim.write("move", "deal", "1", stage="won")
    assert sorted(texts(sim)) == ["any-move", "to-won"]
    sim.write("create", "deal", "2", {})
    sim.write("move", "deal", "2", stage="documents")
    sim.write("move", "deal", "2", stage="won")
    assert sorted(texts(sim)[2:]) == ["any-move", "any-move", "docs-to-won", "to-won"]


def test_a_move_is_not_a_field_update(sim_of) -> None:
    # What validate's loop check (E080) assumes: moves start `updated` flows only with `changed: [stage]`.
    sim = sim_of(
        {
            "pipelines.yaml": PIPELINE,
            "flows.yaml": sms_flow("fields", "{on: updated}", object="deal")
            + sms_flow("stage", "{on: updated, changed: [stage]}", object="deal"),
        }
    )
    sim.write("create", "deal", "1", {})
    sim.write("move", "deal", "1", stage="documents")
    assert texts(sim) == ["stage"]
    sim.write("update", "deal", "1", {"note": "x"})
    assert texts(sim) == ["stage", "fields"]


def test_event_trigger_matches_the_name_and_sees_its_data(sim_of) -> None:
    sim = sim_of(
        {
            "flows.yaml": sms_flow(
                "paid", '{on: event, event: invoice.paid, if: "event.amount >= 100"}', text="paid {{ event.amount }}"
            )
        }
    )
    sim.write("create", "contact", "1", {})
    sim.event("invoice.sent", "contact", "1", {"amount": 500})
    sim.event("invoice.paid", "contact", "1", {"amount": 50})
    sim.event("invoice.paid", "contact", "1", {"amount": 500})
    assert texts(sim) == ["paid 500"]


def test_an_event_about_a_missing_record_runs_nothing_and_says_so(sim_of) -> None:
    sim = sim_of({"flows.yaml": sms_flow("paid", "{on: event, event: invoice.paid}")})
    sim.event("invoice.paid", "contact", "404")
    assert sim.state.effects == [] and sim.state.runs == {}
    (problem,) = sim.state.problems
    assert problem.code == "unknown_record"
    assert "contact 404" in problem.message


def test_a_disabled_flow_never_starts(sim_of) -> None:
    sim = sim_of({"flows.yaml": sms_flow("off", "{on: created}").replace("spec:\n", "spec:\n  enabled: false\n")})
    sim.write("create", "contact", "1", {})
    assert actions(sim) == []


def test_a_trigger_condition_that_fails_is_a_problem_not_a_crash(sim_of) -> None:
    sim = sim_of({"flows.yaml": sms_flow("bad", '{on: created, if: "record.score > 10"}')})
    sim.write("create", "contact", "1", {})  # score is None: None > 10 is a TypeError
    assert actions(sim) == []
    (problem,) = sim.state.problems
    assert problem.code == "condition_failed" and "flow bad trigger condition" in problem.message


RECYCLED = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - {name: greet, action: send_sms, to: "0900000001", text: "rule new"}
    - id: documents
      rules:
        - {name: chase, delay: 1d, action: send_sms, to: "0900000001", text: "rule documents"}
    - id: review
      triggers:
        - {on: restored, if: "record.amount > 1000"}
    - {id: won, final: success}
"""


def test_a_restored_record_runs_on_restored_not_on_created_and_stays_in_its_stage(sim_of) -> None:
    """Restoring puts the record back as it was deleted: its stage's rules do not run again
    (it did not enter the stage), ``on: created`` does not fire, ``on: restored`` does."""
    flows = sms_flow("made", "{on: created}", "deal") + sms_flow("back", "{on: restored}", "deal")
    sim = sim_of({"flows.yaml": flows, "pipeline.yaml": RECYCLED})
    sim.write("create", "deal", "7", {"title": "Sofa", "amount": 500}, stage="documents")
    assert sorted(texts(sim)) == ["made"]
    sim.write("delete", "deal", "7")
    assert not [r for r in sim.state.runs.values() if r.active]  # the delayed chase was cancelled
    sim.write("restore", "deal", "7")
    assert sorted(texts(sim)) == ["back", "made"]
    record = sim.state.record("deal", "7")
    assert (record.deleted, record.stage, record.fields["title"]) == (False, "documents", "Sofa")
    assert [r.automation for r in sim.state.runs.values() if r.active] == []  # the stage's rules did not run again


def test_a_restore_trigger_moves_the_restored_record_when_its_condition_holds(sim_of) -> None:
    sim = sim_of({"pipeline.yaml": RECYCLED})
    sim.write("create", "deal", "1", {"title": "Big", "amount": 5000}, stage="new")
    sim.write("create", "deal", "2", {"title": "Small", "amount": 10}, stage="new")
    for id in ("1", "2"):
        sim.write("delete", "deal", id)
        sim.write("restore", "deal", id)
    assert (sim.state.record("deal", "1").stage, sim.state.record("deal", "2").stage) == ("review", "new")


def test_only_a_deleted_record_is_restored(sim_of) -> None:
    sim = sim_of({"pipeline.yaml": RECYCLED})
    sim.write("create", "deal", "1", {"title": "Live"}, stage="new")
    for id in ("1", "nobody"):
        try:
            sim.write("restore", "deal", id)
        except SimulationError as exc:
            assert "only a deleted record is restored" in str(exc)
        else:
            raise AssertionError(f"deal {id} was restored")
