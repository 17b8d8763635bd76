"""Business time in the engine: calendar delays and ``only_during:`` holds, played by ``flowctl
test`` scenarios that step over lunch, a weekend, a holiday and a DST change to the minute."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flowctl.engine.scenario import run_scenarios
from flowctl.engine.simulator import Simulator
from flowctl.engine.state import Run, TimerFired
from tests.engine.conftest import CONFIG, T0, TZ, make_bundle

CALENDARS = (
    CONFIG
    + """
  calendars:
    office:
      days: [mon, tue, wed, thu, fri, sat]
      hours: ["08:00-12:00", "13:30-17:30"]
      holidays: [2026-03-09]
    berlin:
      days: [mon, tue, wed, thu, fri, sat, sun]
      hours: ["01:00-04:00"]
      timezone: Europe/Berlin
    newyork:
      days: [mon, tue, wed, thu, fri, sat, sun]
      hours: ["01:00-03:00"]
      timezone: America/New_York
"""
)

PIPELINE = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: leads}
spec:
  object: contact
  stages:
    - id: new
      rules:
        - name: call back
          delay: {for: 4h, calendar: office}
          action: create_task
          title: "Gọi lại {{ record.full_name }}"
        - {name: welcome, action: send_sms, text: "Xin chao", to: "{{ record.phone }}", only_during: office}
    - id: done
"""

FLOW = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: night-shift}
spec:
  object: deal
  trigger: {on: created}
  start: wait
  nodes:
    wait: {type: delay, for: 2h30m, calendar: berlin, next: tell}
    tell: {type: notify, to: {user: lan}, text: "{{ record.title }}", only_during: office, next: task}
    task: {type: create_task, title: "after {{ record.title }}"}
"""

CARE = """
apiVersion: flowctl/v1
kind: CareProcess
metadata: {name: morning}
spec:
  object: contact
  when: {cron: "0 6 * * *"}
  on_missed: skip
  actions:
    - {action: add_note, text: "checked {{ occurrence }}"}
    - action: send_sms
      text: "Chao {{ record.full_name }} ({{ occurrence }})"
      to: "{{ record.phone }}"
      only_during: office
    - {action: add_note, text: "sent {{ occurrence }}"}
"""


def play(tmp_path: Path, tests: str) -> None:
    bundle = make_bundle(
        tmp_path,
        {"flowctl.yaml": CALENDARS, "pipeline.yaml": PIPELINE, "flow.yaml": FLOW, "tests/t.yaml": tests},
    )
    results = run_scenarios(bundle)
    assert results
    for result in results:
        assert result.passed, [(f.message, f.trace) for f in result.failures]


def test_a_calendar_delay_skips_sunday_and_a_holiday(tmp_path: Path) -> None:
    # Saturday 7 Mar 2026 16:00 + 4h of office time: 1.5h Saturday; Sunday off; Monday 9 Mar is a
    # holiday; Tuesday 08:00-10:30 is the other 2.5h.
    play(
        tmp_path,
        """
apiVersion: flowctl/v1
kind: Test
metadata: {name: call back on Tuesday}
spec:
  now: "2026-03-07T16:00:00+07:00"
  steps:
    - create: {object: contact, id: 1, stage: new, fields: {full_name: Lan, phone: "0901234567"}}
    - expect: {effects: [{action: send_sms, to: "0901234567"}], exactly: true}
    - advance: {to: "2026-03-10T10:29:00+07:00"}
    - expect: {effects: []}
    - advance: 1m
    - expect: {effects: [{action: create_task, title: "Gọi lại Lan"}], exactly: true}
""",
    )


def test_an_action_outside_hours_waits_for_the_next_working_minute(tmp_path: Path) -> None:
    play(
        tmp_path,
        """
apiVersion: flowctl/v1
kind: Test
metadata: {name: sms held over lunch}
spec:
  now: "2026-03-03T12:10:00+07:00"
  steps:
    - create: {object: contact, id: 1, stage: new, fields: {full_name: Lan, phone: "0901234567"}}
    - expect: {effects: []}
    - advance: {to: "2026-03-03T13:29:59+07:00"}
    - expect: {effects: []}
    - advance: 1s
    - expect: {effects: [{action: send_sms, text: Xin chao}], exactly: true}
---
apiVersion: flowctl/v1
kind: Test
metadata: {name: leaving the stage cancels a held action}
spec:
  now: "2026-03-07T18:00:00+07:00"
  steps:
    - create: {object: contact, id: 1, stage: new, fields: {full_name: Lan, phone: "0901234567"}}
    - move: {object: contact, id: 1, stage: done}
    - advance: 5d
    - expect: {effects: []}
""",
    )


def test_a_flow_delay_counts_berlin_night_hours_across_the_spring_jump(tmp_path: Path) -> None:
    # 01:00-04:00 Berlin on 29 Mar 2026 (clocks jump 02:00 -> 03:00) holds two real hours, so a
    # 2h30m delay from 01:00 ends at 01:30 the next night (23:30 UTC, 06:30 in Saigon): outside
    # office hours, so the notice waits for 08:00 and the task after it runs then too.
    play(
        tmp_path,
        """
apiVersion: flowctl/v1
kind: Test
metadata: {name: night shift across DST}
spec:
  now: "2026-03-29T01:00:00+01:00"
  steps:
    - create: {object: deal, id: 7, fields: {title: Sofa}}
    - advance: {to: "2026-03-29T23:29:00Z"}
    - expect: {effects: []}
    - advance: {to: "2026-03-30T07:59:00+07:00"}
    - expect: {effects: []}
    - advance: 1m
    - expect: {effects: [{action: notify, text: Sofa}, {action: create_task, title: after Sofa}], exactly: true}
""",
    )


NEW_YORK_FLOW = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: late-shift}
spec:
  object: deal
  trigger: {on: created}
  start: wait
  nodes:
    wait: {type: delay, for: 2h30m, calendar: newyork, next: tell}
    tell: {type: notify, to: {user: lan}, text: "{{ record.title }}"}
"""


def test_a_flow_delay_counts_the_hour_new_york_falls_back(tmp_path: Path) -> None:
    # 1 Nov 2026: 02:00 EDT falls back to 01:00 EST, so 01:00-03:00 holds three real hours and
    # 2h30m from 01:00 EDT ends at 02:30 EST (counting wall-clock hours would miss the window).
    files = {"flowctl.yaml": CALENDARS, "flow.yaml": NEW_YORK_FLOW}
    test = """
apiVersion: flowctl/v1
kind: Test
metadata: {name: fall back}
spec:
  now: "2026-11-01T01:00:00-04:00"
  steps:
    - create: {object: deal, id: 1, fields: {title: Desk}}
    - advance: {to: "2026-11-01T02:29:00-05:00"}
    - expect: {effects: []}
    - advance: 1m
    - expect: {effects: [{action: notify, text: Desk}], exactly: true}
"""
    (result,) = run_scenarios(make_bundle(tmp_path, {**files, "tests/t.yaml": test}))
    assert result.passed, [(f.message, f.trace) for f in result.failures]


def test_the_flow_trace_tells_the_wait_and_the_hold(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, {"flowctl.yaml": CALENDARS, "flow.yaml": FLOW})
    # Saturday 20:00 in Saigon; the Berlin night window opens Sunday 01:00 CET (00:00 UTC), the
    # delay ends 02:30 UTC (09:30 Sunday in Saigon), Monday is the office's holiday: Tuesday 08:00.
    sim = Simulator(bundle, datetime(2026, 3, 7, 20, 0, tzinfo=TZ))
    sim.write("create", "deal", "7", {"title": "Sofa"})
    (run,) = sim.state.runs.values()
    assert run.status == "waiting" and run.trace[-1].detail == "until 2026-03-08T09:30:00+07:00"
    sim.advance(datetime(2026, 3, 10, 7, 59, tzinfo=TZ))
    run = sim.state.runs[run.id]
    assert run.status == "waiting" and not sim.state.effects
    assert run.trace[-1].detail == "notify held until 2026-03-10T08:00:00+07:00 (only_during office)"
    sim.advance(datetime(2026, 3, 10, 8, 0, tzinfo=TZ))
    run = sim.state.runs[run.id]
    assert [e.kind for e in run.trace][-3:] == ["effect", "effect", "end"]
    assert sum(1 for e in run.trace if e.kind == "effect") == 2
    assert run.visits == {"wait": 1, "tell": 1, "task": 1}


def test_a_care_action_held_to_working_hours_goes_on_from_there(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, {"flowctl.yaml": CALENDARS, "care.yaml": CARE})
    sim = Simulator(bundle, T0.replace(hour=5))  # Monday 05:00
    sim.write("create", "contact", "1", {"full_name": "Lan", "phone": "0901234567"})
    sim.advance(T0.replace(hour=7, minute=59))
    assert [e.action for e in sim.state.effects] == ["add_note"]
    (run,) = [r for r in sim.state.runs.values() if r.kind == "care"]
    assert run.status == "waiting" and run.node == "action 2"
    sim.advance(T0.replace(hour=8))
    texts = [e.params.get("text") for e in sim.state.effects]
    occurrence = "2026-03-02T06:00:00+07:00"
    assert texts == [f"checked {occurrence}", f"Chao Lan ({occurrence})", f"sent {occurrence}"]
    run = sim.state.runs[run.id]
    assert run.status == "done"


def held_runs(sim: Simulator) -> list[Run]:
    return [r for r in sim.state.runs.values() if r.status == "waiting"]


def test_inside_working_time_nothing_is_held(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, {"flowctl.yaml": CALENDARS, "pipeline.yaml": PIPELINE})
    sim = Simulator(bundle, T0)  # Monday 09:00
    sim.write("create", "contact", "1", {"full_name": "Lan", "phone": "0901234567"}, stage="new")
    assert [e.action for e in sim.state.effects] == ["send_sms"]
    assert [r.node for r in held_runs(sim)] == ["call back"]


def test_a_hold_that_wakes_late_after_closing_holds_again(tmp_path: Path) -> None:
    # The daemon was down from before 13:30 until 18:00: the held SMS must not go out at night.
    bundle = make_bundle(tmp_path, {"flowctl.yaml": CALENDARS, "pipeline.yaml": PIPELINE})
    sim = Simulator(bundle, T0.replace(hour=12, minute=30))
    sim.write("create", "contact", "1", {"full_name": "Lan", "phone": "0901234567"}, stage="new")
    timer = sim.state.next_timer()
    assert timer is not None and timer.kind == "hold" and timer.due == T0.replace(hour=13, minute=30)
    sim.now = T0.replace(hour=18)
    step = sim.engine.handle(sim.state, TimerFired(key="late", timer=timer), sim.now)
    sim.state.apply(step)
    assert not step.effects
    (again,) = step.timers
    assert again.kind == "hold" and again.due == T0.replace(day=3, hour=8)
