"""Each flow node type: branch, delay (for/until), wait_event (event, condition, timeout), goto
(bounded by max_visits), goto_flow and stop."""

from __future__ import annotations

from datetime import timedelta

from tests.engine.conftest import T0, actions, runs_of, trace_kinds


def flow(name: str, body: str, trigger: str = "{on: created}", object: str = "contact") -> str:
    return f"""
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: {name}}}
spec:
  object: {object}
  trigger: {trigger}
{body}
"""


BRANCH = flow(
    "pick",
    """
  start: pick
  nodes:
    pick:
      type: branch
      branches:
        - {if: "record.segment == 'vip'", next: vip}
        - {if: "record.score and record.score > 10", next: hot}
      default: std
    vip: {type: send_sms, text: "vip {{ record.full_name }}", to: "0900000001"}
    hot: {type: send_sms, text: "hot {{ record.full_name }}", to: "0900000002"}
    std: {type: send_sms, text: "std {{ record.full_name }}", to: "0900000003"}
""",
)


def test_branch_first_true_wins_else_default(sim_of) -> None:
    sim = sim_of({"flows.yaml": BRANCH})
    sim.write("create", "contact", "1", {"full_name": "A", "segment": "vip", "score": 99})
    sim.write("create", "contact", "2", {"full_name": "B", "score": 11})
    sim.write("create", "contact", "3", {"full_name": "C", "score": 3})
    assert [e.params["text"] for e in sim.state.effects] == ["vip A", "hot B", "std C"]


def test_branch_traces_each_condition_with_values_and_the_decision(sim_of) -> None:
    sim = sim_of({"flows.yaml": BRANCH})
    sim.write("create", "contact", "1", {"full_name": "B", "score": 11})
    (run,) = runs_of(sim, "flow:pick")
    conditions = [e for e in run.trace if e.kind == "condition" and e.node == "pick"]
    assert [(c.detail, dict(c.values), c.result) for c in conditions] == [
        ("record.segment == 'vip'", {"record.segment": None}, False),
        ("record.score and record.score > 10", {"record.score": 11}, True),
    ]
    decision = next(e for e in run.trace if e.kind == "decision")
    assert decision.detail == "branch 2 → hot"
    assert trace_kinds(run)[-2:] == [("hot", "effect"), ("hot", "end")]
    assert run.status == "done"


def test_branch_without_default_ends_the_run(sim_of) -> None:
    sim = sim_of(
        {
            "flows.yaml": flow(
                "f",
                """
  start: pick
  nodes:
    pick: {type: branch, branches: [{if: "record.segment == 'vip'", next: vip}]}
    vip: {type: send_sms, text: "vip", to: "0900000001"}
""",
            )
        }
    )
    sim.write("create", "contact", "1", {"segment": "std"})
    assert sim.state.effects == []
    (run,) = runs_of(sim, "flow:f")
    assert run.status == "done"
    assert any(e.kind == "decision" and e.detail == "default → end" for e in run.trace)


DELAYS = flow(
    "d",
    """
  start: wait
  nodes:
    wait: {type: delay, for: 2d, next: first}
    first: {type: send_sms, text: "first", to: "0900000001", next: until}
    until: {type: delay, until: "{{ record.due_date }} 09:00", next: second}
    second: {type: send_sms, text: "second", to: "0900000001"}
""",
)


def test_delay_for_a_duration_and_until_a_date_expression(sim_of) -> None:
    sim = sim_of({"flows.yaml": DELAYS})
    sim.write("create", "contact", "1", {"due_date": "2026-03-10"})
    (run,) = runs_of(sim, "flow:d")
    assert run.status == "waiting" and run.node == "wait"
    sim.advance(T0 + timedelta(days=2) - timedelta(seconds=1))
    assert sim.state.effects == []
    sim.advance(T0 + timedelta(days=2))
    assert actions(sim) == ["send_sms"]
    (timer,) = sim.state.timers.values()
    assert timer.due.isoformat() == "2026-03-10T09:00:00+07:00"  # the Config's time zone
    sim.advance(timer.due)
    assert [e.params["text"] for e in sim.state.effects] == ["first", "second"]
    assert runs_of(sim, "flow:d")[0].status == "done"


def test_delay_until_a_moment_already_passed_goes_straight_on(sim_of) -> None:
    sim = sim_of({"flows.yaml": DELAYS})
    sim.write("create", "contact", "1", {"due_date": "2026-03-01"})
    sim.advance_by(timedelta(days=2))
    assert [e.params["text"] for e in sim.state.effects] == ["first", "second"]
    run = runs_of(sim, "flow:d")[0]
    assert any("already passed" in e.detail for e in run.trace)


def test_delay_until_that_renders_to_no_date_fails_the_run_with_a_clear_problem(sim_of) -> None:
    sim = sim_of({"flows.yaml": DELAYS})
    sim.write("create", "contact", "1", {})
    sim.advance_by(timedelta(days=2))
    run = runs_of(sim, "flow:d")[0]
    assert run.status == "failed"
    assert [p.code for p in sim.state.problems] == ["render_failed"]
    assert "not a date and time" in sim.state.problems[0].message


WAIT = flow(
    "w",
    """
  start: wait
  nodes:
    wait: {type: wait_event, event: ticket.created, if: "event.priority == 'high'", for: 3d, on_timeout: late, next: ok}
    ok: {type: delay, for: 1h, next: say}
    say: {type: send_sms, text: "got {{ event.priority }}", to: "0900000001"}
    late: {type: create_task, title: "no ticket from {{ record.full_name }}"}
""",
)


def test_wait_event_continues_on_a_matching_event(sim_of) -> None:
    sim = sim_of({"flows.yaml": WAIT})
    sim.write("create", "contact", "1", {"full_name": "Lan"})
    sim.event("ticket.created", "contact", "1", {"priority": "low"})  # its if: is false
    assert sim.state.effects == []
    sim.event("ticket.created", "contact", "2", {"priority": "high"})  # another record
    assert sim.state.effects == []
    sim.event("ticket.created", "contact", "1", {"priority": "high"})
    assert [t.kind for t in sim.state.timers.values()] == ["delay"]  # the timeout was cancelled
    sim.advance_by(timedelta(hours=1))  # the event's data outlives a delay
    assert [e.params["text"] for e in sim.state.effects] == ["got high"]
    sim.advance_by(timedelta(days=5))
    assert actions(sim) == ["send_sms"]
    run = runs_of(sim, "flow:w")[0]
    checks = [(e.detail, dict(e.values), e.result) for e in run.trace if e.kind == "condition" and e.node == "wait"]
    assert checks == [
        ("ticket.created: event.priority == 'high'", {"event.priority": "low"}, False),
        ("ticket.created: event.priority == 'high'", {"event.priority": "high"}, True),
    ]
    (received,) = [e for e in run.trace if e.kind == "event"]
    assert (received.node, received.detail, dict(received.values)) == ("wait", "ticket.created", {"priority": "high"})


def test_wait_event_takes_the_timeout_path(sim_of) -> None:
    sim = sim_of({"flows.yaml": WAIT})
    sim.write("create", "contact", "1", {"full_name": "Lan"})
    sim.advance_by(timedelta(days=3))
    assert [e.params.get("title") for e in sim.state.effects] == ["no ticket from Lan"]
    sim.event("ticket.created", "contact", "1", {"priority": "high"})
    assert actions(sim) == ["create_task"]  # the wait is over


def test_wait_event_without_timeout_waits_until_the_event(sim_of) -> None:
    sim = sim_of(
        {
            "flows.yaml": flow(
                "w",
                """
  start: wait
  nodes:
    wait: {type: wait_event, event: invoice.paid, next: thanks}
    thanks: {type: send_sms, text: "thanks", to: "0900000001"}
""",
            )
        }
    )
    sim.write("create", "contact", "1", {})
    assert sim.state.timers == {}
    sim.advance_by(timedelta(days=400))
    sim.event("invoice.paid", "contact", "1")
    assert actions(sim) == ["send_sms"]


def test_the_event_that_starts_a_run_does_not_also_satisfy_its_first_wait(sim_of) -> None:
    sim = sim_of(
        {
            "flows.yaml": flow(
                "twice",
                """
  start: wait
  nodes:
    wait: {type: wait_event, event: visit, for: 1d, on_timeout: once, next: twice}
    once: {type: send_sms, text: "one visit", to: "0900000001"}
    twice: {type: send_sms, text: "two visits", to: "0900000001"}
""",
                trigger="{on: event, event: visit}",
            )
        }
    )
    sim.write("create", "contact", "1", {})
    sim.event("visit", "contact", "1")
    assert sim.state.effects == []
    (run,) = runs_of(sim, "flow:twice")
    assert run.status == "waiting"
    sim.event("visit", "contact", "1")  # mode single: wakes the waiting run, starts no other
    assert [e.params["text"] for e in sim.state.effects] == ["two visits"]
    assert len(runs_of(sim, "flow:twice")) == 1


def test_wait_event_can_wait_for_record_changes(sim_of) -> None:
    sim = sim_of(
        {
            "flows.yaml": flow(
                "w",
                """
  start: wait
  nodes:
    wait: {type: wait_event, event: contact.updated, if: "'email' in event.changed", for: 1d, next: ok}
    ok: {type: send_sms, text: "email set", to: "0900000001"}
""",
            )
        }
    )
    sim.write("create", "contact", "1", {})
    sim.write("update", "contact", "1", {"note": "x"})
    assert sim.state.effects == []
    sim.write("update", "contact", "1", {"email": "a@example.com"})
    assert actions(sim) == ["send_sms"]


GOTO = flow(
    "nag",
    """
  start: task
  nodes:
    task: {type: create_task, title: "call {{ record.full_name }}", next: again}
    again: {type: goto, node: task, max_visits: 3}
""",
)


def test_goto_repeats_its_target_up_to_max_visits_then_the_run_ends(sim_of) -> None:
    sim = sim_of({"flows.yaml": GOTO})
    sim.write("create", "contact", "1", {"full_name": "Lan"})
    assert actions(sim) == ["create_task", "create_task", "create_task"]
    run = runs_of(sim, "flow:nag")[0]
    assert dict(run.visits) == {"task": 3, "again": 3}
    assert run.status == "done"
    decisions = [e.detail for e in run.trace if e.kind == "decision"]
    assert decisions == ["goto task", "goto task", "task visited 3 times (max_visits 3) → end"]


def test_goto_through_a_delay_loops_over_time(sim_of) -> None:
    sim = sim_of(
        {
            "flows.yaml": flow(
                "weekly",
                """
  start: remind
  nodes:
    remind: {type: send_sms, text: "pay please", to: "0900000001", next: wait}
    wait: {type: delay, for: 1w, next: check}
    check: {type: branch, branches: [{if: "record.status == 'active'", next: end}], default: loop}
    loop: {type: goto, node: remind}
    end: {type: stop}
""",
            )
        }
    )
    sim.write("create", "contact", "1", {})
    sim.advance_by(timedelta(weeks=3))
    assert len(sim.state.effects) == 4
    sim.write("update", "contact", "1", {"status": "active"})
    sim.advance_by(timedelta(weeks=3))
    assert len(sim.state.effects) == 4
    assert runs_of(sim, "flow:weekly")[0].status == "done"


def test_limits_max_visits_stops_a_loop_that_would_run_forever(sim_of) -> None:
    config = """
apiVersion: flowctl/v1
kind: Config
metadata: {name: test}
spec: {timezone: UTC, limits: {max_visits: 5}}
"""
    sim = sim_of(
        {
            "flowctl.yaml": config,
            "flows.yaml": flow(
                "daily",
                """
  start: remind
  nodes:
    remind: {type: send_sms, text: "pay please", to: "0900000001", next: wait}
    wait: {type: delay, for: 1d, next: loop}
    loop: {type: goto, node: remind}
""",
            ),
        }
    )
    sim.write("create", "contact", "1", {})
    sim.advance_by(timedelta(days=30))
    assert len(sim.state.effects) == 5
    run = runs_of(sim, "flow:daily")[0]
    assert run.status == "failed"
    assert "visited more than 5 times (limits.max_visits)" in run.trace[-1].detail


def test_goto_flow_ends_this_run_and_starts_the_other_flow(sim_of) -> None:
    sim = sim_of(
        {
            "flows.yaml": flow(
                "first",
                """
  start: hello
  nodes:
    hello: {type: send_sms, text: "hello", to: "0900000001", next: go}
    go: {type: goto_flow, flow: nurture}
""",
            )
            + "---\n"
            + """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: nurture}
spec:
  object: contact
  start: tip
  nodes:
    tip: {type: send_sms, text: "tip {{ record.full_name }}", to: "0900000001"}
"""
        }
    )
    sim.write("create", "contact", "1", {"full_name": "Lan"})
    assert [e.params["text"] for e in sim.state.effects] == ["hello", "tip Lan"]
    (first,) = runs_of(sim, "flow:first")
    (second,) = runs_of(sim, "flow:nurture")
    assert first.status == "done" and first.trace[-1].detail == "continues in flow nurture"
    assert second.status == "done"
    assert second.trace[0].detail == "from flow first node go"


def test_stop_ends_the_run_and_later_nodes_do_nothing(sim_of) -> None:
    sim = sim_of(
        {
            "flows.yaml": flow(
                "s",
                """
  start: pick
  nodes:
    pick: {type: branch, branches: [{if: "record.status == 'inactive'", next: halt}], default: send}
    halt: {type: stop}
    send: {type: send_sms, text: "hi", to: "0900000001"}
""",
            )
        }
    )
    sim.write("create", "contact", "1", {"status": "inactive"})
    assert sim.state.effects == []
    run = runs_of(sim, "flow:s")[0]
    assert run.status == "done"
    assert trace_kinds(run)[-2:] == [("halt", "enter"), ("halt", "end")]


def test_deleting_the_record_cancels_its_runs_and_their_timers(sim_of) -> None:
    sim = sim_of({"flows.yaml": DELAYS + "---\n" + WAIT.replace("name: w}", "name: w2}")})
    sim.write("create", "contact", "1", {"due_date": "2026-03-10"})
    assert len(sim.state.timers) == 2
    sim.write("delete", "contact", "1")
    assert sim.state.timers == {}
    assert {r.status for r in sim.state.runs.values()} == {"cancelled"}
    assert all(r.trace[-1].detail == "record deleted" for r in sim.state.runs.values())
    sim.advance_by(timedelta(days=30))
    assert sim.state.effects == []


def test_goto_takes_next_once_the_target_had_max_visits(sim_of) -> None:
    sim = sim_of(
        {
            "flows.yaml": GOTO.replace(
                "max_visits: 3}",
                'max_visits: 2, next: done}\n    done: {type: send_sms, text: "gave up", to: "0900000001"}',
            )
        }
    )
    sim.write("create", "contact", "1", {"full_name": "Lan"})
    assert actions(sim) == ["create_task", "create_task", "send_sms"]
    decisions = [e.detail for e in runs_of(sim, "flow:nag")[0].trace if e.kind == "decision"]
    assert decisions == ["goto task", "task visited 2 times (max_visits 2) → done"]
