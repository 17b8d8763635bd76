"""One contract for every Store: memory, SQLite and PostgreSQL must behave the same."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from flowctl.engine.state import Effect, Record, Run, Step, Timer, TraceEntry
from flowctl.ports import ConfigVersion, NewChange, Processed, Store, StoredChange
from flowctl.store import MemoryStore, open_store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def change(record_id: str, key: str, object: str = "deal", **kw: object) -> NewChange:
    return NewChange(object=object, record_id=record_id, op="patch", idempotency_key=key,
                     fields={"n": key}, received_at=T0, **kw)  # type: ignore[arg-type]  # fmt: skip


def done(*claimed: StoredChange, **kw: object) -> list[Processed]:
    return [Processed(change=c, **kw) for c in claimed]  # type: ignore[arg-type]


def effect(key: str, **params: object) -> Effect:
    return Effect(key=key, action="send_email", run_id="r1", object="deal", record_id="7", channel="smtp",
                  params={"to": "a@example.com", **params})  # fmt: skip


def timer(id: str, due: datetime, run_id: str = "r1") -> Timer:
    return Timer(id=id, run_id=run_id, due=due, kind="delay", node="wait", object="deal", record_id="7")


def run(id: str = "r1", status: str = "waiting", seq: int = 1, **kw: object) -> Run:
    trace = (
        TraceEntry(at=T0.isoformat(), node="start", kind="enter"),
        TraceEntry(
            at=T0.isoformat(),
            node="check",
            kind="condition",
            detail="amount > 10",
            values={"amount": 12, "tags": ["a", "b"], "nested": {"x": None}},
            result=True,
        ),
        TraceEntry(at=T0.isoformat(), node="mail", kind="effect", detail="send_email", result={"ok": 1}),
    )
    return Run(id=id, automation="flow:welcome", object="deal", record_id="7", status=status, node="wait",  # type: ignore[arg-type]
               waiting_for="invoice.paid", entry="e1", visits={"check": 2, "mail": 1}, steps=3,
               started_at=T0.isoformat(), updated_at=T0.isoformat(), config_version="abc", trace=trace,
               seq=seq, **kw)  # fmt: skip


def claim(store: Store, limit: int = 100, owner: str = "w1", now: datetime = T0, lease: float = 30) -> list[str]:
    return [c.idempotency_key for c in store.claim_changes(limit, owner, now, lease)]


# ------------------------------------------------------------------------------------ ingest


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
    batch = store.append_changes([replace(change("2", "k2"), fingerprint="f-2"),
                                  replace(change("2", "k2"), fingerprint="f-other"),
                                  replace(change("1", "k1"), fingerprint="f-changed"),
                                  change("3", "k3")])  # fmt: skip
    assert (stored.duplicate, stored.fingerprint) == (False, "f-first")
    assert [(r.duplicate, r.fingerprint) for r in batch] == [(False, "f-2"), (True, "f-2"), (True, "f-first"),
                                                             (False, "")]  # fmt: skip
    assert batch[2].seq == stored.seq


def test_a_stored_change_keeps_every_field(store: Store) -> None:
    new = NewChange(object="deal", record_id="7", op="event", idempotency_key="ev", event="invoice.paid",
                    data={"amount": 12.5, "lines": [1, 2]}, source="hook:stripe", stage="won", pipeline="sales",
                    fields={"név": "Ünnep"}, received_at=T0.astimezone(timezone(timedelta(hours=7))))  # fmt: skip
    [result] = store.append_changes([new])
    [claimed] = store.claim_changes(1, "w1", T0, 30)
    assert claimed.seq == result.seq
    assert (claimed.status, claimed.attempts) == ("claimed", 1)
    assert claimed.received_at == T0 and claimed.received_at.tzinfo == UTC  # type: ignore[union-attr]
    for name in ("object", "record_id", "op", "idempotency_key", "event", "data", "source", "stage", "pipeline",
                 "fields"):  # fmt: skip
        assert getattr(claimed, name) == getattr(new, name), name


# ------------------------------------------------------------------------------------ claiming changes


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


# ------------------------------------------------------------------------------------ commit_batch


def test_commit_batch_round_trips_everything_and_finishes_the_change(store: Store) -> None:
    [appended] = store.append_changes([change("7", "k1")])
    [claimed] = store.claim_changes(10, "w1", T0, 30)
    before = Record(object="deal", id="7", fields={"amount": 12, "tags": ["x"]}, stage="new", pipeline="sales",
                    owner="an", version=1)  # fmt: skip
    after = Record(object="deal", id="7", fields={"amount": 12, "tags": ["x"], "score": 0.5}, stage="qualified",
                   pipeline="sales", owner="binh", version=2)  # fmt: skip
    other = Record(object="contact", id="c1", fields={"email": "a@example.com"})
    the_run = run()
    step = Step(records={after.key: after, other.key: other}, runs={the_run.id: the_run},
                timers=[timer("t1", T0 + timedelta(days=1))], effects=[effect("e1", subject="Hi")],
                allocations={"sales-rr": {"position": 1, "load": {"an": 1}}})  # fmt: skip
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
        "e1", "smtp", "send_email", "deal", "7", "r1")  # fmt: skip
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
        Processed(step=Step(records={v1.key: v1}, runs={"r1": r1}, timers=[timer("t1", T0)],
                            allocations={"rr": {"position": 1}})),
        Processed(step=Step(records={v2.key: v2}, runs={"r1": r2}, cancelled_timers=["t1"],
                            allocations={"rr": {"position": 2}})),
    ]  # fmt: skip
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
    good = Processed(change=first, record=Record(object="deal", id="7"),
                     step=Step(runs={"r1": run()}, timers=[timer("t1", T0)], effects=[effect("e1")],
                               cancelled_timers=["old"], allocations={"rr": {"position": 1}}))  # fmt: skip
    bad = Processed(change=second, record=Record(object="deal", id="8"),
                    step=Step(effects=[effect("e2", attachment=object())]))  # cannot be stored as JSON  # fmt: skip
    with pytest.raises(Exception):  # noqa: B017 - whichever error the backend raises for it
        store.commit_batch([good, bad], T0)
    assert store.record("deal", "7") is None and store.record("deal", "8") is None
    assert store.run("r1") is None
    assert store.timers_of("r1") == [timer("old", T0)]
    assert store.list_outbox() == []
    assert store.allocation("rr") == {}
    assert [store.change(c.seq).status for c in (first, second)] == ["claimed", "claimed"]  # type: ignore[union-attr]


def test_fired_and_cancelled_timers_are_deleted_and_a_timer_set_again_stays(store: Store) -> None:
    store.commit_batch([Processed(step=Step(timers=[timer("t1", T0), timer("t2", T0), timer("t3", T0)]))], T0)
    fired = store.claim_due_timers(T0, 10, "w1", 30)
    assert [t.id for t in fired] == ["t1", "t2", "t3"]
    later = timer("t3", T0 + timedelta(hours=1))
    store.commit_batch([Processed(timer=fired[0], step=Step(cancelled_timers=["t2"])),
                        Processed(timer=fired[2], step=Step(timers=[later]))], T0)  # fmt: skip
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


# ------------------------------------------------------------------------------------ timers


def test_claim_due_timers_returns_only_due_ones_in_due_order_and_leases_them(store: Store) -> None:
    dues = {"late": T0 - timedelta(minutes=1), "early": T0 - timedelta(hours=2), "now": T0,
            "future": T0 + timedelta(seconds=1), "mid": T0 - timedelta(minutes=30)}  # fmt: skip
    store.commit_batch([Processed(step=Step(timers=[timer(i, d, run_id=i) for i, d in dues.items()]))], T0)
    assert [t.id for t in store.claim_due_timers(T0, 2, "w1", 60)] == ["early", "mid"]
    assert [t.id for t in store.claim_due_timers(T0, 10, "w2", 60)] == ["late", "now"]
    later = store.claim_due_timers(T0 + timedelta(seconds=30), 10, "w3", 60)
    assert later == [timer("future", dues["future"], "future")]
    # leases run out: the four unfinished ones come back, earliest first
    assert [t.id for t in store.claim_due_timers(T0 + timedelta(seconds=61), 10, "w4", 60)] == [
        "early", "mid", "late", "now"]  # fmt: skip
    assert store.claim_due_timers(T0, 0, "w1", 60) == []


# ------------------------------------------------------------------------------------ outbox


def test_outbox_claim_send_fail_dead_and_retry(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2"), effect("e3")]))], T0)
    e1, e2, e3 = store.claim_outbox(T0, 10, "d1", 60)
    assert [(r.key, r.status, r.attempts) for r in (e1, e2, e3)] == [("e1", "sending", 1), ("e2", "sending", 1),
                                                                     ("e3", "sending", 1)]  # fmt: skip
    assert store.claim_outbox(T0, 10, "d2", 60) == []

    store.mark_sent(e1.id, T0)
    store.mark_failed(e2.id, "421 try later", T0 + timedelta(minutes=5), T0)
    store.mark_failed(e3.id, "550 no such user", None, T0)
    sent, retry, dead = (store.outbox_row(r.id) for r in (e1, e2, e3))
    assert sent is not None and (sent.status, sent.sent_at) == ("sent", T0)
    assert retry is not None and (retry.status, retry.last_error, retry.next_attempt_at) == (
        "retry", "421 try later", T0 + timedelta(minutes=5))  # fmt: skip
    assert dead is not None and (dead.status, dead.last_error) == ("dead", "550 no such user")
    assert [r.key for r in store.list_outbox(status="dead")] == ["e3"]
    counts = store.counts()
    assert (counts["outbox_retry"], counts["outbox_dead"], counts["outbox_pending"]) == (1, 1, 0)

    assert store.claim_outbox(T0 + timedelta(minutes=4), 10, "d1", 60) == []
    [again] = store.claim_outbox(T0 + timedelta(minutes=5), 10, "d1", 60)
    assert (again.key, again.attempts) == ("e2", 2)
    store.mark_sent(again.id, T0 + timedelta(minutes=5))

    assert not store.retry_outbox(e1.id, T0)  # sent stays sent
    assert store.retry_outbox(e3.id, T0 + timedelta(hours=1))
    revived = store.outbox_row(e3.id)
    assert revived is not None and (revived.status, revived.attempts) == ("pending", 0)
    assert [r.key for r in store.claim_outbox(T0 + timedelta(hours=1), 10, "d1", 60)] == ["e3"]
    assert store.outbox_row(10_000) is None


def test_after_the_clock_went_back_pending_rows_are_due_and_waiting_ones_move_earlier(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2"), effect("e3")]))], T0)
    e1, e2, e3 = store.claim_outbox(T0, 10, "d1", 60)
    store.mark_failed(e1.id, "421 try later", T0 + timedelta(seconds=5), T0)
    store.hold_outbox_many([(e2.id, T0 + timedelta(days=1), "held: quiet hours")], T0)
    store.mark_sent(e3.id, T0)
    store.commit_batch([Processed(step=Step(effects=[effect("e4")]))], T0)
    back = T0 - timedelta(hours=1)  # the clock went back an hour: e4 was written "in the future"
    assert [r.key for r in store.claim_outbox(back, 10, "d1", 60)] == ["e4"]
    assert store.shift_outbox(3600, back) == 2
    retry, held = store.outbox_row(e1.id), store.outbox_row(e2.id)
    assert retry is not None and retry.next_attempt_at == back + timedelta(seconds=5)
    assert held is not None and held.next_attempt_at == T0 + timedelta(days=1) - timedelta(hours=1)
    assert store.claim_outbox(back, 10, "d1", 60) == []
    assert [r.key for r in store.claim_outbox(back + timedelta(seconds=5), 10, "d1", 60)] == ["e1"]
    assert store.shift_outbox(3 * 86400, back) == 1  # the hold alone: sent and sending rows never move
    held = store.outbox_row(e2.id)
    assert held is not None and held.next_attempt_at == back  # never before now


def test_retries_due_later_than_any_backoff_are_clamped_to_now(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2")]))], T0)
    e1, e2 = store.claim_outbox(T0, 10, "d1", 60)
    store.mark_failed(e1.id, "421", T0 + timedelta(seconds=30), T0)
    store.mark_failed(e2.id, "421", T0 + timedelta(hours=2), T0)
    assert store.clamp_retries(3600, T0) == 1
    soon, far = store.outbox_row(e1.id), store.outbox_row(e2.id)
    assert soon is not None and soon.next_attempt_at == T0 + timedelta(seconds=30)
    assert far is not None and far.next_attempt_at == T0


def test_rows_not_tried_are_released_due_now_and_busy_channels_are_skipped(store: Store) -> None:
    sms = Effect(key="s1", action="send_sms", run_id="r1", object="deal", record_id="7", channel="sms",
                 params={"to": "0901234567", "text": "x"})  # fmt: skip
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2"), sms]))], T0)
    assert [r.key for r in store.claim_outbox(T0, 10, "d1", 60, skip_channels=["smtp"])] == ["s1"]
    e1, e2 = store.claim_outbox(T0, 10, "d1", 60)
    store.mark_failed(e2.id, "421 try later", T0, T0)
    [e2] = store.claim_outbox(T0, 10, "d1", 60)
    assert (e1.attempts, e2.attempts) == (1, 2)
    later = T0 + timedelta(seconds=50)
    store.release_outbox([e1.id, e2.id], later)  # neither was tried in this claim
    first, second = store.outbox_row(e1.id), store.outbox_row(e2.id)
    assert first is not None and (first.status, first.attempts, first.next_attempt_at) == ("pending", 0, later)
    assert second is not None and (second.status, second.attempts, second.last_error) == ("retry", 1, "421 try later")
    assert [r.key for r in store.claim_outbox(later, 10, "d2", 60)] == ["e1", "e2"]  # not a lease later
    store.mark_sent(e1.id, later)
    store.release_outbox([e1.id], later)  # a sent row stays sent
    sent = store.outbox_row(e1.id)
    assert sent is not None and sent.status == "sent"


def test_an_outbox_row_whose_sender_died_is_claimed_again(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect("e1")]))], T0)
    [first] = store.claim_outbox(T0, 10, "d1", 60)
    assert store.claim_outbox(T0 + timedelta(seconds=59), 10, "d2", 60) == []
    [again] = store.claim_outbox(T0 + timedelta(seconds=61), 10, "d2", 60)
    assert (again.id, again.attempts) == (first.id, 2)


def test_expired_leases_are_taken_again_at_once_with_their_attempts_counted(store: Store) -> None:
    store.append_changes([change("A", "a1")])
    store.commit_batch([Processed(step=Step(effects=[effect("e1")]))], T0)
    [held] = store.claim_changes(1, "dead", T0, 60)
    [row] = store.claim_outbox(T0, 10, "dead", 60)
    assert store.expire_leases(T0 + timedelta(seconds=1)) == 2
    assert store.expire_leases(T0 + timedelta(seconds=1)) == 0  # nothing leased any more
    later = T0 + timedelta(seconds=2)
    assert [(c.seq, c.attempts) for c in store.claim_changes(10, "new", later, 60)] == [(held.seq, 2)]
    assert [(r.id, r.attempts) for r in store.claim_outbox(later, 10, "new", 60)] == [(row.id, 2)]


def test_the_leases_of_one_owner_can_be_ended_and_the_others_stay(store: Store) -> None:
    store.append_changes([change("A", "a1"), change("B", "b1")])
    [mine] = store.claim_changes(1, "engine:1", T0, 60)
    [theirs] = store.claim_changes(1, "replica:2", T0, 60)
    assert store.expire_leases(T0 + timedelta(seconds=1), owner="engine:1") == 1
    later = T0 + timedelta(seconds=2)
    assert [c.seq for c in store.claim_changes(10, "engine:3", later, 60)] == [mine.seq]  # theirs is still held
    assert theirs.seq != mine.seq


# ------------------------------------------------------------------------------------ care, versions, inspection


def test_an_occurrence_is_claimed_once(store: Store) -> None:
    assert store.claim_occurrence("birthday", "contact", "c1", "2026-03-01", T0)
    assert not store.claim_occurrence("birthday", "contact", "c1", "2026-03-01", T0 + timedelta(hours=1))
    assert store.claim_occurrence("birthday", "contact", "c1", "2027-03-01", T0)
    assert store.claim_occurrence("birthday", "contact", "c2", "2026-03-01", T0)


def test_config_versions_the_last_saved_is_current(store: Store) -> None:
    assert store.current_version() is None
    v1 = ConfigVersion(id="h1", applied_at=T0, documents={"Flow/a": {"kind": "Flow"}}, commit="c1", author="an",
                       message="first")  # fmt: skip
    v2 = ConfigVersion(id="h2", applied_at=T0 + timedelta(hours=1), documents={})
    store.save_version(v1)
    assert store.current_version() == v1
    store.save_version(v2)
    assert store.current_version() == v2
    store.save_version(v1)
    assert store.current_version() == v1


def test_listing_records_and_runs(store: Store) -> None:
    recs = [Record(object="deal", id=f"{i:02}", stage="new" if i % 2 else "won") for i in range(6)]
    gone = Record(object="deal", id="99", deleted=True)
    runs = [run(id=f"r{i}", seq=i, status="done" if i == 2 else "waiting") for i in range(4)]
    step = Step(records={r.key: r for r in [*recs, gone, Record(object="contact", id="c")]},
                runs={r.id: r for r in runs})  # fmt: skip
    store.commit_batch([Processed(step=step)], T0)
    assert [r.id for r in store.list_records("deal")] == ["00", "01", "02", "03", "04", "05"]
    assert [r.id for r in store.list_records("deal", stage="new")] == ["01", "03", "05"]
    assert [r.id for r in store.list_records("deal", limit=2, after="01")] == ["02", "03"]
    assert store.record("deal", "99") == gone
    assert [r.id for r in store.list_runs()] == ["r3", "r2", "r1", "r0"]
    assert [r.id for r in store.list_runs(limit=2, status="waiting")] == ["r3", "r1"]
    assert [r.id for r in store.list_runs(object="deal", record_id="7", status="done")] == ["r2"]
    assert store.list_runs(record_id="8") == []
    assert [r.id for r in store.active_runs("deal", "7")] == ["r0", "r1", "r3"]


def test_batch_reads_match_the_single_ones(store: Store) -> None:
    recs = [Record(object="deal", id="7"), Record(object="deal", id="8", stage="won"), Record(object="lead", id="7")]
    runs = [run(id="r2", seq=2), run(id="r1", seq=1), run(id="r3", seq=3, status="done"),
            replace(run(id="r4", seq=4), record_id="8")]  # fmt: skip
    store.commit_batch([Processed(step=Step(records={r.key: r for r in recs}, runs={r.id: r for r in runs}))], T0)
    keys = [("deal", "7"), ("deal", "8"), ("lead", "7"), ("deal", "9"), ("deal", "7")]
    assert store.records_of(keys) == {r.key: r for r in recs}
    active = store.active_runs_of(keys)
    assert active == {key: store.active_runs(*key) for key in keys}
    assert [r.id for r in active[("deal", "7")]] == ["r1", "r2"]
    assert active[("deal", "9")] == []
    assert store.records_of([]) == {} and store.active_runs_of([]) == {}


def test_open_records_owned_are_counted_per_user_without_deleted_final_or_other_objects(store: Store) -> None:
    def deal(id: str, owner: str, stage: str = "new", pipeline: str = "sales", deleted: bool = False) -> Record:
        return Record(object="deal", id=id, owner=owner, stage=stage, pipeline=pipeline, deleted=deleted, version=1)

    recs = [deal("1", "lan"), deal("2", "lan", stage="won"), deal("3", "lan", stage="won", pipeline="recare"),
            deal("4", "lan", stage="", pipeline=""), deal("5", "minh", stage="lost"), deal("6", "minh", deleted=True),
            deal("7", "tuan"), deal("8", ""), Record(object="contact", id="1", owner="minh")]  # fmt: skip
    store.commit_batch([Processed(step=Step(records={r.key: r for r in recs}))], T0)
    final = [("sales", "won"), ("sales", "lost")]  # won is final in sales only
    assert store.open_owned("deal", ["lan", "minh", "hoa"], final) == {"lan": 3, "minh": 0, "hoa": 0}
    assert store.open_owned("deal", ["tuan", "lan"], []) == {"tuan": 1, "lan": 4}
    assert store.open_owned("contact", ["minh"], final) == {"minh": 1}
    assert store.open_owned("deal", [], final) == {}


# ------------------------------------------------------------------------------------ concurrency


def _in_threads(n: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


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

    _in_threads(3, work)
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

    _in_threads(3, work)
    assert sorted(fired) == sorted(t.id for t in timers)
    assert len(sent) == len(set(sent)) == 300


def test_open_store_gives_a_memory_store_or_a_migrated_sql_store(db_url: str) -> None:
    store = open_store(db_url)
    try:
        assert isinstance(store, MemoryStore) == (db_url == "memory://")
        assert store.counts()["records"] == 0
    finally:
        store.close()


def test_held_rows_of_a_fixed_channel_are_released_and_the_others_stay_held(store: Store) -> None:
    effects = [replace(effect("e1"), channel="sms"), replace(effect("e2"), channel="email"),
               replace(effect("e3"), channel="sms")]
    store.commit_batch([Processed(step=Step(effects=effects))], T0)
    e1, e2, e3 = store.claim_outbox(T0, 10, "d1", 60)
    later = T0 + timedelta(hours=1)
    store.hold_outbox_many([(e1.id, later, "held: channel sms: SMS_URL is not set"),
                            (e2.id, later, "held: channel email: SMTP_HOST is not set"),
                            (e3.id, later, "held: quiet hours 22:00-07:00 (UTC) until …")], T0)  # fmt: skip
    assert store.release_held(["sms"], "held: channel ", T0) == 1  # not e2 (email), not e3 (another reason)
    assert [r.key for r in store.claim_outbox(T0, 10, "d1", 60)] == ["e1"]
    assert store.release_held([], "held: channel ", T0) == 0


def test_open_changes_are_a_records_pending_and_claimed_changes_in_order(store: Store) -> None:
    store.append_changes([change("7", "k1"), change("8", "k2"), change("7", "k3"), change("7", "k4")])
    [first] = store.claim_changes(1, "w1", T0, 30)
    store.commit_batch(done(first), T0)
    store.claim_changes(1, "w1", T0, 30)  # k2 (record 8)
    store.claim_changes(1, "w1", T0, 30)  # k3: claimed, not done
    assert [c.idempotency_key for c in store.open_changes("deal", "7")] == ["k3", "k4"]
    assert [c.status for c in store.open_changes("deal", "7")] == ["claimed", "pending"]
    assert store.open_changes("deal", "9") == []


def test_versions_in_use_are_those_of_active_runs_and_current_care_pins(store: Store) -> None:
    """What a reload keeps the engines of: a version an active run started on, or a care process
    pinned on a day not yet over; not that of a finished run or an old pin."""
    runs = {"r1": replace(run("r1"), config_version="v1"), "r2": replace(run("r2", status="done"), config_version="v2"),
            "r3": replace(run("r3", status="running"), config_version="v3")}  # fmt: skip
    store.commit_batch([Processed(step=Step(runs=runs))], T0)
    store.pin_care_day("birthday", "2026-02-27", "v4")
    store.pin_care_day("birthday", "2026-03-01", "v5")
    assert store.versions_in_use("2026-02-28") == {"v1", "v3", "v5"}


def test_queue_counts_give_the_outbox_lag_from_the_earliest_due_row(store: Store) -> None:
    """``flowctl_outbox_lag_seconds``: the earliest pending or retry row's due time; sent, dead and
    sending rows do not count."""
    assert store.queue_counts()["oldest_due_at"] is None
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2")]))], T0)
    assert store.queue_counts()["oldest_due_at"] == T0
    first, second = store.claim_outbox(T0, 10, "w1", 30)
    assert store.queue_counts()["oldest_due_at"] is None  # both in a sender's hands
    store.mark_failed(first.id, "busy", T0 + timedelta(minutes=5), T0)
    store.mark_sent(second.id, T0)
    assert store.queue_counts()["oldest_due_at"] == T0 + timedelta(minutes=5)
