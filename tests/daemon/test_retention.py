"""Retention against a running daemon: with every retention at 2 s, processed changes, finished
runs and sent messages go while the daemon runs, and what a guarantee needs stays: the newest
change of each record, waiting runs and their timers, held and dead messages; nothing is sent twice."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowctl.runtime.daemon.retention import BATCH, BATCH_MIN, BATCH_START, HOLD, RetentionPurge, cutoffs, next_size
from flowctl.spec import model as m
from flowctl.spec.config import load_bundle_from_files
from flowctl.store import open_store
from flowctl.testing import Daemon, FrozenClock, wait_for, write_config
from tests.daemon.configs import deal_config, http_channel
from tests.reliability.gateway import Gateway, serve
from tests.store.contract import T0, change, done

DEALS = 20
RETENTION = "{processed_changes: 2s, finished_runs: 2s, sent_messages: 2s}"


def flow(name: str, nodes: str) -> str:
    return f"""\
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: {name}}}
spec:
  object: deal
  trigger: {{on: created}}
  start: a
  nodes:
{nodes}"""


def config(gateway: str) -> dict[str, str]:
    now = datetime.now(UTC)
    quiet = f'{{start: "{(now - timedelta(hours=1)):%H:%M}", end: "{(now + timedelta(hours=3)):%H:%M}"}}'
    channels = (
        http_channel("sms", f"{gateway}/sms")
        + "---\n"
        + http_channel("night", f"{gateway}/night", f"  quiet_hours: {quiet}\n")
        + "---\n"
        + http_channel("broken", "ftp://nowhere.example/")  # refused for good: dead at once
    )
    spec = f"{{timezone: UTC, retention: {RETENTION}}}"
    return {
        "flowctl.yaml": deal_config("    phone: phone\n", spec=spec, then=channels),
        "flows/sms.yaml": flow("hello", '    a: {type: send_sms, channel: sms, to: "{{ record.phone }}", text: hi}\n'),
        "flows/wait.yaml": flow(
            "later", '    a: {type: delay, for: 1h, next: b}\n    b: {type: add_note, text: "x"}\n'
        ),
        "flows/held.yaml": flow(
            "night", '    a: {type: send_sms, channel: night, to: "{{ record.phone }}", text: n}\n'
        ),
        "flows/dead.yaml": flow(
            "dead", '    a: {type: send_sms, channel: broken, to: "{{ record.phone }}", text: d}\n'
        ),
    }


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with serve() as gw:
        yield gw


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_old_rows_go_while_the_daemon_runs_and_what_a_guarantee_needs_stays(
    tmp_path: Path, gateway: Gateway, backend: str, request: pytest.FixtureRequest
) -> None:
    root = write_config(tmp_path / "config", config(gateway.url))
    database = f"sqlite:///{tmp_path / 'flowctl.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = open_store(database)
    try:
        with Daemon(root, database) as daemon:
            for i in range(DEALS):
                assert daemon.put("deal", f"d{i}", {"title": f"Deal {i}", "phone": f"09{i:08d}"}).status_code == 202
            wait_for(lambda: len(gateway.keys("/sms")) == DEALS, 60, "every SMS")
            for i in range(DEALS):  # a second change per record: the first may go, the newest stays
                assert daemon.patch("deal", f"d{i}", {"title": f"Deal {i}!"}).status_code == 202

            def purged() -> bool:
                runs = Counter(r.status for r in store.list_runs(limit=1000))
                outbox = Counter(r.status for r in store.list_outbox(limit=1000))
                return runs == {"waiting": DEALS} and outbox == {"held": DEALS, "dead": DEALS}

            wait_for(purged, 60, "finished runs and sent messages purged")
            wait_for(lambda: len(store.changes_after(0)) == DEALS, 30, "processed changes purged")
            kept = store.changes_after(0)
            assert {(c.record_id, c.fields.get("title")) for c in kept} == {
                (f"d{i}", f"Deal {i}!") for i in range(DEALS)
            }
            assert all(len(store.timers_of(r.id)) == 1 for r in store.list_runs(limit=1000))  # timers stay
            assert "retention: purged" in daemon.output()

            again = daemon.put("deal", "d0", {"title": "Deal 0", "phone": "0900000000"})  # purged change: a new write
            assert again.status_code == 202
            wait_for(lambda: daemon.get("/v1/records/deal/d0").json()["fields"]["title"] == "Deal 0", 30, "d0 written")
        sms = Counter(gateway.keys("/sms"))
        assert len(sms) == DEALS and max(sms.values()) == 1  # each once: a purge sends nothing again
        assert gateway.keys("/night") == []  # held, not sent
    finally:
        store.close()


def bundle_of(channel_extra: str = "", care_grace: str = "") -> m.Bundle:
    files = {"flowctl.yaml": deal_config("    birthday: date\n", spec=f"{{timezone: UTC, retention: {RETENTION}}}")}
    files["channels.yaml"] = http_channel("sms", "http://127.0.0.1:9/sms", channel_extra)
    if care_grace:
        files["care.yaml"] = f"""\
apiVersion: flowctl/v1
kind: CareProcess
metadata: {{name: birthday}}
spec:
  object: deal
  when: {{anniversary_of: birthday, at: "09:00"}}
  feb29: feb28
  on_missed: catch_up
  grace: {care_grace}
  dst_gap: shift
  dst_overlap: once
  actions:
    - {{action: add_note, text: "hi"}}
"""
    loaded = load_bundle_from_files(files)
    assert loaded.bundle is not None and not loaded.errors, [str(i) for i in loaded.errors]
    return loaded.bundle


def test_a_purge_keeps_what_a_sending_policy_counts_and_what_a_care_tick_may_look_at_again() -> None:
    now = datetime(2026, 3, 1, 9, tzinfo=UTC)
    plain = cutoffs(bundle_of(), now)
    assert plain["changes"] == plain["runs"] == plain["messages"] == now - timedelta(seconds=2)
    assert plain["care"] == now - timedelta(days=30)  # the default retention
    assert cutoffs(bundle_of("  per_recipient: 2/h\n"), now)["messages"] == now - timedelta(hours=1)
    assert cutoffs(bundle_of("  daily_budget: 100\n"), now)["messages"] == now - timedelta(days=2)
    assert cutoffs(bundle_of(care_grace="40d"), now)["care"] == now - timedelta(days=41)  # grace + a day


@pytest.mark.parametrize("old_file", [False, True], ids=["incremental", "made-before-auto-vacuum"])
def test_a_round_purges_in_batches_and_gives_the_pages_back_when_the_file_can(tmp_path: Path, old_file: bool) -> None:
    path = tmp_path / "flowctl.db"
    if old_file:
        with sqlite3.connect(path) as conn:  # auto_vacuum stays off: the round must still end
            conn.execute("CREATE TABLE leftover (x)")
    store = open_store(f"sqlite:///{path}")
    try:
        keys = [(str(i % 5), f"k{i}") for i in range(50)]
        store.append_changes([replace(change(r, k), fields={"text": "x" * 3000}) for r, k in keys])
        store.commit_batch(done(*store.claim_changes(100, "w1", T0, 30)), T0)
        purge = RetentionPurge(store, FrozenClock(T0 + timedelta(days=1)), batch=10, pause=0)
        assert purge.purge(bundle_of())["changes"] == 45  # five batches; the newest of each record stays
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        assert (free > 20) if old_file else (free == 0)
    finally:
        store.close()


def test_a_purge_batch_shrinks_when_it_held_the_lock_long_and_grows_when_it_was_quick() -> None:
    # a write on the hot path waits for the batch in hand: about HOLD at most, whatever the backlog
    assert next_size(400, HOLD * 4, BATCH) == 100
    assert next_size(100, HOLD * 100, BATCH) == BATCH_MIN  # never stuck at nothing
    assert next_size(100, HOLD / 4, BATCH) == 200
    assert next_size(800, HOLD / 4, BATCH) == BATCH  # never past the largest
    assert next_size(100, HOLD * 0.75, BATCH) == 100  # about right: kept
    assert next_size(10, HOLD * 100, 4) == 4  # a caller's smaller largest (tests) holds


def test_a_backlog_purges_in_batches_that_follow_the_time_each_took(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        keys = [(f"r{i}", f"k{i}-{n}") for i in range(400) for n in range(2)]
        store.append_changes([change(r, k) for r, k in keys])
        store.commit_batch(done(*store.claim_changes(1000, "w1", T0, 30)), T0)
        sizes: list[int] = []
        purge_of = store.purge

        def purge(kind: Any, before: datetime, limit: int) -> int:
            if kind == "changes":
                sizes.append(limit)
                if len(sizes) == 1:
                    time.sleep(HOLD * 3)  # the first batch held the lock too long, on any machine
            return purge_of(kind, before, limit)

        store.purge = purge  # type: ignore[method-assign]
        assert RetentionPurge(store, FrozenClock(T0 + timedelta(days=1)), pause=0).purge(bundle_of())["changes"] == 400
        assert sizes[:2] == [BATCH_START, BATCH_MIN], sizes  # it started at 100, then took fewer rows
    finally:
        store.close()
