"""Fencing: work whose lease was lost is not written over the new owner's.

A worker frozen (SIGSTOP, a long GC pause, a VM migration) past its lease loses its rows to
another replica; when it wakes it must not commit the batch it computed from what it read
before. Every store refuses such a commit as a whole, and leaves the new owner's writes intact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flowctl.engine.state import Record, StageEntry, Step, Timer
from flowctl.ports import LeaseLost, NewChange, Processed, Store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=31)  # after a 30-second lease


def patch(record_id: str, key: str) -> NewChange:
    return NewChange(
        object="deal", record_id=record_id, op="patch", idempotency_key=key, fields={"note": key}, received_at=T0
    )


def note(record_id: str, value: str) -> Record:
    return Record(object="deal", id=record_id, fields={"note": value})


def timer(id: str) -> Timer:
    return Timer(id=id, run_id=f"run-{id}", due=T0, kind="delay", node="wait", object="deal", record_id=id)


def stale_step(record_id: str) -> Step:
    moved = StageEntry(object="deal", record_id=record_id, pipeline="p", stage="won", at=T0, key="c1")
    return Step(timers=[timer("x")], stage_entries=[moved])


def test_a_batch_whose_lease_was_taken_over_is_refused_and_the_new_owners_writes_stay(store: Store) -> None:
    store.append_changes([patch(str(i), f"v14-{i}") for i in range(3)])
    stale = store.claim_changes(10, "frozen", T0, 30)
    assert len(stale) == 3
    fresh = store.claim_changes(10, "awake", LATER, 30)  # the frozen worker's lease ran out
    assert [c.seq for c in fresh] == [c.seq for c in stale]
    store.commit_batch([Processed(change=c, record=note(c.record_id, "v14")) for c in fresh], LATER, owner="awake")
    store.append_changes([patch(str(i), f"v90-{i}") for i in range(3)])
    later = store.claim_changes(10, "awake", LATER, 30)
    store.commit_batch([Processed(change=c, record=note(c.record_id, "v90")) for c in later], LATER, owner="awake")

    with pytest.raises(LeaseLost) as lost:
        store.commit_batch(
            [Processed(change=c, record=note(c.record_id, "v14"), step=stale_step(c.record_id)) for c in stale],
            LATER + timedelta(seconds=1),
            owner="frozen",
        )
    assert (lost.value.kind, lost.value.lost, lost.value.total) == ("change", 3, 3)
    assert "frozen" in str(lost.value)
    assert [store.record("deal", str(i)).fields["note"] for i in range(3)] == ["v90"] * 3  # type: ignore[union-attr]
    assert store.timers_of("run-x") == []  # nothing of the refused batch was written
    assert store.stage_entries("deal", "0") == []
    assert {store.change(c.seq).status for c in stale} == {"done"}  # type: ignore[union-attr]


def test_one_lost_change_refuses_the_whole_batch(store: Store) -> None:
    store.append_changes([patch("a", "a1"), patch("b", "b1")])
    a, b = store.claim_changes(10, "frozen", T0, 30)
    store.extend_leases("frozen", LATER + timedelta(seconds=30), change_seqs=[a.seq])  # only a's lease was kept
    [taken] = store.claim_changes(10, "awake", LATER, 30)
    assert taken.seq == b.seq
    with pytest.raises(LeaseLost) as lost:
        store.commit_batch(
            [Processed(change=a, record=note("a", "old")), Processed(change=b, record=note("b", "old"))],
            LATER,
            owner="frozen",
        )
    assert (lost.value.lost, lost.value.total, lost.value.holders) == (1, 2, {"awake": 1})
    assert store.record("deal", "a") is None and store.record("deal", "b") is None
    assert store.change(a.seq).status == "claimed"  # type: ignore[union-attr]  # still a's: it can be done again


def test_a_change_given_back_and_claimed_again_by_the_same_owner_is_a_new_lease(store: Store) -> None:
    store.append_changes([patch("a", "a1")])
    [first] = store.claim_changes(10, "w1", T0, 30)
    [second] = store.claim_changes(10, "w1", LATER, 30)  # the same owner took it again (a new lease)
    with pytest.raises(LeaseLost):
        store.commit_batch([Processed(change=first, record=note("a", "old"))], LATER, owner="w1")
    store.commit_batch([Processed(change=second, record=note("a", "new"))], LATER, owner="w1")
    assert store.record("deal", "a").fields["note"] == "new"  # type: ignore[union-attr]


def test_a_commit_that_holds_its_leases_goes_through_with_an_owner(store: Store) -> None:
    store.append_changes([patch("a", "a1")])
    [held] = store.claim_changes(10, "w1", T0, 30)
    store.commit_batch([Processed(change=held, record=note("a", "v1"))], LATER, owner="w1")  # ran out, not taken
    assert store.record("deal", "a").fields["note"] == "v1"  # type: ignore[union-attr]
    assert store.change(held.seq).status == "done"  # type: ignore[union-attr]


def test_a_timer_fired_by_the_new_owner_is_not_fired_again_by_the_old_one(store: Store) -> None:
    store.commit_batch([Processed(step=Step(timers=[timer("t1"), timer("t2")]))], T0)
    stale = store.claim_due_timers(T0, 10, "frozen", 30)
    fresh = store.claim_due_timers(LATER, 10, "awake", 30)
    assert [t.id for t in fresh] == ["t1", "t2"]
    store.commit_batch(
        [Processed(timer=t, record=note(t.record_id, "fired-by-awake")) for t in fresh], LATER, owner="awake"
    )
    with pytest.raises(LeaseLost) as lost:
        store.commit_batch(
            [Processed(timer=t, record=note(t.record_id, "stale"), step=Step(timers=[timer("t9")])) for t in stale],
            LATER,
            owner="frozen",
        )
    assert (lost.value.kind, lost.value.lost, lost.value.total) == ("timer", 2, 2)
    assert [store.record("deal", i).fields["note"] for i in ("t1", "t2")] == ["fired-by-awake"] * 2  # type: ignore[union-attr]
    assert store.timers_of("run-t9") == []


def test_a_timer_still_held_by_the_new_owner_is_not_committed_by_the_old_one(store: Store) -> None:
    store.commit_batch([Processed(step=Step(timers=[timer("t1")]))], T0)
    [stale] = store.claim_due_timers(T0, 10, "frozen", 30)
    [fresh] = store.claim_due_timers(LATER, 10, "awake", 30)
    with pytest.raises(LeaseLost) as lost:
        store.commit_batch([Processed(timer=stale)], LATER, owner="frozen")
    assert lost.value.holders == {"awake": 1}
    assert [t.id for t in store.timers_of(fresh.run_id)] == ["t1"]  # the new owner fires it


def _outbox(store: Store, *keys: str) -> None:
    from flowctl.engine.state import Effect

    effects = [
        Effect(
            key=k,
            action="send_email",
            run_id="r1",
            object="deal",
            record_id="7",
            channel="smtp",
            params={"to": "a@example.com"},
        )
        for k in keys
    ]
    store.commit_batch([Processed(step=Step(effects=effects))], T0)


def test_a_sender_whose_claim_was_taken_over_does_not_mark_the_new_owners_rows(store: Store) -> None:
    _outbox(store, "e1", "e2", "e3")
    stale = store.claim_outbox(T0, 10, "frozen", 30)
    fresh = store.claim_outbox(LATER, 10, "awake", 30)
    assert [r.id for r in fresh] == [r.id for r in stale]
    e1, e2, e3 = fresh
    store.mark_sent_many([e1.id], LATER, owner="awake")
    store.mark_failed(e2.id, "421 later", LATER + timedelta(minutes=5), LATER, owner="awake")
    # e3: the new owner is still sending it
    s1, s2, s3 = stale
    assert store.mark_failed(s1.id, "550 no such user", None, LATER, owner="frozen") is False
    assert store.mark_sent_many([s2.id, s3.id], LATER, owner="frozen") == [s2.id, s3.id]
    assert store.hold_outbox_many([(s3.id, LATER + timedelta(hours=1), "quiet hours")], LATER, owner="frozen") == [
        s3.id
    ]
    rows = {r.id: r for r in store.list_outbox()}
    assert (rows[e1.id].status, rows[e2.id].status, rows[e3.id].status) == ("sent", "retry", "sending")
    assert rows[e2.id].last_error == "421 later"
    assert store.mark_sent_many([e3.id], LATER, owner="awake") == []
    assert store.outbox_row(e3.id).status == "sent"  # type: ignore[union-attr]


def test_a_sender_whose_claim_was_taken_over_does_not_release_the_new_owners_rows(store: Store) -> None:
    _outbox(store, "e1")
    [stale] = store.claim_outbox(T0, 10, "frozen", 30)
    [fresh] = store.claim_outbox(LATER, 10, "awake", 30)  # "awake" is sending it now
    store.release_outbox([stale.id], LATER, owner="frozen")  # "frozen" wakes: it never tried the row
    row = store.outbox_row(fresh.id)
    assert row is not None and (row.status, row.attempts) == ("sending", 2)  # still the new owner's
    assert store.claim_outbox(LATER, 10, "third", 30) == []  # so nobody else sends it a second time


def test_a_sender_that_still_holds_its_rows_marks_them(store: Store) -> None:
    _outbox(store, "e1", "e2", "e3")
    e1, e2, e3 = store.claim_outbox(T0, 10, "d1", 30)
    assert store.mark_sent_many([e1.id], LATER, owner="d1") == []  # ran out, not taken: still ours
    assert store.mark_failed(e2.id, "550", None, LATER, owner="d1") is True
    assert store.hold_outbox_many([(e3.id, LATER + timedelta(hours=1), "quiet hours")], LATER, owner="d1") == []
    assert [store.outbox_row(r.id).status for r in (e1, e2, e3)] == ["sent", "dead", "held"]  # type: ignore[union-attr]


def test_a_change_given_up_on_is_not_committed_by_its_last_worker_waking_up(store: Store) -> None:
    store.append_changes([patch("a", "a1")])
    at = T0
    for _ in range(3):  # every worker that took it hung
        [held] = store.claim_changes(10, "hung", at, 30)
        at += timedelta(seconds=31)
    [failed] = store.fail_exhausted_changes(at, 3)
    assert failed.seq == held.seq
    with pytest.raises(LeaseLost):
        store.commit_batch([Processed(change=held, record=note("a", "late"))], at, owner="hung")
    assert store.record("deal", "a") is None
    assert store.change(held.seq).status == "failed"  # type: ignore[union-attr]
