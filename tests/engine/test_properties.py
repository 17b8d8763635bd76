"""Random sequences of requests and time over a config with every kind of automation:

* the engine never raises (requests the API would refuse raise ``SimulationError`` only);
* no effect is emitted twice: effect keys are unique over the whole sequence;
* the same sequence on a fresh simulator gives the same effects, runs, records and problems.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowctl.engine.simulator import SimulationError, Simulator
from flowctl.engine.state import Run
from flowctl.spec import model as m
from tests.engine.conftest import T0, make_bundle

FLOWS = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: welcome}
spec:
  object: contact
  trigger: {on: updated, changed: [email], if: "record.email and not before.email"}
  mode: single
  start: pick
  nodes:
    pick: {type: branch, branches: [{if: "record.segment == 'vip'", next: vip}], default: std}
    vip: {type: send_sms, text: "VIP {{ record.full_name }}", next: wait}
    std: {type: send_email, template: hi, next: wait}
    wait: {type: wait_event, event: ticket.created, for: 2d, on_timeout: call, next: done}
    call: {type: create_task, title: "Gọi {{ record.full_name }}", assignee: {rule: rr}, next: done}
    done: {type: goto_flow, flow: nurture}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: nurture}
spec:
  object: contact
  mode: queued
  start: later
  nodes:
    later: {type: delay, for: 1d, next: tip}
    tip: {type: send_email, template: hi, next: halt}
    halt: {type: stop}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: nag}
spec:
  object: contact
  trigger: {on: created}
  mode: parallel
  max_parallel: 2
  start: task
  nodes:
    task: {type: create_task, title: "call {{ record.id }}", due: 1h, next: pause}
    pause: {type: delay, for: 1h, next: check}
    check: {type: branch, branches: [{if: "record.status == 'active'", next: halt}], default: again}
    again: {type: goto, node: task, max_visits: 3}
    halt: {type: stop}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: reminder}
spec:
  object: contact
  trigger: {on: event, event: ping}
  mode: restart
  start: first
  nodes:
    first: {type: send_sms, text: "ping {{ event.n }}", next: until}
    until: {type: delay, until: "{{ record.due_date }} 09:00", next: second}
    second: {type: notify, to: owner, text: "due {{ record.due_date }}"}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: counter}
spec:
  object: contact
  trigger: {on: event, event: ping}
  mode: queued
  start: wait
  nodes:
    wait: {type: delay, for: 30m, next: bump}
    bump: {type: update_fields, set: {score: "{{ (record.score or 0) + 1 }}"}}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: goodbye}
spec:
  object: contact
  trigger: {on: deleted}
  start: hook
  nodes:
    hook: {type: webhook, url: "https://example.com/deleted/{{ record.id }}"}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: congrats}
spec:
  object: deal
  trigger: {on: stage_changed, to: won}
  mode: parallel
  start: tell
  nodes:
    tell: {type: notify, to: supervisor, text: "won {{ record.id }}"}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: handover}
spec:
  object: deal
  trigger: {on: updated, changed: [note], if: "record.note == 'reassign'"}
  mode: restart
  start: give
  nodes:
    give: {type: handover, to: {rule: least}, next: wait}
    wait: {type: wait_event, event: deal.updated, for: 1d, on_timeout: move, next: done}
    move: {type: move_stage, stage: documents, next: done}
    done: {type: stop}
"""

PIPELINE = """
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
        - {name: sms, action: send_sms, text: "hello {{ record.client_name }}", to: "0900000001"}
        - {name: remind, delay: 30m, if: "record.stage == 'new'", action: notify, to: owner, text: "call"}
    - id: documents
      fields: [contract_no]
      rules:
        - {name: invoice, action: create_document, template: doc, save_as: invoice}
        - {name: mail, after: invoice, action: send_email, template: hi, to: "a@example.com", attach: [doc]}
        - {name: nudge, delay: 1d, if: "record.stage == 'documents'", action: notify, to: supervisor, text: "x"}
    - id: prepayment
      triggers:
        - {on: event, event: invoice.paid}
        - on: updated
          changed: [paid_amount]
          if: "record.paid_amount and record.amount and record.paid_amount >= record.amount * 0.5"
      rules:
        - {name: prepare, action: create_task, title: "prepare {{ record.id }}", assignee: {user: tuan}}
        - {name: score, action: update_fields, set: {note: "prepaid"}}
    - id: won
      final: success
      triggers:
        - {on: event, event: order.delivered}
    - id: lost
      final: failure
      fields: [lost_reason]
      triggers:
        - {on: event, event: order.cancelled}
"""

OTHER = """
apiVersion: flowctl/v1
kind: Template
metadata: {name: hi}
spec: {channel: email, subject: "Hi {{ record.id }}", text: "."}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: doc}
spec: {channel: document, html: "<p>{{ record.id }}</p>"}
---
apiVersion: flowctl/v1
kind: AllocationRule
metadata: {name: rr}
spec: {strategy: round_robin, users: [lan, minh, tuan]}
---
apiVersion: flowctl/v1
kind: AllocationRule
metadata: {name: least}
spec: {strategy: least_loaded, users: [lan, minh]}
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> m.Bundle:
    return make_bundle(
        tmp_path_factory.mktemp("props"), {"flows.yaml": FLOWS, "pipelines.yaml": PIPELINE, "other.yaml": OTHER}
    )


IDS = st.sampled_from(["1", "2", "3"])
CONTACT_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "full_name": st.sampled_from(["Lan", "Minh", "Nguyễn Thị Hà", ""]),
        "email": st.sampled_from([None, None, "a@example.com", "b@example.com"]),
        "segment": st.sampled_from([None, "vip", "std"]),
        "status": st.sampled_from([None, "active", "inactive"]),
        "score": st.one_of(st.none(), st.integers(-5, 50)),
        "due_date": st.sampled_from([None, "2026-03-03", "2026-03-10", "2025-12-31", "not a date"]),
        "owner": st.sampled_from([None, "lan", "minh", "hoa"]),
    },
)
DEAL_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "client_name": st.sampled_from(["Mai", "Hùng"]),
        "amount": st.one_of(st.none(), st.integers(0, 2000)),
        "paid_amount": st.one_of(st.none(), st.integers(0, 2000)),
        "contract_no": st.sampled_from([None, "", "HD-1"]),
        "lost_reason": st.sampled_from([None, "price"]),
        "note": st.sampled_from([None, "reassign", "x"]),
        "owner": st.sampled_from([None, "lan", "minh"]),
    },
)
STAGES = st.sampled_from(["new", "documents", "documents", "prepayment", "won", "lost", "nowhere"])

OPS = st.one_of(
    st.tuples(st.just("create"), st.just("contact"), IDS, CONTACT_FIELDS),
    st.tuples(st.just("update"), st.just("contact"), IDS, CONTACT_FIELDS),
    st.tuples(st.just("delete"), st.just("contact"), IDS),
    st.tuples(
        st.just("event"),
        st.just("contact"),
        IDS,
        st.sampled_from(["ping", "ticket.created", "other"]),
        st.fixed_dictionaries({"n": st.integers(0, 9)}),
    ),
    st.tuples(st.just("create"), st.just("deal"), IDS, DEAL_FIELDS),
    st.tuples(st.just("update"), st.just("deal"), IDS, DEAL_FIELDS),
    st.tuples(st.just("delete"), st.just("deal"), IDS),
    st.tuples(st.just("move"), st.just("deal"), IDS, STAGES),
    st.tuples(
        st.just("event"),
        st.just("deal"),
        IDS,
        st.sampled_from(["invoice.paid", "order.delivered", "order.cancelled", "reopened"]),
        st.just({}),
    ),
    st.tuples(st.just("advance"), st.integers(0, 4 * 24 * 3600)),
)


#: Every sequence starts from these records (created, so their automations start too).
START = [
    ("create", "contact", "1", {"full_name": "Lan", "owner": "lan", "due_date": "2026-03-05"}),
    ("create", "contact", "2", {"full_name": "Minh", "segment": "vip", "owner": "minh"}),
    ("create", "deal", "1", {"client_name": "Mai", "amount": 1000, "contract_no": "HD-1", "owner": "lan"}),
    ("create", "deal", "2", {"client_name": "Hùng", "amount": 500, "owner": "minh"}),
]


def play(bundle: m.Bundle, ops: list[tuple[Any, ...]]) -> Simulator:
    sim = Simulator(bundle, T0)
    for op in [*START, *ops]:
        try:
            if op[0] == "advance":
                sim.advance_by(timedelta(seconds=op[1]))
            elif op[0] == "event":
                sim.event(op[3], op[1], op[2], op[4])
            elif op[0] == "move":
                sim.write("move", op[1], op[2], stage=op[3])
            elif op[0] == "delete":
                sim.write("delete", op[1], op[2])
            else:
                sim.write(op[0], op[1], op[2], op[3])
        except SimulationError:
            pass  # what the API refuses with a 4xx: a missing record, an unknown stage, empty fields
    sim.advance_by(timedelta(days=30))  # let everything pending come due
    return sim


def snapshot(sim: Simulator) -> dict[str, Any]:
    def run(r: Run) -> Any:
        return (
            r.id,
            r.automation,
            r.status,
            r.node,
            r.waiting_for,
            dict(r.visits),
            r.steps,
            r.seq,
            tuple(e.to_json() for e in r.trace),
        )

    return {
        "effects": [(e.key, e.run_id, e.to_json()) for e in sim.state.effects],
        "runs": sorted(run(r) for r in sim.state.runs.values()),
        "records": sorted(
            (k, dict(r.fields), r.stage, r.owner, r.version, r.deleted) for k, r in sim.state.records.items()
        ),
        "problems": [(p.code, p.message) for p in sim.state.problems],
        "timers": sorted((t.id, t.due) for t in sim.state.timers.values()),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, max_size=40))
def test_random_sequences_never_crash_never_repeat_effects_and_replay_identically(
    bundle: m.Bundle, ops: list[tuple[Any, ...]]
) -> None:
    first = play(bundle, ops)
    keys = [e.key for e in first.state.effects]
    assert len(keys) == len(set(keys)), "an effect key was emitted twice"
    assert not any(p.code == "chain_depth" for p in first.state.problems)
    second = play(bundle, ops)
    assert snapshot(first) == snapshot(second)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, max_size=25))
def test_a_timer_delivered_twice_does_nothing_the_second_time(bundle: m.Bundle, ops: list[tuple[Any, ...]]) -> None:
    """The daemon may redeliver a timer after a crash: the engine must not act on it twice."""
    from flowctl.engine.state import TimerFired

    sim = play(bundle, ops[: len(ops) // 2])
    fired = []
    original = sim._handle

    def handle(event):  # record every timer the simulator fires, then fire each once more
        step = original(event)
        if isinstance(event, TimerFired):
            fired.append(event)
        return step

    sim._handle = handle  # type: ignore[method-assign]
    sim.advance_by(timedelta(days=5))
    before = len(sim.state.effects)
    for event in fired:
        step = sim.engine.handle(sim.state, event, sim.now)
        assert step.effects == [] and step.timers == []
    assert len(sim.state.effects) == before
