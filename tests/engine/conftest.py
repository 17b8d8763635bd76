"""Helpers for engine tests: small YAML config directories written to ``tmp_path``.

``make_bundle(tmp_path, {"flows.yaml": "..."})`` writes the files (plus a base Config and object
types unless given), loads them with ``load_bundle`` and fails the test on any error, so every
config a test runs is one ``flowctl validate`` accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowctl.engine.simulator import Simulator
from flowctl.engine.state import Effect, Run
from flowctl.spec import model as m
from flowctl.spec.config import load_bundle
from flowctl.testing import write_config

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)  # a Monday

CONFIG = """
apiVersion: flowctl/v1
kind: Config
metadata: {name: test}
spec:
  timezone: Asia/Ho_Chi_Minh
  users:
    lan:  {full_name: Nguyễn Thị Lan, email: lan@example.com, phone: "0901000001", supervisor: hoa}
    minh: {full_name: Lê Quang Minh, email: minh@example.com, phone: "0901000002", supervisor: hoa}
    tuan: {full_name: Phạm Văn Tuấn, email: tuan@example.com, phone: "0901000003", supervisor: hoa}
    hoa:  {full_name: Trần Thu Hoa, email: hoa@example.com, phone: "0901000004"}
"""

OBJECTS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields:
    full_name: {type: string}
    phone: {type: phone}
    email: {type: email}
    segment: {type: enum, values: [vip, std]}
    status: {type: enum, values: [active, inactive]}
    score: {type: integer}
    due_date: {type: date}
    note: {type: string}
    owner: {type: user}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string}
    client_name: {type: string}
    phone: {type: phone}
    email: {type: email}
    amount: {type: money}
    paid_amount: {type: money}
    contract_no: {type: string}
    delivery_address: {type: string}
    lost_reason: {type: string}
    note: {type: string}
    owner: {type: user}
"""


def make_bundle(root: Path, files: Mapping[str, str], *, base: bool = True, allow: Iterable[str] = ()) -> m.Bundle:
    """Write ``files`` under ``root`` and load them; fails on errors except the codes in ``allow``."""
    everything = {"flowctl.yaml": CONFIG, "objects.yaml": OBJECTS} if base else {}
    everything.update(files)
    loaded = load_bundle(write_config(root, everything))
    allowed = set(allow)
    errors = [str(i) for i in loaded.errors if i.code not in allowed]
    assert not errors, "config does not validate:\n" + "\n".join(errors)
    assert loaded.bundle is not None
    return loaded.bundle


@pytest.fixture
def bundle_of(tmp_path: Path) -> Callable[..., m.Bundle]:
    def build(files: Mapping[str, str], **kwargs: object) -> m.Bundle:
        return make_bundle(tmp_path, files, **kwargs)  # type: ignore[arg-type]

    return build


@pytest.fixture
def sim_of(bundle_of: Callable[..., m.Bundle]) -> Callable[..., Simulator]:
    def build(files: Mapping[str, str], now: datetime = T0, **kwargs: object) -> Simulator:
        return Simulator(bundle_of(files, **kwargs), now)

    return build


def effects(sim: Simulator, since: int = 0) -> list[Effect]:
    return sim.state.effects[since:]


def actions(sim: Simulator, since: int = 0) -> list[str]:
    return [e.action for e in sim.state.effects[since:]]


def runs_of(sim: Simulator, automation: str) -> list[Run]:
    return sorted((r for r in sim.state.runs.values() if r.automation == automation), key=lambda r: (r.seq, r.id))


def trace_kinds(run: Run) -> list[tuple[str, str]]:
    return [(e.node, e.kind) for e in run.trace]
