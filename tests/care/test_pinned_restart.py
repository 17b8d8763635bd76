"""Edits apply tomorrow across a restart: the day's pinned version is in the store, so a scheduler
that starts (or a replica that joins) after the edit runs the rest of the day on it, rebuilt from
the files the store keeps of every deployed version; the next day runs on the new version."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowctl.engine.core import Engine
from flowctl.gitops.versions import Snapshot, read_directory
from flowctl.ports import Store
from flowctl.runtime.daemon.worker import Engines
from tests.care.conftest import care_yaml, contact, make_bundle, put_records, scheduler

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)
V1 = care_yaml(actions='    - {action: send_sms, text: "old text", to: "1"}')
V2 = care_yaml(
    when='{anniversary_of: birthday, at: "17:00"}', actions='    - {action: send_sms, text: "new text", to: "1"}'
)


def stored(store: Store, root: Path, care: str, at: datetime) -> Snapshot:
    """Write the directory, and deploy it to ``store`` as ``flowctl run``/``apply`` would (with its files)."""
    make_bundle(root, care)
    snapshot = read_directory(root)
    store.save_version(snapshot.to_version(at))
    return snapshot


def engine_of(snapshot: Snapshot) -> Engine:
    assert snapshot.loaded.bundle is not None
    return Engine(snapshot.loaded.bundle, snapshot.id)


def texts(store: Store) -> list[tuple[str, str]]:
    return sorted((row.record_id, str(row.payload.get("text"))) for row in store.list_outbox(limit=1000))


def test_a_restart_after_an_edit_keeps_todays_version_and_tomorrow_runs_the_new_one(
    tmp_path: Path, open_stores: Callable[[], Store], caplog: pytest.LogCaptureFixture
) -> None:
    store = open_stores()
    v1 = stored(store, tmp_path / "v1", V1, T0 - timedelta(days=1))
    put_records(store, contact("1", birthday="1990-03-02"))
    before = scheduler(store, v1.loaded.bundle, T0, engines=Engines(engine_of(v1)))  # type: ignore[arg-type]
    assert before.tick(T0).committed == 1  # 08:00: contact 1 on v1; the day is pinned to v1

    v2 = stored(store, tmp_path / "v2", V2, T0 + timedelta(hours=2))  # 10:00: the edit is deployed
    put_records(store, contact("2", birthday="1990-03-02"), contact("3", birthday="1990-03-03"))
    # the restart: a new scheduler (on a newly opened store) that has only ever built v2
    restarted = open_stores()
    engines = Engines(engine_of(v2))
    after = scheduler(restarted, v2.loaded.bundle, T0 + timedelta(hours=9), engines=engines)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="flowctl.care"):
        assert after.tick(T0 + timedelta(hours=9)).committed == 1  # 17:00: contact 2, today: v1
        assert after.tick(T0 + timedelta(days=1, hours=9)).committed == 1  # tomorrow 17:00: contact 3, v2

    assert texts(store) == [("1", "old text"), ("2", "old text"), ("3", "new text")]
    runs = {r.record_id: r.config_version for r in store.list_runs(limit=10)}
    assert runs == {"1": v1.id, "2": v1.id, "3": v2.id}
    assert set(engines.by_version) == {v1.id, v2.id}  # v1 was rebuilt once, from the store
    assert engines.current.version == v2.id
    assert not [r for r in caplog.records if "no longer has" in r.message]


def test_a_pinned_version_stored_without_its_files_runs_on_the_current_one_logged(
    tmp_path: Path, open_stores: Callable[[], Store], caplog: pytest.LogCaptureFixture
) -> None:
    store = open_stores()
    bundle = make_bundle(tmp_path / "v1", V1)
    put_records(store, contact("1", birthday="1990-03-02"), contact("2", birthday="1990-03-02"))
    store.pin_care_day("birthday", "2026-03-02", "gone")  # pinned by a version the store does not keep
    v2 = stored(store, tmp_path / "v2", V2, T0)
    after = scheduler(store, bundle, T0 + timedelta(hours=9), engines=Engines(engine_of(v2)))
    with caplog.at_level(logging.WARNING, logger="flowctl.care"):
        assert after.tick(T0 + timedelta(hours=9)).committed == 2
    assert texts(store) == [("1", "new text"), ("2", "new text")]
    assert any("config version gone, which this process no longer has" in r.message for r in caplog.records)
