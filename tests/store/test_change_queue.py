"""The ``ChangeQueue`` contract: append once per key, claim in seq order a record at a time, commit a batch whole."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from flowctl.engine.state import Effect, Record, StageEntry, Step
from flowctl.ports import NewChange, Processed, Store
from tests.store.contract import T0, change, claim, done, effect, in_threads, run, timer


def test_append_returns_seq_in_order_and_repeats_the_first_seq_for_a_known_key(store: Store) -> None:
    first = store.append_changes([change("1", "k1"), change("2", "k2"), change("1", "k1"), change("3", "k3")])
    assert [r.duplicate for r in first] == [False, False, True, False]
    assert first[0].seq < first[1].seq < first[3].seq
    assert first[2].seq == first[0].seq

    again = store.append_changes([change("2", "k2"), change("4", "k4")])
    assert again[0].seq == first[1].seq and again[0].duplicate
    assert not again[1].duplicate and again[1].seq > first[3].seq
    stored = store.change(first[0].seq)
    assert stored is not None
    assert (stored.idempotency_key, stored.status, stored.fields) == ("k1", "pending", {"n": "k1"})
    assert stored.received_at == T0
    assert store.counts()["changes_pending"] == 4
    assert store.append_changes([]) == []


def test_a_repeated_key_answers_with_the_fingerprint_stored_first(store: Store) -> None:
    """The API answers 409 for a key reused with another body from what the store kept, so it
    holds after a restart: a repeat's result carries the first change's fingerprint."""
    first = replace(change("1", "k1"), fingerprint="f-first")
    [stored] = store.append_changes([first])
    batch = store.append_changes(
        [
            replace(change("2", "k2"), fingerprint="f-2"),
            replace(change("2", "k2"), fingerprint="f-other"),
            replace(change("1", "k1"), fingerprint="f-changed"),
            change("3", "k3"),
        ]
    )
    assert (stored.duplicate, stored.fingerprint) == (False, "f-first")
    assert [(r.duplicate, r.fingerprint) for r in batch] == [
        (False, "f-2"),
        (True, "f-2"),
        (True, "f-first"),
        (False, ""),
    ]
    assert batch[2].seq == stored.seq


def test_a_stored_change_keeps_every_field(store: Store) -> None:
    new = NewChange(
        object="deal",
        record_id="7",
        op="event",
        idempotency_key="ev",
        event="invoice.paid",
        data={"amount": 12.5, "lines": [1, 2]},
        source="hook:stripe",
        stage="won",
        pipeline="sales",
        fields={"név": "Ünnep"},
        received_at=T0.astimezone(timezone(timedelta(hours=7))),
    )
    [result] = store.append_changes([new])
    [claimed] = store.claim_changes(1, "w1", T0, 30)
    assert claimed.seq == result.seq
    assert (claimed.status, claimed.attempts) == ("claimed", 1)
    assert claimed.received_at == T0 and claimed.received_at.tzinfo == UTC  # type: ignore[union-attr]
    for name in (
        "object",
        "record_id",
        "op",
        "idempotency_key",
        "event",
        "data",
        "source",
        "stage",
        "pipeline",
        "fields",
    ):
        assert getattr(claimed, name) == getattr(new, name), name


def test_claim_hands_out_changes_in_seq_order_with_every_change_of_a_record_in_one_call(store: Store) -> None:
    store.append_changes([change("A", "a1"), change("B", "b1"), change("A", "a2"), change("C", "c1")])
    assert claim(store) == ["a1", "b1", "a2", "c1"]
    assert claim(store, owner="w2") == []


def test_a_record_waits_while_an_earlier_change_is_leased_or_left_behind(store: Store) -> None:
    store.append_changes([change("A", "a1"), change("A", "a2"), change("B", "b1"), change("A", "a3")])
    first = store.claim_changes(1, "w1", T0, 30)
    assert [c.idempotency_key for c in first] == ["a1"]
    # a2 and a3 wait for a1 (leased to w1); b1 is free
    assert claim(store, owner="w2") == ["b1"]
    assert claim(store, owner="w1") == []
    store.commit_batch(done(*first), T0)
    assert claim(store, limit=1, owner="w2") == ["a2"]
    assert claim(store, owner="w3") == []  # a3 waits for a2, leased to w2


def test_limit_keeps_later_changes_of_the_same_record_back(store: Store) -> None:
    store.append_changes([change("A", "a1"), change("B", "b1"), change("A", "a2")])
    assert claim(store, limit=2) == ["a1", "b1"]
    assert claim(store, owner="w2") == []


def test_an_expired_lease_is_claimed_again_with_one_more_attempt(store: Store) -> None:
    store.append_changes([change("A", "a1"), change("A", "a2")])
    [first] = store.claim_changes(1, "w1", T0, 30)
    assert first.attempts == 1
    assert claim(store, owner="w2", now=T0 + timedelta(seconds=29)) == []
    again = store.claim_changes(10, "w2", T0 + timedelta(seconds=31), 30)
    assert [(c.idempotency_key, c.attempts) for c in again] == [("a1", 2), ("a2", 1)]


def test_failed_changes_do_not_block_their_record(store: Store) -> None:
    store.append_changes([change("A", "a1"), change("A", "a2")])
    [first] = store.claim_changes(1, "w1", T0, 30)
    store.commit_batch([Processed(change=first, error="boom: bad field")], T0)
    failed = store.change(first.seq)
    assert failed is not None and (failed.status, failed.error) == ("failed", "boom: bad field")
    assert store.counts()["changes_failed"] == 1
    assert claim(store) == ["a2"]


def test_commit_batch_round_trips_everything_and_finishes_the_change(store: Store) -> None:
    [appended] = store.append_changes([change("7", "k1")])
    [claimed] = store.claim_changes(10, "w1", T0, 30)
    before = Record(
        object="deal",
        id="7",
        fields={"amount": 12, "tags": ["x"]},
        stage="new",
        pipeline="sales",
        owner="an",
        version=1,
    )
    after = Record(
        object="deal",
        id="7",
        fields={"amount": 12, "tags": ["x"], "score": 0.5},
        stage="qualified",
        pipeline="sales",
        owner="binh",
        version=2,
    )
    other = Record(object="contact", id="c1", fields={"email": "a@example.com"})
    the_run = run()
    step = Step(
        records={after.key: after, other.key: other},
        runs={the_run.id: the_run},
        timers=[timer("t1", T0 + timedelta(days=1))],
        effects=[effect("e1", subject="Hi")],
        allocations={"sales-rr": {"position": 1, "load": {"an": 1}}},
    )
    store.commit_batch([Processed(change=claimed, record=before, step=step)], T0)

    assert store.record("deal", "7") == after
    assert store.record("contact", "c1") == other
    assert store.record("deal", "nope") is None
    assert store.run("r1") == the_run
    assert store.active_runs("deal", "7") == [the_run]
    assert store.timers_of("r1") == [timer("t1", T0 + timedelta(days=1))]
    assert store.allocation("sales-rr") == {"position": 1, "load": {"an": 1}}
    assert store.allocation("unknown") == {}
    [row] = store.list_outbox()
    assert (row.key, row.channel, row.action, row.object, row.record_id, row.run_id) == (
        "e1",
        "smtp",
        "send_email",
        "deal",
        "7",
        "r1",
    )
    assert row.payload == {"to": "a@example.com", "subject": "Hi"}
    assert (row.status, row.attempts, row.recipient, row.created_at) == ("pending", 0, "a@example.com", T0)
    finished = store.change(appended.seq)
    assert finished is not None and (finished.status, finished.error) == ("done", "")
    counts = store.counts()
    assert (counts["changes_pending"], counts["changes_claimed"], counts["runs_waiting"]) == (0, 0, 1)
    assert (counts["records"], counts["timers"], counts["outbox_pending"]) == (2, 1, 1)


def test_store_only_effects_do_not_enter_the_outbox(store: Store) -> None:
    quiet = Effect(key="u1", action="update_fields", run_id="r1", object="deal", record_id="7", params={"a": 1})
    store.commit_batch([Processed(step=Step(effects=[quiet, effect("e1")]))], T0)
    assert [r.key for r in store.list_outbox()] == ["e1"]


def test_later_items_of_a_batch_win(store: Store) -> None:
    v1, v2 = Record(object="deal", id="7", version=1), Record(object="deal", id="7", version=2)
    r1, r2 = run(status="waiting"), run(status="done")
    batch = [
        Processed(
            step=Step(
                records={v1.key: v1}, runs={"r1": r1}, timers=[timer("t1", T0)], allocations={"rr": {"position": 1}}
            )
        ),
        Processed(
            step=Step(
                records={v2.key: v2}, runs={"r1": r2}, cancelled_timers=["t1"], allocations={"rr": {"position": 2}}
            )
        ),
    ]
    store.commit_batch(batch, T0)
    assert store.record("deal", "7") == v2
    assert store.run("r1") == r2
    assert store.active_runs("deal", "7") == []
    assert store.timers_of("r1") == []
    assert store.allocation("rr") == {"position": 2}


def test_a_failure_mid_commit_leaves_nothing_of_the_batch(store: Store) -> None:
    store.append_changes([change("7", "k1"), change("8", "k2")])
    first, second = store.claim_changes(10, "w1", T0, 30)
    store.commit_batch([Processed(step=Step(timers=[timer("old", T0)]))], T0)
    good = Processed(
        change=first,
        record=Record(object="deal", id="7"),
        step=Step(
            runs={"r1": run()},
            timers=[timer("t1", T0)],
            effects=[effect("e1")],
            cancelled_timers=["old"],
            allocations={"rr": {"position": 1}},
            stage_entries=[StageEntry(object="deal", record_id="7", pipeline="p", stage="new", at=T0, key="c1")],
        ),
    )
    bad = Processed(
        change=second, record=Record(object="deal", id="8"), step=Step(effects=[effect("e2", attachment=object())])
    )  # cannot be stored as JSON
    with pytest.raises(Exception):  # noqa: B017 - whichever error the backend raises for it
        store.commit_batch([good, bad], T0)
    assert store.record("deal", "7") is None and store.record("deal", "8") is None
    assert store.run("r1") is None
    assert store.timers_of("r1") == [timer("old", T0)]
    assert store.list_outbox() == []
    assert store.allocation("rr") == {}
    assert store.stage_entries("deal", "7") == []
    assert [store.change(c.seq).status for c in (first, second)] == ["claimed", "claimed"]  # type: ignore[union-attr]


def test_fired_and_cancelled_timers_are_deleted_and_a_timer_set_again_stays(store: Store) -> None:
    store.commit_batch([Processed(step=Step(timers=[timer("t1", T0), timer("t2", T0), timer("t3", T0)]))], T0)
    fired = store.claim_due_timers(T0, 10, "w1", 30)
    assert [t.id for t in fired] == ["t1", "t2", "t3"]
    later = timer("t3", T0 + timedelta(hours=1))
    store.commit_batch(
        [
            Processed(timer=fired[0], step=Step(cancelled_timers=["t2"])),
            Processed(timer=fired[2], step=Step(timers=[later])),
        ],
        T0,
    )
    assert store.timers_of("r1") == [later]
    assert store.claim_due_timers(T0 + timedelta(hours=1), 10, "w1", 30) == [later]  # its lease was reset


def test_a_duplicate_outbox_key_is_ignored(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect("e1", n=1), effect("e1", n=2)]))], T0)
    store.commit_batch([Processed(step=Step(effects=[effect("e1", n=3), effect("e2", n=4)]))], T0)
    rows = store.list_outbox()
    assert [(r.key, r.payload["n"]) for r in rows] == [("e2", 4), ("e1", 1)]


def test_datetimes_come_back_aware_in_utc_and_naive_ones_are_refused(store: Store) -> None:
    hanoi = timezone(timedelta(hours=7))
    store.commit_batch([Processed(step=Step(timers=[timer("t1", datetime(2026, 3, 1, 16, 0, tzinfo=hanoi))]))], T0)
    [back] = store.timers_of("r1")
    assert back.due == T0 and back.due.tzinfo == UTC
    with pytest.raises(Exception):  # noqa: B017 - a ValueError, wrapped by SQLAlchemy on SQL stores
        store.commit_batch([Processed(step=Step(timers=[timer("t2", datetime(2026, 3, 1))]))], T0)


def test_claim_due_timers_returns_only_due_ones_in_due_order_and_leases_them(store: Store) -> None:
    dues = {
        "late": T0 - timedelta(minutes=1),
        "early": T0 - timedelta(hours=2),
        "now": T0,
        "future": T0 + timedelta(seconds=1),
        "mid": T0 - timedelta(minutes=30),
    }
    store.commit_batch([Processed(step=Step(timers=[timer(i, d, run_id=i) for i, d in dues.items()]))], T0)
    assert [t.id for t in store.claim_due_timers(T0, 2, "w1", 60)] == ["early", "mid"]
    assert [t.id for t in store.claim_due_timers(T0, 10, "w2", 60)] == ["late", "now"]
    later = store.claim_due_timers(T0 + timedelta(seconds=30), 10, "w3", 60)
    assert later == [timer("future", dues["future"], "future")]
    # leases run out: the four unfinished ones come back, earliest first
    assert [t.id for t in store.claim_due_timers(T0 + timedelta(seconds=61), 10, "w4", 60)] == [
        "early",
        "mid",
        "late",
        "now",
    ]
    assert store.claim_due_timers(T0, 0, "w1", 60) == []


def test_concurrent_claimers_never_share_a_change_nor_run_a_record_out_of_order(
    store: Store, open_more: Callable[[], Store]
) -> None:
    keys = [(f"rec{i % 13}", f"k{i:04}") for i in range(400)]
    appended = store.append_changes([change(rec, key) for rec, key in keys])
    lock = threading.Lock()
    busy: dict[str, int] = {}  # record -> worker holding one of its changes
    seen: dict[str, list[int]] = {}
    claimed: list[int] = []
    replicas = [open_more() for _ in range(3)]

    def work(i: int) -> None:
        replica, idle = replicas[i], 0
        while idle < 3:
            batch = replica.claim_changes(7, f"w{i}", T0, 300)
            idle = 0 if batch else idle + 1
            with lock:
                for c in batch:
                    assert busy.get(c.record_id, i) == i, f"{c.record_id} is held by two workers"
                    busy[c.record_id] = i
                    seen.setdefault(c.record_id, []).append(c.seq)
                    claimed.append(c.seq)
                for c in batch:
                    busy.pop(c.record_id, None)  # released before the commit makes the next one claimable
            replica.commit_batch(done(*batch), T0)

    in_threads(3, work)
    assert sorted(claimed) == sorted(r.seq for r in appended)
    for seqs in seen.values():
        assert seqs == sorted(seqs)


def test_concurrent_claimers_never_share_a_timer_or_an_outbox_row(store: Store, open_more: Callable[[], Store]) -> None:
    timers = [timer(f"t{i:03}", T0 - timedelta(seconds=i), run_id=f"r{i}") for i in range(300)]
    effects = [effect(f"e{i:03}") for i in range(300)]
    store.commit_batch([Processed(step=Step(timers=timers, effects=effects))], T0)
    replicas = [open_more() for _ in range(3)]
    lock = threading.Lock()
    fired: list[str] = []
    sent: list[int] = []

    def work(i: int) -> None:
        replica = replicas[i]
        while True:
            due = replica.claim_due_timers(T0, 9, f"w{i}", 300)
            rows = replica.claim_outbox(T0, 9, f"w{i}", 300)
            if not due and not rows:
                return
            with lock:
                fired.extend(t.id for t in due)
                sent.extend(r.id for r in rows)
            replica.commit_batch([Processed(timer=t) for t in due], T0)
            for row in rows:
                replica.mark_sent(row.id, T0)

    in_threads(3, work)
    assert sorted(fired) == sorted(t.id for t in timers)
    assert len(sent) == len(set(sent)) == 300


def test_open_changes_are_a_records_pending_and_claimed_changes_in_order(store: Store) -> None:
    store.append_changes([change("7", "k1"), change("8", "k2"), change("7", "k3"), change("7", "k4")])
    [first] = store.claim_changes(1, "w1", T0, 30)
    store.commit_batch(done(first), T0)
    store.claim_changes(1, "w1", T0, 30)  # k2 (record 8)
    store.claim_changes(1, "w1", T0, 30)  # k3: claimed, not done
    assert [c.idempotency_key for c in store.open_changes("deal", "7")] == ["k3", "k4"]
    assert [c.status for c in store.open_changes("deal", "7")] == ["claimed", "pending"]
    assert store.open_changes("deal", "9") == []
