"""Leases on every store: the heartbeat keeps work in hand, a dead owner's work comes back with
its attempts raised and is failed (changes) or dead-lettered (outbox) after the maximum."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flowctl.engine.state import Effect, Run, Step, Timer
from flowctl.ports import NewChange, Processed, Store
from flowctl.runtime.api.metrics import Metrics, register_queue_metrics
from flowctl.runtime.daemon.leases import AnotherDaemon, LeaseKeeper, lock_sqlite
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.store import open_store
from flowctl.testing import FrozenClock

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'flowctl.db'}"
    else:
        url = str(request.getfixturevalue("pg_store_url"))
    opened = open_store(url)
    yield opened
    opened.close()


def append(store: Store, *ids: str) -> None:
    store.append_changes(
        [
            NewChange(
                object="deal", record_id=i, op="put", fields={"title": i}, idempotency_key=f"k{n}", received_at=T0
            )
            for n, i in enumerate(ids)
        ]
    )


def test_the_heartbeat_keeps_a_slow_batch_and_a_dead_owner_loses_it(store: Store) -> None:
    clock = FrozenClock(T0)
    append(store, "1", "2")
    keeper = LeaseKeeper(store, clock, owner="a", lease_seconds=10)
    claimed = keeper.claim_changes(10, "a", clock.now(), 10)
    assert [c.seq for c in claimed] and keeper.held()[0] == [c.seq for c in claimed]
    for _ in range(3):  # 24 s of work, beating every 8 s: never claimable by another
        clock.advance(8)
        assert keeper.beat() == 2
        assert store.claim_changes(10, "b", clock.now(), 10) == []
    keeper.commit_batch([Processed(change=c, error="done elsewhere") for c in claimed[:1]], clock.now())
    assert keeper.held()[0] == [claimed[1].seq]
    clock.advance(11)  # "a" died: no more beats
    [taken] = store.claim_changes(10, "b", clock.now(), 10)
    assert (taken.seq, taken.attempts) == (claimed[1].seq, 2)
    assert keeper.beat() == 0  # "a" cannot extend what "b" holds now


def test_a_change_whose_workers_all_die_is_failed_after_the_maximum(store: Store) -> None:
    clock = FrozenClock(T0)
    append(store, "poison", "fine")
    for attempt in range(1, 4):
        claimed = store.claim_changes(1, f"w{attempt}", clock.now(), 5)
        assert [(c.record_id, c.attempts) for c in claimed] == [("poison", attempt)]
        assert store.fail_exhausted_changes(clock.now(), 3) == []  # its lease still runs
        clock.advance(6)
    [failed] = store.fail_exhausted_changes(clock.now(), 3)
    assert failed.record_id == "poison"
    stored = store.change(failed.seq)
    assert stored is not None and stored.status == "failed" and "gave up after 3 attempts" in stored.error
    [next_one] = store.claim_changes(5, "w4", clock.now(), 5)
    assert next_one.record_id == "fine"


def test_a_timer_whose_workers_all_die_is_given_up_and_its_run_failed(store: Store) -> None:
    clock = FrozenClock(T0)
    run = Run(id="r1", automation="flow:f", object="deal", record_id="1", status="waiting", node="wait")
    timers = [
        Timer(
            id=f"t{n}",
            run_id="r1" if n == 1 else "r2",
            due=T0,
            kind="delay",
            node="wait",
            object="deal",
            record_id=str(n),
        )
        for n in (1, 2)
    ]
    store.commit_batch([Processed(step=Step(runs={"r1": run}, timers=timers))], T0)
    for attempt in range(1, 4):
        claimed = store.claim_due_timers(clock.now(), 1, f"w{attempt}", 5)  # the earliest: t1, the poison
        assert [t.id for t in claimed] == ["t1"]
        assert store.fail_exhausted_timers(clock.now(), 3) == []  # its lease still runs
        clock.advance(6)
    assert LeaseKeeper(store, clock, owner="reaper", lease_seconds=5, max_attempts=3).reap() == 1
    assert store.timers_of("r1") == []
    stored = store.run("r1")
    assert stored is not None and stored.status == "failed"
    assert [t.id for t in store.claim_due_timers(clock.now(), 5, "w4", 5)] == ["t2"]  # the rest goes on


def test_an_outbox_row_claimed_past_its_maximum_is_dead_lettered(store: Store) -> None:
    clock = FrozenClock(T0)
    effect = Effect(
        key="e1",
        action="send_sms",
        run_id="r",
        object="deal",
        record_id="1",
        channel="sms",
        params={"to": "0901", "text": "x"},
    )
    store.commit_batch([Processed(step=Step(effects=[effect]))], T0)
    for _ in range(2):  # two deliverers died while sending
        assert len(store.claim_outbox(clock.now(), 10, "dead", 5)) == 1
        clock.advance(6)

    class Never:
        max_attempts = 2

        def send(self, row: object) -> object:
            raise AssertionError("must not be sent again")

    metrics = Metrics()
    d = Deliverer(store, {"sms": Never()}, clock, owner="live", rng=random.Random(1), metrics=metrics)  # type: ignore[dict-item]
    assert d.deliver_once() == 1
    [row] = store.list_outbox()
    assert row.status == "dead" and "gave up after 2 attempts" in row.last_error
    assert 'flowctl_deliveries_total{channel="sms",result="dead"} 1' in metrics.render()


def test_queue_metrics_read_indexed_counts(store: Store) -> None:
    clock = FrozenClock(T0)
    append(store, "1", "2", "3")
    clock.advance(42)
    metrics = Metrics()
    register_queue_metrics(metrics, store, clock, ttl=0)
    text = metrics.render()
    assert 'flowctl_changes_open{status="pending"} 3' in text
    assert "flowctl_changes_lag_seconds 42" in text
    assert 'flowctl_outbox_rows{status="held"} 0' in text
    assert "flowctl_timers_pending 0" in text
    assert "# TYPE flowctl_reloads_total counter" in text


def test_sqlite_lock_names_the_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flowctl.db'}"
    held = lock_sqlite(url)
    assert held is not None
    import subprocess
    import sys

    code = f"from flowctl.runtime.daemon.leases import lock_sqlite; lock_sqlite({url!r})"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert other.returncode != 0 and "AnotherDaemon" in other.stderr and "SQLite supports one daemon" in other.stderr
    held.close()
    assert lock_sqlite("postgresql+psycopg://x@localhost/y") is None
    assert issubclass(AnotherDaemon, Exception)
