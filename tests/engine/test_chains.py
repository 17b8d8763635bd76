"""Writes made by actions trigger other automations; a chain depth limit stops runaway loops."""

from __future__ import annotations

from tests.engine.conftest import actions, runs_of

PIPELINE = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: qualified
      triggers:
        - {on: updated, changed: [amount], if: "record.amount and record.amount >= 1000"}
      rules:
        - {name: tell, action: send_sms, text: "qualified {{ record.amount }}", to: "0900000001"}
    - id: won
      final: success
"""


def test_an_update_by_a_flow_triggers_a_stage_trigger_and_its_rules(sim_of) -> None:
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: estimate}
spec:
  object: deal
  trigger: {on: event, event: quote.sent}
  start: set
  nodes:
    set: {type: update_fields, set: {amount: "{{ event.total }}"}, next: after}
    after: {type: send_sms, text: "stage now {{ record.stage }}", to: "0900000001"}
"""
    sim = sim_of({"pipelines.yaml": PIPELINE, "flows.yaml": flow})
    sim.write("create", "deal", "1", {})
    sim.event("quote.sent", "deal", "1", {"total": 1500})
    assert [e.params.get("text") or e.action for e in sim.state.effects] == [
        "update_fields",
        "qualified 1500",
        "stage now qualified",
    ]
    assert sim.state.record("deal", "1").stage == "qualified"


def test_a_stage_rule_can_start_a_flow(sim_of) -> None:
    pipeline = PIPELINE.replace(
        '        - {name: tell, action: send_sms, text: "qualified {{ record.amount }}", to: "0900000001"}',
        "        - {name: win, action: move_stage, stage: won}",
    )
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: congrats}
spec:
  object: deal
  trigger: {on: stage_changed, to: won}
  start: s
  nodes:
    s: {type: send_sms, text: "won", to: "0900000001"}
"""
    sim = sim_of({"pipelines.yaml": pipeline, "flows.yaml": flow})
    sim.write("create", "deal", "1", {})
    sim.write("update", "deal", "1", {"amount": 2000})
    assert sim.state.record("deal", "1").stage == "won"
    assert actions(sim) == ["move_stage", "send_sms"]
    assert sim.state.effects[0].params == {"stage": "won", "from": "qualified"}


LOOP = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: bump}
spec:
  object: contact
  mode: parallel
  max_parallel: 100
  trigger: {on: updated, changed: [status]}
  start: s
  nodes:
    s: {type: update_fields, set: {score: "{{ (record.score or 0) + 1 }}"}}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: flip}
spec:
  object: contact
  mode: parallel
  max_parallel: 100
  trigger: {on: updated, changed: [score]}
  start: s
  nodes:
    s: {type: update_fields, set: {status: "{{ 'active' if record.status != 'active' else 'inactive' }}"}}
"""


def test_a_runaway_loop_stops_at_the_chain_depth_with_a_clear_problem(sim_of) -> None:
    # validate refuses this config (E080); the engine must still stop if one slips through.
    sim = sim_of({"flows.yaml": LOOP}, allow=("E080",))
    sim.write("create", "contact", "1", {})
    sim.write("update", "contact", "1", {"status": "active"})
    problems = [p for p in sim.state.problems if p.code == "chain_depth"]
    assert len(problems) == 1
    assert problems[0].message == (
        "automations triggered each other more than 8 levels deep on contact 1; stopped here "
        "(raise limits.chain_depth or break the loop)"
    )
    assert len(sim.state.effects) == 9  # one per level, 0 to 8
    assert len(runs_of(sim, "flow:bump")) + len(runs_of(sim, "flow:flip")) == 9


def test_the_chain_depth_is_configurable(sim_of) -> None:
    config = """
apiVersion: flowctl/v1
kind: Config
metadata: {name: test}
spec: {timezone: UTC, limits: {chain_depth: 2}}
"""
    sim = sim_of({"flowctl.yaml": config, "flows.yaml": LOOP}, allow=("E080",))
    sim.write("create", "contact", "1", {})
    sim.write("update", "contact", "1", {"status": "active"})
    assert len(sim.state.effects) == 3
    assert [p.code for p in sim.state.problems] == ["chain_depth"]


def test_mode_single_already_breaks_a_flow_that_retriggers_itself(sim_of) -> None:
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: self}
spec:
  object: contact
  trigger: {on: updated}
  start: s
  nodes:
    s: {type: update_fields, set: {score: "{{ (record.score or 0) + 1 }}"}}
"""
    sim = sim_of({"flows.yaml": flow}, allow=("E080",))
    sim.write("create", "contact", "1", {})
    sim.write("update", "contact", "1", {"note": "x"})
    assert sim.state.record("contact", "1").fields["score"] == 1
    assert sim.state.problems == []


def test_effects_per_change_limit(sim_of) -> None:
    config = """
apiVersion: flowctl/v1
kind: Config
metadata: {name: test}
spec: {timezone: UTC, limits: {effects_per_change: 3}}
"""
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: many}
spec:
  object: contact
  trigger: {on: created}
  start: s
  nodes:
    s: {type: send_sms, text: x, to: "0900000001", next: again}
    again: {type: goto, node: s, max_visits: 10}
"""
    sim = sim_of({"flowctl.yaml": config, "flows.yaml": flow})
    sim.write("create", "contact", "1", {})
    assert len(sim.state.effects) == 3
    assert [p.code for p in sim.state.problems] == ["effects_limit"]
    assert runs_of(sim, "flow:many")[0].status == "failed"
