"""Pipelines: stage entry starts rules (together or ordered by after:), delayed rules re-check
their if:, leaving cancels pending rules, triggers move records forward (backward only with
allow_backward), final stages, and moves into a stage with empty required fields are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowctl.engine.simulator import SimulationError
from tests.engine.conftest import actions, runs_of

SALES = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
      triggers:
        - {on: event, event: reopened, allow_backward: true}
      rules:
        - {name: sms, action: send_sms, text: "hello {{ record.client_name }}", to: "{{ record.phone }}"}
        - {name: task, action: create_task, title: "call {{ record.client_name }}", assignee: {user: lan}}
        - name: remind
          delay: 30m
          if: "record.stage == 'new' and not record.note"
          action: notify
          to: owner
          text: "still new: {{ record.client_name }}"
    - id: documents
      fields: [contract_no, delivery_address]
      triggers:
        - {on: event, event: invoice.reissued}
      rules:
        - {name: make invoice, action: create_document, template: invoice, save_as: invoice}
        - {name: email invoice, after: make invoice, action: send_email, template: invoice-mail,
           to: "{{ record.email }}", attach: [invoice]}
        - {name: thank, after: [make invoice, email invoice], action: send_sms, text: "sent", to: "{{ record.phone }}"}
        - {name: nudge, delay: 1d, if: "record.stage == 'documents'", action: notify, to: supervisor, text: "nudge"}
    - id: prepayment
      triggers:
        - {on: event, event: invoice.paid}
        - {on: updated, changed: [paid_amount], if: "record.paid_amount >= record.amount * 0.5"}
      rules:
        - {name: prepare, action: create_task, title: "prepare {{ record.id }}", assignee: {user: tuan}}
    - id: won
      final: success
      triggers:
        - {on: event, event: order.delivered}
    - id: lost
      final: failure
      fields: [lost_reason]
      triggers:
        - {on: event, event: order.cancelled, allow_backward: true}
"""

TEMPLATES = """
apiVersion: flowctl/v1
kind: Template
metadata: {name: invoice}
spec: {channel: document, subject: "Invoice {{ record.contract_no }}", html: "<h1>{{ record.contract_no }}</h1>"}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: invoice-mail}
spec: {channel: email, subject: "Your invoice {{ record.contract_no }}", text: "Dear {{ record.client_name }}"}
"""

DEAL = {"client_name": "Mai", "phone": "0912345678", "email": "mai@example.com", "owner": "lan", "amount": 1000}
DOCS = {"contract_no": "HD-1", "delivery_address": "45 Nguyen Hue"}


@pytest.fixture
def sim(sim_of):
    return sim_of({"pipelines.yaml": SALES, "templates.yaml": TEMPLATES})


def rule_status(sim, stage: str) -> dict[str, str]:
    return {r.node: r.status for r in sim.state.runs.values() if r.automation.startswith(f"rule:sales/{stage}/")}


def test_a_new_record_enters_the_first_stage_and_its_rules_start_together(sim) -> None:
    sim.write("create", "deal", "1", DEAL)
    record = sim.state.record("deal", "1")
    assert (record.pipeline, record.stage) == ("sales", "new")
    assert actions(sim) == ["send_sms", "create_task"]
    assert rule_status(sim, "new") == {"sms": "done", "task": "done", "remind": "waiting"}
    entries = {r.entry for r in sim.state.runs.values()}
    assert len(entries) == 1  # one stage entry groups its rules


def test_a_delayed_rule_rechecks_its_condition_when_it_wakes(sim) -> None:
    sim.write("create", "deal", "1", DEAL)
    sim.write("create", "deal", "2", DEAL)
    sim.write("update", "deal", "2", {"note": "called"})  # makes deal 2's if: false
    sim.advance_by(timedelta(minutes=30))
    notices = [e for e in sim.state.effects if e.action == "notify"]
    assert [(e.record_id, e.params["to"], e.params["text"]) for e in notices] == [("1", "lan", "still new: Mai")]
    skipped = next(r for r in runs_of(sim, "rule:sales/new/remind") if r.record_id == "2")
    assert skipped.status == "done"
    condition = next(e for e in skipped.trace if e.kind == "condition")
    assert condition.result is False and condition.values["record.note"] == "called"
    assert skipped.trace[-1].detail == "condition false: skipped"


def test_leaving_the_stage_cancels_its_pending_rules(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, **DOCS})
    sim.write("move", "deal", "1", stage="documents")
    sim.write("move", "deal", "1", stage="prepayment")
    sim.advance_by(timedelta(days=2))
    assert "notify" not in actions(sim)
    assert rule_status(sim, "new")["remind"] == "cancelled"
    assert rule_status(sim, "documents")["nudge"] == "cancelled"
    cancelled = runs_of(sim, "rule:sales/documents/nudge")[0]
    assert cancelled.trace[-1].detail == "left the stage (moved to prepayment)"
    assert sim.state.timers == {}


def test_rules_ordered_by_after_run_after_their_predecessors(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, **DOCS})
    since = len(sim.state.effects)
    sim.write("move", "deal", "1", stage="documents")
    new = sim.state.effects[since:]
    assert [e.action for e in new] == ["create_document", "send_email", "send_sms"]
    mail = new[1]
    assert mail.params["attachments"][0]["filename"] == "invoice.pdf"
    assert mail.params["attachments"][0]["html"] == "<h1>HD-1</h1>"


def test_a_failed_predecessor_cancels_the_rules_after_it(sim_of) -> None:
    broken = SALES.replace("template: invoice, save_as", "template: invoice, due: '{{ record.note }}', save_as")
    sim = sim_of(
        {
            "pipelines.yaml": broken.replace(
                "{name: make invoice, action: create_document, template: invoice, due: '{{ record.note }}', "
                "save_as: invoice}",
                "{name: make invoice, action: create_task, title: t, due: '{{ record.note }}'}",
            ),
            "templates.yaml": TEMPLATES,
        }
    )
    sim.write("create", "deal", "1", {**DEAL, **DOCS, "note": "not a date"})
    sim.write("move", "deal", "1", stage="documents")
    assert rule_status(sim, "documents") == {
        "make invoice": "failed",
        "email invoice": "cancelled",
        "thank": "cancelled",
        "nudge": "waiting",
    }
    assert any(p.code == "action_failed" and "neither a duration nor a date" in p.message for p in sim.state.problems)


def test_an_event_trigger_moves_the_record_into_its_stage(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, **DOCS})
    sim.write("move", "deal", "1", stage="documents")
    since = len(sim.state.effects)
    sim.event("invoice.paid", "deal", "1")
    assert sim.state.record("deal", "1").stage == "prepayment"
    assert [(e.action, e.params["title"]) for e in sim.state.effects[since:]] == [("create_task", "prepare 1")]


def test_an_update_trigger_with_a_condition(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, **DOCS, "paid_amount": 0})
    sim.write("move", "deal", "1", stage="documents")
    sim.write("update", "deal", "1", {"paid_amount": 400})
    assert sim.state.record("deal", "1").stage == "documents"
    sim.write("update", "deal", "1", {"paid_amount": 500})
    assert sim.state.record("deal", "1").stage == "prepayment"


def test_triggers_move_forward_only(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, **DOCS})
    sim.write("move", "deal", "1", stage="won")  # an explicit move may go anywhere
    sim.write("move", "deal", "1", stage="documents")
    sim.write("move", "deal", "1", stage="prepayment")
    sim.event("invoice.paid", "deal", "1")  # prepayment's own trigger: already there
    assert sim.state.record("deal", "1").stage == "prepayment"


def test_a_trigger_does_not_move_a_record_backward_without_allow_backward(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, **DOCS})
    sim.write("move", "deal", "1", stage="prepayment")
    sim.event("invoice.reissued", "deal", "1")  # documents is behind prepayment: stays
    assert sim.state.record("deal", "1").stage == "prepayment"


def test_allow_backward_lets_a_trigger_move_back(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, **DOCS})
    sim.write("move", "deal", "1", stage="prepayment")
    since = len(sim.state.effects)
    sim.event("reopened", "deal", "1")
    assert sim.state.record("deal", "1").stage == "new"
    assert actions(sim, since) == ["send_sms", "create_task"]  # entering again starts the rules again


def test_final_stages_are_left_only_by_an_explicit_move(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, **DOCS, "lost_reason": "x"})
    sim.write("move", "deal", "1", stage="prepayment")
    sim.event("order.delivered", "deal", "1")
    assert sim.state.record("deal", "1").stage == "won"
    sim.event("order.cancelled", "deal", "1")  # would move to lost, but won is final
    assert sim.state.record("deal", "1").stage == "won"
    sim.write("move", "deal", "1", stage="lost")
    assert sim.state.record("deal", "1").stage == "lost"


def test_a_move_into_a_stage_with_empty_required_fields_is_refused(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, "contract_no": "HD-1"})
    with pytest.raises(SimulationError) as refused:
        sim.write("move", "deal", "1", stage="documents")
    assert str(refused.value) == ("cannot move deal 1 into stage 'documents': required field delivery_address is empty")
    sim.write("update", "deal", "1", {"contract_no": ""})
    with pytest.raises(SimulationError, match="required fields contract_no, delivery_address are empty"):
        sim.write("move", "deal", "1", stage="documents")
    assert sim.state.record("deal", "1").stage == "new"


def test_a_move_to_an_unknown_stage_names_the_stages(sim) -> None:
    sim.write("create", "deal", "1", DEAL)
    with pytest.raises(SimulationError, match=r"pipeline sales has no stage 'nowhere' \(stages: new, documents,"):
        sim.write("move", "deal", "1", stage="nowhere")


def test_a_trigger_into_a_stage_with_empty_required_fields_leaves_the_record_and_says_why(sim) -> None:
    sim.write("create", "deal", "1", {**DEAL, **DOCS})
    sim.write("move", "deal", "1", stage="prepayment")
    sim.event("order.cancelled", "deal", "1")  # lost needs lost_reason
    assert sim.state.record("deal", "1").stage == "prepayment"
    (problem,) = sim.state.problems
    assert problem.code == "move_refused"
    assert problem.message == "cannot move deal 1 into stage 'lost': required field lost_reason is empty"


def test_a_move_stage_action_into_a_stage_with_empty_fields_fails_with_the_reason(sim_of) -> None:
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: close}
spec:
  object: deal
  trigger: {on: event, event: give.up}
  start: move
  nodes:
    move: {type: move_stage, stage: lost, next: tell}
    tell: {type: send_sms, text: "closed", to: "0900000001"}
"""
    sim = sim_of({"pipelines.yaml": SALES, "templates.yaml": TEMPLATES, "flows.yaml": flow})
    sim.write("create", "deal", "1", DEAL)
    since = len(sim.state.effects)
    sim.event("give.up", "deal", "1")
    assert sim.state.record("deal", "1").stage == "new"
    assert sim.state.effects[since:] == []  # no move_stage effect for a move that did not happen
    (run,) = runs_of(sim, "flow:close")
    assert run.status == "failed"
    (problem,) = sim.state.problems
    assert problem.code == "move_refused"
    assert "required field lost_reason is empty" in problem.message
    sim.write("update", "deal", "1", {"lost_reason": "no budget"})
    sim.event("give.up", "deal", "1")
    assert sim.state.record("deal", "1").stage == "lost"
    assert actions(sim, since) == ["move_stage", "send_sms"]


def test_an_object_with_several_pipelines_names_one(sim_of) -> None:
    other = """
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: recare}
spec:
  object: deal
  stages:
    - id: remind
      rules: [{name: r, action: send_sms, text: "come back", to: "{{ record.phone }}"}]
    - id: done
"""
    sim = sim_of({"pipelines.yaml": SALES + other, "templates.yaml": TEMPLATES})
    sim.write("create", "deal", "1", DEAL, pipeline="recare")
    record = sim.state.record("deal", "1")
    assert (record.pipeline, record.stage) == ("recare", "remind")
    assert [e.params["text"] for e in sim.state.effects] == ["come back"]
    sim.write("create", "deal", "2", DEAL, stage="documents", pipeline="sales")
    assert sim.state.record("deal", "2").stage == "documents"


def test_a_created_trigger_places_a_new_record_in_its_stage(sim_of) -> None:
    pipeline = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: leads}
spec:
  object: deal
  stages:
    - id: new
      rules: [{name: hi, action: send_sms, text: "new", to: "0900000001"}]
    - id: hot
      triggers: [{on: created, if: "record.amount and record.amount >= 1000"}]
      rules: [{name: call, action: create_task, title: "call now", assignee: {user: lan}}]
"""
    sim = sim_of({"pipelines.yaml": pipeline.replace("    - id: hot\n", "    - id: hot\n      fields: [title]\n")})
    sim.write("create", "deal", "1", {"amount": 5000, "title": "big"})
    sim.write("create", "deal", "2", {"amount": 10})
    sim.write("create", "deal", "3", {"amount": 5000})  # hot needs a title: refused, stays new
    assert [sim.state.record("deal", i).stage for i in ("1", "2", "3")] == ["hot", "new", "new"]
    assert [(e.record_id, e.action) for e in sim.state.effects] == [
        ("1", "create_task"),
        ("2", "send_sms"),
        ("3", "send_sms"),
    ]
    assert [(p.code, p.message) for p in sim.state.problems] == [
        ("move_refused", "cannot move deal 3 into stage 'hot': required field title is empty")
    ]


def test_creating_into_an_unknown_stage_is_refused(sim) -> None:
    from flowctl.engine.scenario import check_request
    from flowctl.spec.model import TestRecord

    refused = check_request(sim.bundle, "create", TestRecord(object="deal", id="1", stage="nowhere"))
    assert refused == ["unknown stage 'nowhere' for deal (stages: new, documents, prepayment, won, lost)"]


def test_update_fields_setting_stage_is_a_move(sim_of) -> None:
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: promote}
spec:
  object: deal
  trigger: {on: event, event: promote}
  start: set
  nodes:
    set: {type: update_fields, set: {stage: prepayment, note: promoted}}
"""
    sim = sim_of({"pipelines.yaml": SALES, "templates.yaml": TEMPLATES, "flows.yaml": flow})
    sim.write("create", "deal", "1", DEAL)
    since = len(sim.state.effects)
    sim.event("promote", "deal", "1")
    record = sim.state.record("deal", "1")
    assert (record.stage, record.fields["note"], "stage" in record.fields) == ("prepayment", "promoted", False)
    assert actions(sim, since) == ["update_fields", "create_task"]


RECARE = """
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: recare}
spec:
  object: deal
  stages:
    - id: new
      rules: [{name: come back, action: send_sms, text: "come back {{ record.client_name }}", to: "{{ record.phone }}"}]
    - id: signed
      fields: [contract_no]
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: ticket}
spec: {fields: {subject: {type: string}}}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: support}
spec: {object: ticket, stages: [{id: new}]}
"""


def test_a_move_into_another_pipeline_leaves_the_old_stage_and_enters_the_new_one(sim_of) -> None:
    sim = sim_of({"pipelines.yaml": SALES + RECARE, "templates.yaml": TEMPLATES})
    sim.write("create", "deal", "1", DEAL, pipeline="sales")
    since = len(sim.state.effects)
    sim.write("move", "deal", "1", stage="new", pipeline="recare")  # the same stage id, another pipeline
    record = sim.state.record("deal", "1")
    assert (record.pipeline, record.stage) == ("recare", "new")
    assert [e.params["text"] for e in sim.state.effects[since:]] == ["come back Mai"]
    assert rule_status(sim, "new")["remind"] == "cancelled"
    assert runs_of(sim, "rule:sales/new/remind")[0].trace[-1].detail == "left the stage (moved to new)"
    sim.advance_by(timedelta(hours=1))
    assert "notify" not in actions(sim)


@pytest.mark.parametrize(
    ("stage", "pipeline", "reason"),
    [
        (
            "signed",
            "recare",
            "cannot move deal 1 into stage 'signed' of pipeline recare: required field contract_no is empty",
        ),
        ("won", "recare", "pipeline recare has no stage 'won' (stages: new, signed)"),
        ("new", "support", "pipeline support is for ticket records, not deal (pipelines of deal: recare, sales)"),
        ("new", "nope", "unknown pipeline 'nope' (pipelines of deal: recare, sales)"),
    ],
)
def test_a_move_into_another_pipeline_is_refused_with_the_reason(
    sim_of, stage: str, pipeline: str, reason: str
) -> None:
    sim = sim_of({"pipelines.yaml": SALES + RECARE, "templates.yaml": TEMPLATES})
    sim.write("create", "deal", "1", DEAL, pipeline="sales")
    with pytest.raises(SimulationError) as refused:
        sim.write("move", "deal", "1", stage=stage, pipeline=pipeline)
    assert str(refused.value) == reason
    assert sim.state.record("deal", "1").pipeline == "sales"


def test_a_move_stage_action_into_another_pipeline_checks_the_target_stage(sim_of) -> None:
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: recall}
spec:
  object: deal
  trigger: {on: event, event: recall}
  start: move
  nodes:
    move: {type: move_stage, pipeline: recare, stage: signed}
"""
    sim = sim_of({"pipelines.yaml": SALES + RECARE, "templates.yaml": TEMPLATES, "flows.yaml": flow})
    sim.write("create", "deal", "1", DEAL, pipeline="sales")
    sim.event("recall", "deal", "1")
    assert sim.state.record("deal", "1").pipeline == "sales"
    assert [(p.code, p.message) for p in sim.state.problems] == [
        (
            "move_refused",
            "cannot move deal 1 into stage 'signed' of pipeline recare: required field contract_no is empty",
        )
    ]
    sim.write("update", "deal", "1", {"contract_no": "HD-1"})
    sim.event("recall", "deal", "1")
    record = sim.state.record("deal", "1")
    assert (record.pipeline, record.stage) == ("recare", "signed")
    assert rule_status(sim, "new")["remind"] == "cancelled"
