"""Allocation rules: ``round_robin`` takes the users in turn; ``least_loaded`` picks the user who
owns the fewest open records of the object (not deleted, not in a final stage), counted from the
state the engine is handed, so the simulator and the daemon choose alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowctl.engine.core import Engine
from flowctl.engine.simulator import Simulator
from flowctl.engine.state import Record, Step
from flowctl.ports import NewChange, Processed
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.store import open_store
from flowctl.testing import FrozenClock
from tests.engine.conftest import T0

PIPELINE = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: care}
spec:
  object: contact
  stages:
    - id: new
      rules: [{name: assign, if: "not record.owner", action: handover, to: {rule: RULE}}]
    - {id: won, final: success}
    - {id: lost, final: failure}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec: {object: deal, stages: [{id: open}]}
---
apiVersion: flowctl/v1
kind: AllocationRule
metadata: {name: rr}
spec: {strategy: round_robin, users: [lan, minh, tuan]}
---
apiVersion: flowctl/v1
kind: AllocationRule
metadata: {name: least}
spec: {strategy: least_loaded, users: [lan, minh, tuan]}
"""


def seeded(sim: Simulator) -> Simulator:
    """lan owns two open contacts, tuan one; minh's three are won, lost or deleted, and his deals
    are another object: minh owns no open contact."""
    contacts = [
        ("1", "lan", "new"),
        ("2", "lan", "new"),
        ("3", "tuan", "new"),
        ("4", "minh", "won"),
        ("5", "minh", "lost"),
        ("6", "minh", "new"),
    ]
    for id_, owner, stage in contacts:
        sim.seed(Record(object="contact", id=id_, fields={"owner": owner}, stage=stage, owner=owner))
    sim.write("delete", "contact", "6")
    for id_ in ("1", "2", "3"):
        sim.seed(Record(object="deal", id=id_, fields={"owner": "minh"}, owner="minh"))
    return sim


def assigned(sim: Simulator) -> list[str]:
    return [e.params["assignee"] for e in sim.state.effects if e.action == "handover"]


@pytest.mark.parametrize(("rule", "picks"), [("rr", ["lan", "minh", "tuan"]), ("least", ["minh", "tuan", "minh"])])
def test_least_loaded_counts_open_records_owned_where_round_robin_takes_turns(
    sim_of, rule: str, picks: list[str]
) -> None:
    sim = seeded(sim_of({"pipeline.yaml": PIPELINE.replace("RULE", rule)}))
    for id_ in ("10", "11", "12"):
        sim.write("create", "contact", id_, {})
    # least: minh owns no open contact; then minh and tuan own one each, and the tie goes in turn
    assert assigned(sim) == picks


def test_a_record_in_a_final_stage_no_longer_counts(sim_of) -> None:
    sim = seeded(sim_of({"pipeline.yaml": PIPELINE.replace("RULE", "least")}))
    sim.seed(Record(object="contact", id="7", fields={"owner": "minh"}, stage="new", owner="minh"))
    sim.seed(Record(object="contact", id="8", fields={"owner": "minh"}, stage="new", owner="minh"))
    sim.write("create", "contact", "10", {})  # lan 2, minh 2, tuan 1
    sim.write("move", "contact", "1", stage="won")
    sim.write("move", "contact", "2", stage="lost")
    sim.write("create", "contact", "11", {})  # lan 0, minh 2, tuan 2
    assert assigned(sim) == ["tuan", "lan"]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_the_worker_counts_what_its_batch_handed_over_and_chooses_as_the_simulator(
    bundle_of, tmp_path: Path, backend: str
) -> None:
    bundle = bundle_of({"pipeline.yaml": PIPELINE.replace("RULE", "least")})
    sim = seeded(Simulator(bundle, T0))
    store = open_store("memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'flowctl.db'}")
    ids = ("10", "11", "12", "13")
    try:
        store.commit_batch([Processed(step=Step(records=dict(sim.state.records)))], T0)
        store.append_changes(
            [
                NewChange(object="contact", record_id=id_, op="put", idempotency_key=id_, fields={}, received_at=T0)
                for id_ in ids
            ]
        )
        worker = Worker(store, Engines(Engine(bundle)), FrozenClock(T0), batch=10)
        assert worker.process_changes() == 4  # one batch: the store holds none of its handovers yet
        owners = [store.record("contact", id_).owner for id_ in ids]  # type: ignore[union-attr]
    finally:
        store.close()
    for id_ in ids:
        sim.write("create", "contact", id_, {})
    assert owners == assigned(sim) == ["minh", "tuan", "minh", "tuan"]
