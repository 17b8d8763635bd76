"""A care action with ``only_during:`` that comes due outside working hours: the tick commits a
hold timer with the run, and the worker sends the action when the working minute comes, on every
store backend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flowctl.engine.core import Engine
from flowctl.ports import Store
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.spec.config import load_bundle
from flowctl.testing import FrozenClock
from tests.care.conftest import CONFIG, care_yaml, contact, put_records, scheduler

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MONDAY = datetime(2026, 3, 2, tzinfo=TZ)
OFFICE = '  calendars:\n    office: {days: [mon, tue, wed, thu, fri], hours: ["08:00-12:00", "13:30-17:30"]}\n'
ACTIONS = """\
    - {action: add_note, text: "checked {{ occurrence }}"}
    - {action: send_sms, text: "Chao {{ record.full_name | unaccent }}", to: "{{ record.phone }}", only_during: office}
"""


def texts(store: Store) -> list[str]:
    return [str(row.payload.get("text")) for row in store.list_outbox(limit=100)]


def test_a_held_care_sms_is_sent_when_the_office_opens(tmp_path: Path, open_stores: Callable[[], Store]) -> None:
    store = open_stores()
    (tmp_path / "flowctl.yaml").write_text(
        CONFIG.format(tz="Asia/Ho_Chi_Minh").replace("  users:\n", OFFICE + "  users:\n")
    )
    (tmp_path / "care.yaml").write_text(care_yaml("morning", '{cron: "0 6 * * *"}', actions=ACTIONS))
    loaded = load_bundle(tmp_path)
    assert loaded.ok and loaded.bundle is not None, [str(i) for i in loaded.errors]
    bundle = loaded.bundle
    put_records(store, contact("1", full_name="Lan"))
    six = MONDAY.replace(hour=6, minute=0, second=30)
    report = scheduler(store, bundle, six).tick(six)
    assert report.committed == 1 and texts(store) == []
    (run,) = [r for r in store.list_runs(limit=10) if r.kind == "care"]
    assert (run.status, run.node) == ("waiting", "action 2")
    clock = FrozenClock(MONDAY.replace(hour=7, minute=59))
    worker = Worker(store, Engines(Engine(bundle, "v1")), clock, owner="w")
    assert worker.fire_timers() == 0
    clock.set(MONDAY.replace(hour=8))
    assert worker.fire_timers() == 1
    assert texts(store) == ["Chao Lan"]
    clock.set(MONDAY.replace(hour=9))
    assert worker.fire_timers() == 0 and texts(store) == ["Chao Lan"]
    done = store.run(run.id)
    assert done is not None and done.status == "done"
