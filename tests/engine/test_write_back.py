"""Write-back effects: each action on a record of an object with ``write_back:`` gives one more
effect for the CRM's channel, in the CRM's names and keyed from the action's effect; an update
that changes nothing (the CRM echoing what flowctl wrote) runs nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flowctl.engine.simulator import Simulator
from flowctl.engine.state import Record
from flowctl.engine.write_back import echoed

OBJECTS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string}
    amount: {type: money}
    note: {type: string}
    owner: {type: user}
  write_back:
    channel: b24
    fields: {title: TITLE, amount: OPPORTUNITY}
    stages: {new: NEW, won: WON}
    users: {lan: 1, minh: 2}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields: {full_name: string}
---
apiVersion: flowctl/v1
kind: Channel
metadata: {name: b24}
spec: {type: bitrix24, url: "${B24_WEBHOOK_URL}"}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: won
      final: success
"""


def sim(sim_of: Callable[..., Simulator], nodes: str, trigger: str = "{on: event, event: go}") -> Simulator:
    flow = f"""
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: act}}
spec:
  object: deal
  trigger: {trigger}
  start: a
  nodes:
{nodes}"""
    return sim_of({"objects.yaml": OBJECTS, "flows.yaml": flow})


def written(s: Simulator) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e.key, e.params["method"], e.params["params"]) for e in s.state.effects if e.channel == "b24"]


def test_field_stage_and_owner_changes_go_back_in_the_crms_names(sim_of: Callable[..., Simulator]) -> None:
    s = sim(
        sim_of,
        """\
    a: {type: update_fields, set: {amount: "7000", note: "not mapped"}, next: b}
    b: {type: move_stage, stage: won, next: c}
    c: {type: handover, to: {user: minh}}
""",
    )
    s.write("create", "deal", "7", {"title": "Sofa", "amount": 5000})
    s.event("go", "deal", "7")
    calls = written(s)
    assert [(method, params) for _, method, params in calls] == [
        ("crm.deal.update", {"id": "7", "fields": {"OPPORTUNITY": 7000}}),
        ("crm.deal.update", {"id": "7", "fields": {"STAGE_ID": "WON"}}),
        ("crm.deal.update", {"id": "7", "fields": {"ASSIGNED_BY_ID": "2"}}),
    ]
    keys = {e.key for e in s.state.effects if e.channel != "b24"}
    assert all(key.endswith(":wb") and key.removesuffix(":wb") in keys for key, _, _ in calls)


def test_a_change_the_crm_has_no_name_for_is_not_written_back(sim_of: Callable[..., Simulator]) -> None:
    s = sim(sim_of, "    a: {type: update_fields, set: {note: internal}}\n")
    s.write("create", "deal", "7", {"title": "Sofa"})
    s.event("go", "deal", "7")
    assert written(s) == []


def test_tasks_notes_and_created_deals(sim_of: Callable[..., Simulator]) -> None:
    s = sim(
        sim_of,
        """\
    a: {type: create_task, title: "Call {{ record.title }}", assignee: {user: lan}, description: "soon", next: b}
    b: {type: add_note, text: "called", next: c}
    c: {type: create_record, object: deal, set: {title: "Follow-up {{ record.title }}", amount: 10}}
""",
    )
    s.write("create", "deal", "7", {"title": "Sofa"})
    s.event("go", "deal", "7")
    (task, note, created) = written(s)
    assert task[1:] == (
        "tasks.task.add",
        {"fields": {"TITLE": "Call Sofa", "UF_CRM_TASK": ["D_7"], "RESPONSIBLE_ID": "1", "DESCRIPTION": "soon"}},
    )
    assert note[1:] == (
        "crm.timeline.comment.add",
        {"fields": {"ENTITY_ID": "7", "ENTITY_TYPE": "deal", "COMMENT": "called"}},
    )
    assert created[1] == "crm.deal.add"
    assert created[2] == {"fields": {"TITLE": "Follow-up Sofa", "OPPORTUNITY": 10}}  # the portal places it


def test_an_update_that_changes_nothing_runs_nothing(sim_of: Callable[..., Simulator]) -> None:
    s = sim(sim_of, '    a: {type: add_note, text: "amount {{ record.amount }}"}\n', trigger="{on: updated}")
    s.write("create", "deal", "7", {"title": "Sofa", "amount": 5000})
    before = len(s.state.effects)
    s.write("update", "deal", "7", {"title": "Sofa", "amount": 5000})  # the CRM echoing the stored values
    assert len(s.state.effects) == before and not s.state.runs
    s.write("update", "deal", "7", {"amount": 6000})  # a real change runs, and is written back
    assert [method for _, method, _ in written(s)] == ["crm.timeline.comment.add"]


def test_a_late_echo_of_an_older_write_back_does_not_undo_a_newer_change(bundle_of: Callable[..., Any]) -> None:
    spec = bundle_of({"objects.yaml": OBJECTS}).objects["deal"].write_back
    stored = Record(object="deal", id="7", fields={"title": "Sofa", "amount": 7000}, stage="won", owner="minh")
    # flowctl wrote 6000, then 7000, moved it to WON and handed it to minh; the portal reports 6000 late
    written = [{"OPPORTUNITY": 6000}, {"OPPORTUNITY": 7000}, {"STAGE_ID": "WON"}, {"ASSIGNED_BY_ID": "2"}]
    late = replace(stored, fields={"title": "Sofa", "amount": 6000.0}, stage="new", owner="lan")
    assert echoed(spec, stored, late, [{"OPPORTUNITY": 6000}, {"STAGE_ID": "NEW"}, {"ASSIGNED_BY_ID": "1"}]) == stored
    kept = echoed(spec, stored, late, written)
    assert kept.fields["amount"] == 7000 and (kept.stage, kept.owner) == ("new", "lan")  # not flowctl's values
    human = replace(stored, fields={"title": "Sofa, blue", "amount": 9000})
    assert echoed(spec, stored, human, written) == human  # what flowctl never wrote is a change


def test_a_put_that_maps_no_owner_keeps_the_owner_field(bundle_of: Callable[..., Any]) -> None:
    spec = bundle_of({"objects.yaml": OBJECTS}).objects["deal"].write_back
    stored = Record(object="deal", id="7", fields={"title": "Sofa", "owner": "minh"}, owner="minh")
    put = replace(stored, fields={"title": "Sofa"})  # the Source's put: the owner stays, its field went
    assert echoed(spec, stored, put, []) == stored
