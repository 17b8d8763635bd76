"""Stage rules that wait: ``delay: {until, offset}`` follows a date field of the record (and what
happens when the moment has already passed), ``wait: {event}`` / ``wait: {changed}`` hold the
action until something happens, ``on_timeout`` decides what a wait that lasts too long does, and
leaving the stage cancels every kind of wait."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from flowctl.engine.rule_waits import timing
from flowctl.engine.scenario import run_scenarios
from flowctl.spec.config import load_bundle
from tests.engine.conftest import T0, actions, runs_of

VISITS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: booking}
spec:
  fields:
    full_name: {type: string}
    phone: {type: phone}
    visit_at: {type: datetime}
    visit_day: {type: date}
    quote_amount: {type: money}
    note: {type: string}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: bookings}
spec:
  object: booking
  stages:
    - id: booked
      rules:
        - name: remind
          delay: {until: "{{ record.visit_at }}", offset: -2h}
          action: send_sms
          to: "{{ record.phone }}"
          text: "Hen gap {{ record.full_name }}"
        - name: day before
          delay: {until: "{{ record.visit_day }}", offset: -1d}
          action: notify
          to: owner
          text: "tomorrow: {{ record.full_name }}"
    - id: quoted
      rules:
        - name: chase
          wait: {changed: [quote_amount], for: 2d}
          on_timeout: run
          action: notify
          to: owner
          text: "chase {{ record.full_name }}"
        - name: thank
          wait: {event: invoice.paid, for: 3d}
          on_timeout: skip
          action: send_sms
          to: "{{ record.phone }}"
          text: "cam on {{ event.amount }}"
        - name: watch note
          wait: {changed: note}
          action: add_note
          text: "note changed"
    - id: done
"""

BOOKING = {"full_name": "Mai", "phone": "0912345678"}


@pytest.fixture
def sim(sim_of):
    return sim_of({"visits.yaml": VISITS})


def status(sim, rule: str) -> str:
    (run,) = runs_of(sim, f"rule:bookings/{rule}")
    return run.status


def sms_sent(sim) -> list[str]:
    return [e.params["text"] for e in sim.state.effects if e.action == "send_sms"]


# ------------------------------------------------------------------ delay until


def test_a_reminder_goes_two_hours_before_the_visit(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-03T15:00:00+07:00"})
    assert status(sim, "booked/remind") == "waiting"
    (timer,) = [t for t in sim.state.timers.values() if t.node == "remind"]
    assert timer.due == T0.replace(day=3, hour=13)
    sim.advance(T0.replace(day=3, hour=12, minute=59))
    assert sms_sent(sim) == []
    sim.advance(T0.replace(day=3, hour=13))
    assert sms_sent(sim) == ["Hen gap Mai"]
    assert status(sim, "booked/remind") == "done"


def test_moving_the_visit_moves_the_reminder(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-03T15:00:00+07:00"})
    sim.write("update", "booking", "1", {"visit_at": "2026-03-05T10:00:00+07:00"})
    sim.advance(T0.replace(day=4))
    assert sms_sent(sim) == []  # nothing at the old moment
    (timer,) = [t for t in sim.state.timers.values() if t.node == "remind"]
    assert timer.due == T0.replace(day=5, hour=8)
    sim.advance(T0.replace(day=5, hour=8))
    assert sms_sent(sim) == ["Hen gap Mai"]
    (run,) = runs_of(sim, "rule:bookings/booked/remind")
    assert any("visit_at changed" in e.detail for e in run.trace)


def test_other_fields_leave_the_timer_alone(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-03T15:00:00+07:00"})
    before = dict(sim.state.timers)
    sim.write("update", "booking", "1", {"note": "vip"})
    assert sim.state.timers == before


def test_a_reminder_already_late_goes_at_once_while_the_visit_is_ahead(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-02T10:00:00+07:00"})  # in 1h
    assert sms_sent(sim) == ["Hen gap Mai"]
    (run,) = runs_of(sim, "rule:bookings/booked/remind")
    assert "runs now" in next(e.detail for e in run.trace if e.kind == "decision")


def test_a_reminder_for_a_visit_that_is_over_is_skipped(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-02T08:00:00+07:00"})  # 1h ago
    assert sms_sent(sim) == []
    (run,) = runs_of(sim, "rule:bookings/booked/remind")
    assert run.status == "done" and run.trace[-1].detail.endswith("passed: skipped")


def test_moving_the_visit_into_the_next_two_hours_sends_at_once(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-05T10:00:00+07:00"})
    sim.write("update", "booking", "1", {"visit_at": "2026-03-02T10:30:00+07:00"})
    assert sms_sent(sim) == ["Hen gap Mai"]
    assert sim.state.timers_of(runs_of(sim, "rule:bookings/booked/remind")[0].id) == []


def test_an_empty_field_waits_until_it_is_set(sim) -> None:
    sim.write("create", "booking", "1", BOOKING)
    (run,) = runs_of(sim, "rule:bookings/booked/remind")
    assert run.status == "waiting" and sim.state.timers_of(run.id) == []
    assert run.waiting_for == "until {{ record.visit_at }} -2h"
    sim.write("update", "booking", "1", {"visit_at": "2026-03-03T15:00:00+07:00"})
    sim.advance(T0.replace(day=3, hour=13))
    assert sms_sent(sim) == ["Hen gap Mai"]


def test_clearing_the_field_stops_the_timer_until_it_is_set_again(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-03T15:00:00+07:00"})
    sim.write("update", "booking", "1", {"visit_at": None})
    (run,) = runs_of(sim, "rule:bookings/booked/remind")
    assert run.status == "waiting" and sim.state.timers_of(run.id) == []
    sim.advance_by(timedelta(days=2))
    assert sms_sent(sim) == []


def test_a_date_field_means_midnight_in_the_config_time_zone(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_day": "2026-03-05"})
    (timer,) = [t for t in sim.state.timers.values() if t.node == "day before"]
    assert timer.due == T0.replace(day=4, hour=0)


def test_leaving_the_stage_cancels_the_reminder(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-03T15:00:00+07:00"})
    sim.write("move", "booking", "1", stage="done")
    sim.write("update", "booking", "1", {"visit_at": "2026-03-04T15:00:00+07:00"})
    sim.advance_by(timedelta(days=3))
    assert sms_sent(sim) == []
    assert status(sim, "booked/remind") == "cancelled"
    assert sim.state.timers == {}


# ------------------------------------------------------------------ wait


def quoted(sim) -> None:
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-09T15:00:00+07:00"})
    sim.write("move", "booking", "1", stage="quoted")


def test_a_change_of_a_watched_field_ends_the_wait(sim) -> None:
    quoted(sim)
    assert status(sim, "quoted/chase") == "waiting"
    sim.write("update", "booking", "1", {"note": "x"})
    assert status(sim, "quoted/chase") == "waiting"  # not a watched field
    sim.write("update", "booking", "1", {"quote_amount": 500})
    assert status(sim, "quoted/chase") == "done"
    assert "notify" in actions(sim)
    sim.advance_by(timedelta(days=3))
    assert actions(sim).count("notify") == 1  # its timeout was cancelled


def test_a_wait_that_times_out_runs_or_skips_as_on_timeout_says(sim) -> None:
    quoted(sim)
    sim.advance_by(timedelta(days=2))
    assert status(sim, "quoted/chase") == "done"
    assert actions(sim).count("notify") == 1  # on_timeout: run
    sim.advance_by(timedelta(days=1))
    (run,) = runs_of(sim, "rule:bookings/quoted/thank")
    assert run.status == "done" and "skipped" in run.trace[-1].detail
    assert sms_sent(sim) == []


def test_an_event_ends_the_wait_and_the_action_reads_it(sim) -> None:
    quoted(sim)
    sim.event("invoice.paid", "booking", "1", {"amount": 300})
    assert sms_sent(sim) == ["cam on 300"]
    assert status(sim, "quoted/thank") == "done"


def test_a_wait_without_for_waits_until_it_happens(sim) -> None:
    quoted(sim)
    sim.advance_by(timedelta(days=30))
    assert status(sim, "quoted/watch note") == "waiting"
    sim.write("update", "booking", "1", {"note": "x"})
    assert status(sim, "quoted/watch note") == "done"


def test_leaving_the_stage_cancels_the_waits(sim) -> None:
    quoted(sim)
    sim.write("move", "booking", "1", stage="done")
    sim.event("invoice.paid", "booking", "1", {"amount": 300})
    sim.write("update", "booking", "1", {"quote_amount": 500})
    sim.advance_by(timedelta(days=5))
    assert sms_sent(sim) == [] and "notify" not in actions(sim)
    assert {status(sim, f"quoted/{r}") for r in ("chase", "thank", "watch note")} == {"cancelled"}
    assert sim.state.timers == {}


def test_the_beauty_clinic_reminds_two_hours_before_the_consultation() -> None:
    loaded = load_bundle(Path(__file__).resolve().parents[2] / "examples" / "beauty-clinic")
    assert loaded.bundle is not None and not loaded.errors
    results = run_scenarios(loaded.bundle)
    mine = [r for r in results if "two hours" in r.name or "reminder goes at once" in r.name or "moves on" in r.name]
    assert len(mine) == 3
    assert all(r.passed for r in results), [f.message for r in results for f in r.failures]


# ------------------------------------------------------------------ flowctl test scenarios

SCENARIOS = """
apiVersion: flowctl/v1
kind: Test
metadata: {name: the quote is chased when it does not change in two days}
spec:
  now: "2026-03-02T09:00:00+07:00"
  records:
    - {object: booking, id: 1, pipeline: bookings, stage: booked, fields: {full_name: Mai, phone: "0912345678"}}
  steps:
    - move: {object: booking, id: 1, stage: quoted}
    - expect: {effects: []}
    - advance: 1d23h
    - expect: {effects: []}
    - advance: 1h
    - expect: {effects: [{action: notify, text: chase Mai}], exactly: true}
---
apiVersion: flowctl/v1
kind: Test
metadata: {name: a new quote ends the wait and the payment is thanked}
spec:
  now: "2026-03-02T09:00:00+07:00"
  records:
    - {object: booking, id: 1, pipeline: bookings, stage: booked, fields: {full_name: Mai, phone: "0912345678"}}
  steps:
    - move: {object: booking, id: 1, stage: quoted}
    - update: {object: booking, id: 1, fields: {quote_amount: 500}}
    - expect: {effects: [{action: notify, text: chase Mai}], exactly: true}
    - event: {event: invoice.paid, object: booking, id: 1, data: {amount: 500}}
    - expect: {effects: [{action: send_sms, text: cam on 500}], exactly: true}
    - advance: 5d
    - expect: {effects: []}
---
apiVersion: flowctl/v1
kind: Test
metadata: {name: leaving the stage cancels the waits}
spec:
  now: "2026-03-02T09:00:00+07:00"
  records:
    - {object: booking, id: 1, pipeline: bookings, stage: booked, fields: {full_name: Mai, phone: "0912345678"}}
  steps:
    - move: {object: booking, id: 1, stage: quoted}
    - move: {object: booking, id: 1, stage: done}
    - update: {object: booking, id: 1, fields: {quote_amount: 500, note: x}}
    - event: {event: invoice.paid, object: booking, id: 1, data: {amount: 500}}
    - advance: 5d
    - expect: {effects: []}
---
apiVersion: flowctl/v1
kind: Test
metadata: {name: the reminder follows the visit}
spec:
  now: "2026-03-02T09:00:00+07:00"
  steps:
    - create: {object: booking, id: 1,
               fields: {full_name: Mai, phone: "0912345678", visit_at: "2026-03-03T15:00:00+07:00"}}
    - update: {object: booking, id: 1, fields: {visit_at: "2026-03-04T09:00:00+07:00"}}
    - advance: {to: "2026-03-04T06:59:00+07:00"}
    - expect: {effects: []}
    - advance: 1m
    - expect: {effects: [{action: send_sms, text: Hen gap Mai}], exactly: true}
"""


def test_waiting_rules_in_flowctl_test_scenarios(bundle_of) -> None:
    results = run_scenarios(bundle_of({"visits.yaml": VISITS, "tests/waits.yaml": SCENARIOS}))
    assert len(results) == 4
    assert all(r.passed for r in results), [(r.name, f.message) for r in results for f in r.failures]


def test_graphs_say_when_a_waiting_rule_acts(bundle_of) -> None:
    stages = bundle_of({"visits.yaml": VISITS}).pipelines["bookings"].stages
    assert [timing(rule) for stage in stages for rule in stage.rules] == [
        "until visit_at -2h",
        "until visit_day -1d",
        "on change of quote_amount (2d, then run)",
        "on invoice.paid (3d, then skip)",
        "on change of note",
    ]


def test_a_delay_then_a_wait(sim_of) -> None:
    pipeline = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: deals}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - {name: late payer, delay: 1d, wait: {event: invoice.paid, for: 2d}, on_timeout: run,
           action: notify, to: owner, text: "paid or not"}
"""
    sim = sim_of({"deals.yaml": pipeline})
    sim.write("create", "deal", "1", {"client_name": "Mai", "owner": "lan"})
    sim.event("invoice.paid", "deal", "1", {})  # during the delay: not waited for yet
    sim.advance_by(timedelta(days=1))
    (run,) = runs_of(sim, "rule:deals/new/late payer")
    assert (run.status, run.waiting_for) == ("waiting", "invoice.paid")
    sim.advance_by(timedelta(days=2))
    assert actions(sim) == ["notify"]


def test_a_flow_delay_node_takes_an_offset_too(sim_of) -> None:
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: remind}
spec:
  object: booking
  trigger: {on: created}
  start: wait
  nodes:
    wait: {type: delay, until: "{{ record.visit_at }}", offset: -1h, next: sms}
    sms: {type: send_sms, text: "soon", to: "{{ record.phone }}"}
"""
    sim = sim_of({"visits.yaml": VISITS, "flow.yaml": flow})
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-02T15:00:00+07:00"})
    (timer,) = [t for t in sim.state.timers.values() if t.node == "wait"]
    assert timer.due == T0.replace(hour=14)
