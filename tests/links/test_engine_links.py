"""Links and create_record in the engine: linked.X reads, update_fields target, created records."""

from __future__ import annotations

from datetime import timedelta

from flowctl.engine import changes
from flowctl.engine.simulator import Simulator
from flowctl.engine.state import Record
from tests.engine.conftest import T0, make_bundle
from tests.links.support import FILES

MAI = Record(object="customer", id="c1", fields={"full_name": "Trần Thị Mai", "phone": "0912345678", "vip": True})


def simulator(tmp_path) -> Simulator:
    sim = Simulator(make_bundle(tmp_path, FILES), T0)
    sim.seed(MAI)
    return sim


def test_a_condition_and_a_template_read_the_linked_record(tmp_path) -> None:
    sim = simulator(tmp_path)
    step = sim.write("create", "deal", "d1", {"title": "Sofa", "amount": 100, "customer": "c1", "owner": "lan"})
    (sms,) = [e for e in step.effects if e.action == "send_sms"]
    assert sms.params["to"] == "0912345678"
    assert sms.params["text"] == "Chao Tran Thi Mai"
    (run,) = [r for r in sim.state.runs.values() if r.automation == "flow:greet vip"]
    assert any(entry.values.get("linked.customer.vip") is True for entry in run.trace)


def test_an_empty_or_missing_link_reads_as_blank_fields(tmp_path) -> None:
    sim = simulator(tmp_path)
    step = sim.write("create", "deal", "d2", {"title": "Sofa", "amount": 100})
    assert [e for e in step.effects if e.action == "send_sms"] == []


def test_won_creates_the_invoice_once_notes_it_and_changes_the_linked_customer(tmp_path) -> None:
    sim = simulator(tmp_path)
    sim.write("create", "deal", "d1", {"title": "Sofa", "amount": 100, "customer": "c1", "owner": "lan"})
    step = sim.write("move", "deal", "d1", stage="won")
    invoices = [r for r in sim.state.records.values() if r.object == "invoice"]
    (invoice,) = invoices
    assert invoice.fields["deal"] == "d1" and invoice.fields["amount"] == 100
    assert (invoice.pipeline, invoice.stage, invoice.owner) == ("billing", "draft", "lan")
    by_action = {e.action: e for e in step.effects}
    assert by_action["create_record"].params["created_id"] == invoice.id
    # the invoice's own pipeline rule ran, inside the same step
    assert by_action["notify"].params["text"] == "Invoice for deal d1: 100"
    assert by_action["add_note"].params["text"] == f"Invoice {invoice.id} for 100"
    # update_fields with target: the customer changed, and its own flow ran
    assert sim.state.records[("customer", "c1")].fields["last_purchase"] == "Sofa"
    assert by_action["create_task"].params["title"] == "Call Trần Thị Mai about Sofa"
    assert any(s.object == "invoice" and s.stage == "draft" for s in step.stage_entries)


def test_a_replayed_step_finds_the_created_record_and_creates_none(tmp_path) -> None:
    sim = simulator(tmp_path)
    sim.write("create", "deal", "d1", {"title": "Sofa", "amount": 100, "customer": "c1"})
    won = changes.move("c9", sim.state.records[("deal", "d1")], "won", "")
    first = sim.engine.handle(sim.state, won, sim.now)
    (invoice,) = [r for k, r in first.records.items() if k[0] == "invoice"]
    sim.state.apply(first)
    again = sim.engine.handle(sim.state, won, sim.now)  # a retry or a replay of the same input
    (effect,) = [e for e in again.effects if e.action == "create_record"]
    assert effect.params["created_id"] == invoice.id and effect.params["existing"] is True
    assert not any(k[0] == "invoice" for k in again.records)


def test_a_link_to_a_record_that_is_not_there_fails_the_action(tmp_path) -> None:
    sim = simulator(tmp_path)
    sim.write("create", "deal", "d1", {"title": "Sofa", "amount": 100, "customer": "c1"})
    sim.state.records[("customer", "c1")] = Record(object="customer", id="c1", fields=MAI.fields, deleted=True)
    step = sim.write("move", "deal", "d1", stage="won")
    messages = [p.message for p in step.problems]
    assert any("target customer links to no live customer" in m for m in messages), messages


CHAIN = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: step}
spec:
  fields:
    parent: {type: ref, object: step}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: spawn}
spec:
  object: step
  trigger: {on: created}
  start: child
  nodes:
    child: {type: create_record, object: step, set: {parent: "{{ record.id }}"}}
"""


def test_records_that_create_records_stop_at_the_chain_depth(tmp_path) -> None:
    sim = Simulator(make_bundle(tmp_path, {"chain.yaml": CHAIN}, allow=("E080",)), T0)
    step = sim.write("create", "step", "s0", {})
    created = [r for r in sim.state.records.values() if r.object == "step"]
    assert len(created) == 1 + 8 + 1  # the first, one per level, and the one written past the limit
    assert [p.code for p in step.problems] == ["chain_depth"]


CARE = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: gift}
spec:
  fields:
    customer: {type: ref, object: customer, required: true}
    title: {type: string}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: customer}
spec:
  fields:
    full_name: {type: string}
    birthday: {type: date}
---
apiVersion: flowctl/v1
kind: CareProcess
metadata: {name: birthday gift}
spec:
  object: customer
  when: {anniversary_of: birthday, at: "08:00"}
  actions:
    - {action: create_record, object: gift, set: {customer: "{{ record.id }}", title: "Quà {{ record.full_name }}"},
       save_as: gift}
    - {action: add_note, text: "gift {{ saved.gift.title }}"}
"""


def test_a_care_process_creates_a_record_once_per_occurrence(tmp_path) -> None:
    sim = Simulator(make_bundle(tmp_path, {"objects.yaml": CARE}), T0)
    sim.seed(Record(object="customer", id="c1", fields={"full_name": "Mai", "birthday": "1990-03-03"}))
    sim.advance_by(timedelta(days=2))
    gifts = [r for r in sim.state.records.values() if r.object == "gift"]
    assert [(g.fields["customer"], g.fields["title"]) for g in gifts] == [("c1", "Quà Mai")]
    assert [e.params["text"] for e in sim.state.effects if e.action == "add_note"] == ["gift Quà Mai"]
