"""Stage rules that wait (``delay: {until, offset}``, ``wait:``) together with business time
(``delay: {for, calendar}``, ``only_during:``): each keeps its meaning when they meet."""

from __future__ import annotations

from datetime import timedelta

from flowctl.engine.rule_waits import timing
from tests.engine.conftest import CONFIG, T0, effects, runs_of

CALENDAR = (
    CONFIG
    + """
  calendars:
    office:
      days: [mon, tue, wed, thu, fri]
      hours: ["08:00-12:00", "13:30-17:30"]
"""
)

BOOKINGS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: booking}
spec:
  fields:
    full_name: {type: string}
    phone: {type: phone}
    visit_at: {type: datetime}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: bookings}
spec:
  object: booking
  stages:
    - id: booked
      rules:
        - name: call the day before
          delay: {until: "{{ record.visit_at }}", offset: -1d}
          action: create_task
          title: "Call {{ record.full_name }}"
          only_during: office
        - name: thank
          delay: {for: 4h, calendar: office}
          wait: {event: invoice.paid, for: 3d}
          on_timeout: skip
          action: send_sms
          to: "{{ record.phone }}"
          text: "cam on {{ event.amount }}"
          only_during: office
    - id: done
"""

BOOKING = {"full_name": "Mai", "phone": "0912345678"}


def test_an_until_moment_at_night_is_held_to_working_hours_and_still_follows_the_field(sim_of) -> None:
    sim = sim_of({"flowctl.yaml": CALENDAR, "b.yaml": BOOKINGS})
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-05T20:00:00+07:00"})
    sim.write("update", "booking", "1", {"visit_at": "2026-03-05T21:00:00+07:00"})
    sim.advance(T0.replace(day=4, hour=21))  # the moment: Wednesday 21:00, after closing
    assert [e.action for e in effects(sim)] == []
    (run,) = runs_of(sim, "rule:bookings/booked/call the day before")
    assert run.status == "waiting"
    sim.advance(T0.replace(day=5, hour=7, minute=59))
    assert [e.action for e in effects(sim)] == []
    sim.advance_by(timedelta(minutes=1))
    assert [e.action for e in effects(sim)] == ["create_task"]


def test_a_calendar_delay_then_a_wait_then_a_hold_keeps_the_event(sim_of) -> None:
    sim = sim_of({"flowctl.yaml": CALENDAR, "b.yaml": BOOKINGS}, now=T0.replace(hour=16))
    sim.write("create", "booking", "1", {**BOOKING, "visit_at": "2026-03-20T10:00:00+07:00"})
    sim.advance(T0.replace(day=3, hour=10, minute=29))  # 4h of office time: Tuesday 10:30
    (run,) = runs_of(sim, "rule:bookings/booked/thank")
    assert run.waiting_for == ""
    sim.advance_by(timedelta(minutes=1))
    (run,) = runs_of(sim, "rule:bookings/booked/thank")
    assert run.waiting_for == "invoice.paid"
    sim.advance(T0.replace(day=3, hour=22))
    sim.event("invoice.paid", "booking", "1", {"amount": 500000})  # paid at night: the SMS waits
    assert [e.action for e in effects(sim)] == []
    sim.advance(T0.replace(day=4, hour=8))
    (sms,) = effects(sim)
    assert sms.action == "send_sms" and sms.params["text"] == "cam on 500000"


def test_graphs_say_both(bundle_of) -> None:
    rules = bundle_of({"flowctl.yaml": CALENDAR, "b.yaml": BOOKINGS}).pipelines["bookings"].stages[0].rules
    assert [timing(r) for r in rules] == [
        "until visit_at -1d",
        "after 4h of office time, on invoice.paid (3d, then skip)",
    ]
