"""Concurrency per record: single, restart, queued and parallel (with max_parallel)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.engine.conftest import runs_of


def mode_flow(mode: str, extra: str = "") -> dict[str, str]:
    return {
        "flows.yaml": f"""
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: follow-up}}
spec:
  object: contact
  trigger: {{on: event, event: ping}}
  mode: {mode}
  {extra}
  start: hello
  nodes:
    hello: {{type: send_sms, text: "hello {{{{ event.n }}}}", to: "0900000001", next: wait}}
    wait: {{type: delay, for: 1h, next: bye}}
    bye: {{type: send_sms, text: "bye", to: "0900000001"}}
"""
    }


def texts(sim) -> list[str]:
    return [e.params["text"] for e in sim.state.effects]


@pytest.fixture
def ping(sim_of):
    def start(mode: str, extra: str = ""):
        sim = sim_of(mode_flow(mode, extra))
        sim.write("create", "contact", "1", {})
        sim.write("create", "contact", "2", {})
        return sim

    return start


def test_single_ignores_a_trigger_while_a_run_is_active(ping) -> None:
    sim = ping("single")
    sim.event("ping", "contact", "1", {"n": 1})
    sim.event("ping", "contact", "1", {"n": 2})
    sim.event("ping", "contact", "2", {"n": 3})  # per record: another record runs its own
    sim.advance_by(timedelta(hours=1))
    assert texts(sim) == ["hello 1", "hello 3", "bye", "bye"]
    sim.event("ping", "contact", "1", {"n": 4})  # the first run ended: a new one starts
    assert texts(sim)[-1] == "hello 4"


def test_restart_cancels_the_active_run_and_starts_again(ping) -> None:
    sim = ping("restart")
    sim.event("ping", "contact", "1", {"n": 1})
    sim.advance_by(timedelta(minutes=30))
    sim.event("ping", "contact", "1", {"n": 2})
    sim.advance_by(timedelta(minutes=45))
    assert texts(sim) == ["hello 1", "hello 2"]  # the first run's delay was cancelled
    sim.advance_by(timedelta(minutes=15))
    assert texts(sim) == ["hello 1", "hello 2", "bye"]
    first, second = runs_of(sim, "flow:follow-up")
    assert first.status == "cancelled" and first.trace[-1].detail == "restarted by event ping"
    assert second.status == "done"


def test_queued_runs_one_after_another_in_trigger_order(ping) -> None:
    sim = ping("queued")
    for n in range(1, 12):  # more than nine, so the order cannot come from sorting ids as text
        sim.event("ping", "contact", "1", {"n": n})
    assert texts(sim) == ["hello 1"]
    runs = runs_of(sim, "flow:follow-up")
    assert [r.status for r in runs] == ["waiting"] + ["queued"] * 10
    sim.advance_by(timedelta(hours=11))
    expected = []
    for n in range(1, 12):
        expected += [f"hello {n}", "bye"]
    assert texts(sim) == expected
    assert all(r.status == "done" for r in runs_of(sim, "flow:follow-up"))


def test_queued_run_sees_the_event_that_queued_it(ping) -> None:
    sim = ping("queued")
    sim.event("ping", "contact", "1", {"n": 1})
    sim.event("ping", "contact", "1", {"n": 2})
    sim.advance_by(timedelta(hours=1))
    assert texts(sim) == ["hello 1", "bye", "hello 2"]


def test_parallel_runs_side_by_side_up_to_max_parallel(ping) -> None:
    sim = ping("parallel", "max_parallel: 2")
    sim.event("ping", "contact", "1", {"n": 1})
    sim.event("ping", "contact", "1", {"n": 2})
    sim.event("ping", "contact", "1", {"n": 3})  # a third is refused
    assert texts(sim) == ["hello 1", "hello 2"]
    (problem,) = sim.state.problems
    assert problem.code == "max_parallel" and "already has 2 runs" in problem.message
    sim.advance_by(timedelta(hours=1))
    assert texts(sim) == ["hello 1", "hello 2", "bye", "bye"]
    sim.event("ping", "contact", "1", {"n": 4})
    assert texts(sim)[-1] == "hello 4"
