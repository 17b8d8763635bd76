"""The simulator's care path pins a day to a config version as the daemon does."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flowctl.engine.core import Engine
from flowctl.engine.simulator import Simulator
from flowctl.runtime.daemon.worker import Engines
from flowctl.spec import model as m
from flowctl.store.memory import MemoryStore
from tests.care.conftest import care_yaml, contact, make_bundle, put_records, scheduler

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)


def versions(tmp_path: Path) -> tuple[m.Bundle, m.Bundle]:
    """v1 texts at 08:00; v2, deployed at 10:00 the same day, moves ``at`` to 17:00 and changes the text."""
    v1 = make_bundle(tmp_path / "v1", care_yaml(actions='    - {action: send_sms, text: "old text", to: "1"}'))
    v2 = make_bundle(
        tmp_path / "v2",
        care_yaml(
            when='{anniversary_of: birthday, at: "17:00"}',
            actions='    - {action: send_sms, text: "new text", to: "1"}',
        ),
    )
    return v1, v2


def test_an_edit_after_todays_run_takes_effect_tomorrow_in_the_simulator_as_in_the_daemon(tmp_path: Path) -> None:
    v1, v2 = versions(tmp_path)
    # the simulator: 08:00 on v1, reload at 10:00, two more contacts, then until tomorrow evening
    sim = Simulator(v1, T0 - timedelta(hours=1), version="v1")
    sim.seed(contact("1", birthday="1990-03-02"))
    sim.advance(T0 + timedelta(hours=2))
    sim.use(v2, "v2")
    sim.seed(contact("2", birthday="1990-03-02"))
    sim.seed(contact("3", birthday="1990-03-03"))
    sim.advance(T0 + timedelta(days=1, hours=10))
    simulated = sorted((e.record_id, e.params["text"]) for e in sim.state.effects)
    simulated_runs = {r.record_id: r.config_version for r in sim.state.runs.values()}
    # the daemon's scheduler over the same day
    store = MemoryStore()
    engines = Engines(Engine(v1, "v1"))
    care = scheduler(store, v1, T0, engines=engines)
    put_records(store, contact("1", birthday="1990-03-02"))
    care.tick(T0)
    engines.use(Engine(v2, "v2"))
    put_records(store, contact("2", birthday="1990-03-02"), contact("3", birthday="1990-03-03"))
    care.tick(T0 + timedelta(hours=9))
    care.tick(T0 + timedelta(days=1, hours=9))
    daemon = sorted((row.record_id, row.payload["text"]) for row in store.list_outbox(limit=10))
    # contact 2 is due at 17:00 (v2's time) but today runs on v1, the version that started it
    assert simulated == daemon == [("1", "old text"), ("2", "old text"), ("3", "new text")]
    assert (
        simulated_runs
        == {r.record_id: r.config_version for r in store.list_runs(limit=10)}
        == {"1": "v1", "2": "v1", "3": "v2"}
    )


def test_without_a_reload_nothing_changes(tmp_path: Path) -> None:
    v1, _ = versions(tmp_path)
    sim = Simulator(v1, T0 - timedelta(hours=1), version="v1")
    sim.seed(contact("1", birthday="1990-03-02"))
    sim.advance(T0 + timedelta(days=366))
    assert [(e.record_id, e.params["text"]) for e in sim.state.effects] == [("1", "old text")] * 2
    assert sim.care_days == {("birthday", "2026-03-02"): "v1", ("birthday", "2027-03-02"): "v1"}
