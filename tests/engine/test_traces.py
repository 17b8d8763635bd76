"""Every run records the nodes it passed, each condition with the values it saw and its result,
the decision and the effects; ``render`` shows it as a tree and as JSON."""

from __future__ import annotations

import json
from datetime import timedelta

from flowctl.engine.render import effect_json, render_effect, render_run, run_json
from tests.engine.conftest import runs_of

FLOW = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: welcome}
spec:
  object: contact
  trigger: {on: updated, changed: [email], if: "record.email and not before.email"}
  start: pick
  nodes:
    pick: {type: branch, branches: [{if: "record.segment == 'vip' and record.score >= 10", next: vip}], default: std}
    vip: {type: send_sms, text: "VIP {{ record.full_name }}", to: "0900000001", next: wait}
    std: {type: send_sms, text: "Hi {{ record.full_name }}", to: "0900000001", next: wait}
    wait: {type: delay, for: 1d, next: task}
    task: {type: create_task, title: "Call {{ record.full_name }}", assignee: {user: lan}}
"""


def test_a_run_traces_nodes_conditions_with_values_decisions_effects_and_waits(sim_of) -> None:
    # An action node's line is its effect (or its error); control nodes have an "enter" line.
    sim = sim_of({"flows.yaml": FLOW})
    sim.write("create", "contact", "1", {"full_name": "Lan", "segment": "vip", "score": 7})
    sim.write("update", "contact", "1", {"email": "lan@example.com"})
    sim.advance_by(timedelta(days=1))
    (run,) = runs_of(sim, "flow:welcome")
    got = [(e.at[5:16], e.node, e.kind, e.detail, dict(e.values), e.result) for e in run.trace]
    assert got == [
        (
            "03-02T09:00",
            "trigger",
            "condition",
            "record.email and not before.email",
            {"record.email": "lan@example.com", "before.email": None},
            True,
        ),
        ("03-02T09:00", "pick", "enter", "branch", {}, None),
        (
            "03-02T09:00",
            "pick",
            "condition",
            "record.segment == 'vip' and record.score >= 10",
            {"record.segment": "vip", "record.score": 7},
            False,
        ),
        ("03-02T09:00", "pick", "decision", "default → std", {}, None),
        (
            "03-02T09:00",
            "std",
            "effect",
            "send_sms",
            {"to": "0900000001", "text": "Hi Lan", "encoding": "GSM-7", "segments": 1, "characters": 6},
            None,
        ),
        ("03-02T09:00", "wait", "enter", "delay", {}, None),
        ("03-02T09:00", "wait", "wait", "until 2026-03-03T09:00:00+07:00", {}, None),
        ("03-03T09:00", "wait", "timer", "delay due 2026-03-03T09:00:00+07:00", {}, None),
        ("03-03T09:00", "task", "effect", "create_task", {"title": "Call Lan", "assignee": "lan"}, None),
        ("03-03T09:00", "task", "end", "end of flow", {}, None),
    ]
    assert run.status == "done"
    assert dict(run.visits) == {"pick": 1, "std": 1, "wait": 1, "task": 1}


def test_the_text_tree_reads_in_order(sim_of) -> None:
    sim = sim_of({"flows.yaml": FLOW})
    sim.write("create", "contact", "1", {"full_name": "Lan", "segment": "vip", "score": 12})
    sim.write("update", "contact", "1", {"email": "lan@example.com"})
    sim.advance_by(timedelta(days=1))
    (run,) = runs_of(sim, "flow:welcome")
    text = render_run(run)
    assert text.splitlines() == [
        f"flow:welcome on contact 1 [done] ({run.id})",
        "  ├─ 2026-03-02 09:00:00 ? trigger: condition record.email and not before.email "
        '[record.email="lan@example.com", before.email=null] → True',
        "  ├─ 09:00:00 → pick: enter branch",
        "  ├─ 09:00:00 ? pick: condition record.segment == 'vip' and record.score >= 10 "
        '[record.segment="vip", record.score=12] → True',
        "  ├─ 09:00:00 ⇒ pick: decision branch 1 → vip",
        '  ├─ 09:00:00 ✉ vip: effect send_sms [to="0900000001", text="VIP Lan", encoding="GSM-7", segments=1, '
        "characters=7]",
        "  ├─ 09:00:00 → wait: enter delay",
        "  ├─ 09:00:00 ⏸ wait: wait until 2026-03-03T09:00:00+07:00",
        "  ├─ 2026-03-03 09:00:00 ⏰ wait: timer delay due 2026-03-03T09:00:00+07:00",
        '  ├─ 09:00:00 ✉ task: effect create_task [title="Call Lan", assignee="lan"]',
        "  └─ 09:00:00 ■ task: end end of flow",
    ]


def test_runs_and_effects_as_json(sim_of) -> None:
    sim = sim_of({"flows.yaml": FLOW})
    sim.write("create", "contact", "1", {"full_name": "Lan", "segment": "std"})
    sim.write("update", "contact", "1", {"email": "lan@example.com"})
    (run,) = runs_of(sim, "flow:welcome")
    data = json.loads(json.dumps(run_json(run)))
    assert {k: data[k] for k in ("automation", "object", "record_id", "status", "node")} == {
        "automation": "flow:welcome",
        "object": "contact",
        "record_id": "1",
        "status": "waiting",
        "node": "wait",
    }
    assert data["trace"][2] == {
        "at": "2026-03-02T09:00:00+07:00",
        "node": "pick",
        "kind": "condition",
        "detail": "record.segment == 'vip' and record.score >= 10",
        "values": {"record.segment": "std", "record.score": None},
        "result": False,
    }
    (effect,) = sim.state.effects
    assert effect_json(effect) == {
        "key": effect.key,
        "run_id": run.id,
        "action": "send_sms",
        "to": "0900000001",
        "text": "Hi Lan",
        "encoding": "GSM-7",
        "segments": 1,
        "characters": 6,
        "channel": "log",
        "object": "contact",
        "id": "1",
    }
    assert render_effect(effect) == (
        'send_sms via log for contact 1: {"to": "0900000001", "text": "Hi Lan", '
        '"encoding": "GSM-7", "segments": 1, "characters": 6}'
    )


def test_long_texts_are_cut_in_the_trace_but_not_in_the_effect(sim_of) -> None:
    flow = FLOW.replace('text: "Hi {{ record.full_name }}"', "text: \"{{ 'x' * 300 }}\"")
    sim = sim_of({"flows.yaml": flow})
    sim.write("create", "contact", "1", {})
    sim.write("update", "contact", "1", {"email": "lan@example.com"})
    (run,) = runs_of(sim, "flow:welcome")
    traced = next(e for e in run.trace if e.kind == "effect")
    assert len(traced.values["text"]) == 118 and traced.values["text"].endswith("…")
    assert len(sim.state.effects[0].params["text"]) == 300
