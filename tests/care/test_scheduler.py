"""The care scheduler against every store: found by the index, claimed once, caught up, pinned per day."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowctl.engine.core import Engine
from flowctl.engine.state import Step
from flowctl.ports import CareOccurrence, Processed, Store
from flowctl.runtime.daemon.worker import Engines
from tests.care.conftest import care_yaml, contact, make_bundle, put_records, scheduler

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)


def sms(store: Store) -> list[tuple[str, str]]:
    return sorted((row.record_id, str(row.payload.get("text"))) for row in store.list_outbox(limit=1000))


def test_a_tick_runs_todays_birthdays_once_and_a_replayed_tick_runs_nothing(
    tmp_path: Path, open_stores: Callable[[], Store]
) -> None:
    store = open_stores()
    bundle = make_bundle(tmp_path, care_yaml())
    put_records(
        store,
        contact("1", birthday="1990-03-02"),
        contact("2", birthday="02/03/1985"),
        contact("3", birthday="1990-03-03"),
        contact("4", birthday="?"),
        contact("5"),
    )
    care = scheduler(store, bundle, T0)
    report = care.tick(T0 - timedelta(minutes=1))
    assert report.found == 0  # 07:59: not yet
    report = care.tick(T0)
    assert (report.found, report.claimed, report.committed, report.outcomes) == (2, 2, 2, {"sent": 2})
    assert sms(store) == [("1", "Chuc mung sinh nhat Khach 1"), ("2", "Chuc mung sinh nhat Khach 2")]
    # the same tick again, from this scheduler and from a fresh one (a restart): nothing new
    assert care.tick(T0).claimed == 0
    again = scheduler(store, bundle, T0, owner="b").tick(T0 + timedelta(minutes=1))
    assert (again.found, again.claimed) == (2, 0)
    assert len(store.list_outbox(limit=1000)) == 2
    assert store.care_summary("birthday").counts == {"sent": 2}


def test_feb29_birthdays_are_found_by_the_index_under_each_policy(
    tmp_path: Path, open_stores: Callable[[], Store]
) -> None:
    store = open_stores()
    feb28 = care_yaml(name="feb28")
    mar1 = care_yaml(name="mar1").replace("feb29: feb28", "feb29: mar1")
    bundle = make_bundle(tmp_path, feb28 + "---\n" + mar1)
    put_records(store, contact("1", birthday="1992-02-29"))
    care = scheduler(store, bundle, T0)
    at = datetime(2027, 2, 28, 8, 0, tzinfo=TZ)
    assert care.tick(at).outcomes == {"sent": 1}
    assert store.care_summary("feb28").counts == {"sent": 1}
    assert care.tick(at + timedelta(days=1)).outcomes == {"sent": 1}
    assert store.care_summary("mar1").counts == {"sent": 1}
    leap = datetime(2028, 2, 29, 8, 0, tzinfo=TZ)
    assert care.tick(leap).outcomes == {"sent": 2}  # both on the day itself


def test_downtime_is_caught_up_within_grace_and_logged(
    tmp_path: Path, open_stores: Callable[[], Store], caplog: pytest.LogCaptureFixture
) -> None:
    store = open_stores()
    bundle = make_bundle(tmp_path, care_yaml(extra="").replace("grace: 24h", "grace: 6h"))
    put_records(store, contact("1", birthday="1990-03-02"), contact("2", birthday="1990-03-01"))
    with caplog.at_level(logging.WARNING, logger="flowctl.care"):
        report = scheduler(store, bundle, T0).tick(T0 + timedelta(hours=5))  # started at 13:00
    assert report.outcomes == {"sent": 1} and report.caught_up == 1  # 1 is 5 h late; 2 was 29 h ago
    assert "catching up 1 occurrences missed while flowctl was not running" in caplog.text
    assert "2026-03-02T08:00:00+07:00" in caplog.text


def test_on_missed_skip_does_not_catch_up(tmp_path: Path, open_stores: Callable[[], Store]) -> None:
    store = open_stores()
    bundle = make_bundle(tmp_path, care_yaml().replace("on_missed: catch_up", "on_missed: skip"))
    put_records(store, contact("1", birthday="1990-03-02"))
    care = scheduler(store, bundle, T0)
    assert care.tick(T0 + timedelta(hours=1)).found == 0
    assert care.tick(datetime(2027, 3, 2, 8, 0, 30, tzinfo=TZ)).outcomes == {"sent": 1}  # on time next year


def test_processes_run_in_priority_order_and_disabled_ones_do_not_run(
    tmp_path: Path, open_stores: Callable[[], Store]
) -> None:
    store = open_stores()
    texts = [
        care_yaml(
            name=name,
            extra=f"priority: {p}\nenabled: {str(on).lower()}\n",
            actions=f'    - {{action: send_sms, text: "{name}", to: "1"}}',
        )
        for name, p, on in (("third", 3, True), ("first", 1, True), ("second", 2, True), ("off", 1, False))
    ]
    bundle = make_bundle(tmp_path, "---\n".join(texts))
    put_records(store, contact("1", birthday="1990-03-02"))
    scheduler(store, bundle, T0).tick(T0)
    rows = sorted(store.list_outbox(limit=10), key=lambda r: r.id)
    assert [r.payload["text"] for r in rows] == ["first", "second", "third"]


def test_the_index_follows_record_writes_and_deletes(tmp_path: Path, open_stores: Callable[[], Store]) -> None:
    store = open_stores()
    bundle = make_bundle(tmp_path, care_yaml())
    put_records(store, contact("1", birthday="1990-03-05"), contact("2", birthday="1990-03-02"))
    put_records(store, contact("1", birthday="1990-03-02"), replace(contact("2", birthday="1990-03-02"), deleted=True))
    assert [r.id for r in store.care_records("contact", "birthday", [302])] == ["1"]
    assert scheduler(store, bundle, T0).tick(T0).outcomes == {"sent": 1}


def test_a_claim_whose_holder_died_is_taken_over_after_the_lease(
    tmp_path: Path, open_stores: Callable[[], Store]
) -> None:
    store = open_stores()
    bundle = make_bundle(tmp_path, care_yaml())
    put_records(store, contact("1", birthday="1990-03-02"))
    dead = CareOccurrence(
        process="birthday", object="contact", record_id="1", occurrence="2026-03-02", config_version="v1"
    )
    assert store.claim_occurrences([dead], "dead-replica", T0) == [dead]
    care = scheduler(store, bundle, T0)
    assert care.tick(T0 + timedelta(minutes=1)).committed == 0  # still leased
    report = care.tick(T0 + timedelta(minutes=10))
    assert (report.recovered, report.committed) == (1, 1)
    # the dead replica waking up cannot commit it a second time
    assert store.commit_care([(replace(dead, status="sent"), Processed(step=Step()))], "dead-replica", T0) == 0
    assert len(store.list_outbox()) == 1


def test_a_replica_paused_after_taking_a_claim_over_does_not_commit_it_over_the_next_one(
    tmp_path: Path, open_stores: Callable[[], Store], caplog: pytest.LogCaptureFixture
) -> None:
    store = open_stores()
    bundle = make_bundle(tmp_path, care_yaml())
    put_records(store, contact("1", birthday="1990-03-02"))
    dead = CareOccurrence(
        process="birthday", object="contact", record_id="1", occurrence="2026-03-02", config_version="v1"
    )
    assert store.claim_occurrences([dead], "dead-replica", T0) == [dead]
    reclaim = store.reclaim_occurrences
    later = T0 + timedelta(minutes=30)

    def paused_after_reclaim(owner: str, now: datetime, lease: float, limit: int) -> list[CareOccurrence]:
        store.reclaim_occurrences = reclaim  # type: ignore[method-assign]
        mine = reclaim(owner, now, lease, limit)
        # paused past the lease here: replica b takes the claim over and runs it
        assert scheduler(store, bundle, later, owner="b").tick(later).committed == 1
        return mine

    store.reclaim_occurrences = paused_after_reclaim  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="flowctl.care"):
        report = scheduler(store, bundle, T0, owner="a").tick(T0 + timedelta(minutes=10))
    assert (report.recovered, report.committed) == (1, 0)
    assert len(store.list_outbox()) == 1  # b's message only
    assert any("1 of 1 taken-over occurrences not committed: a lost them" in r.message for r in caplog.records)


def test_an_edit_after_todays_run_takes_effect_tomorrow(tmp_path: Path, open_stores: Callable[[], Store]) -> None:
    store = open_stores()
    v1 = make_bundle(tmp_path / "v1", care_yaml(actions='    - {action: send_sms, text: "old text", to: "1"}'))
    v2 = make_bundle(
        tmp_path / "v2",
        care_yaml(
            when='{anniversary_of: birthday, at: "17:00"}',
            actions='    - {action: send_sms, text: "new text", to: "1"}',
        ),
    )
    put_records(store, contact("1", birthday="1990-03-02"))
    engines = Engines(Engine(v1, "v1"))
    care = scheduler(store, v1, T0, engines=engines)
    care.tick(T0)  # 08:00: contact 1 on v1
    engines.use(Engine(v2, "v2"))  # 10:00: at moves to 17:00 and the text changes
    put_records(store, contact("2", birthday="1990-03-02"), contact("3", birthday="1990-03-03"))
    care.tick(T0 + timedelta(hours=9))  # 17:00: contact 2 is due today, on today's version
    care.tick(T0 + timedelta(days=1, hours=9))  # tomorrow 17:00: contact 3 on v2
    assert sms(store) == [("1", "old text"), ("2", "old text"), ("3", "new text")]
    runs = {r.record_id: r.config_version for r in store.list_runs(limit=10)}
    assert runs == {"1": "v1", "2": "v1", "3": "v2"}


def test_two_replicas_firing_the_same_tick_run_each_occurrence_once(
    tmp_path: Path, open_stores: Callable[[], Store]
) -> None:
    bundle = make_bundle(tmp_path, care_yaml())
    first, second = open_stores(), open_stores()
    put_records(first, *[contact(str(i), birthday="1990-03-02") for i in range(200)])
    replicas = [scheduler(first, bundle, T0, owner="a"), scheduler(second, bundle, T0, owner="b")]
    barrier = threading.Barrier(2)
    reports = []

    def fire(care: object) -> None:
        barrier.wait()
        reports.append(care.tick(T0))  # type: ignore[attr-defined]

    threads = [threading.Thread(target=fire, args=(care,)) for care in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.found for r in reports) == [200, 200]
    assert sum(r.committed for r in reports) == 200
    rows = first.list_outbox(limit=1000)
    assert len(rows) == 200 and len({r.record_id for r in rows}) == 200
    assert first.care_summary("birthday").counts == {"sent": 200}


def test_the_wake_up_clock_ticks_on_start_and_stops(tmp_path: Path) -> None:
    from flowctl.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'care.db'}")
    bundle = make_bundle(tmp_path / "cfg", care_yaml())
    put_records(store, contact("1", birthday="1990-03-02"))
    care = scheduler(store, bundle, T0 + timedelta(minutes=30))
    care.start()
    try:
        for _ in range(100):
            if store.care_summary("birthday").counts:
                break
            threading.Event().wait(0.05)
    finally:
        care.stop()
    assert store.care_summary("birthday").counts == {"sent": 1}
    assert care._scheduler is None  # stopped
    store.close()
