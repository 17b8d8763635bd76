"""The ``Leases`` contract: the heartbeat extends what an owner holds, a dead holder's leases end,
exhausted work fails."""

from __future__ import annotations

from datetime import timedelta

from flowctl.engine.state import Step
from flowctl.ports import Processed, Store
from tests.store.contract import T0, change, effect, run, timer


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


def test_the_heartbeat_extends_only_the_leases_its_owner_still_holds(store: Store) -> None:
    [held] = store.append_changes([change("A", "a1")])
    store.commit_batch([Processed(step=Step(timers=[timer("t1", T0)], effects=[effect("e1")]))], T0)
    store.claim_changes(1, "a", T0, 30)
    store.claim_due_timers(T0, 10, "a", 30)
    [row] = store.claim_outbox(T0, 10, "a", 30)
    until = T0 + timedelta(seconds=100)
    assert store.extend_leases("a", until, change_seqs=[held.seq], timer_ids=["t1"], outbox_ids=[row.id]) == 3
    assert store.extend_leases("b", until, change_seqs=[held.seq], timer_ids=["t1"], outbox_ids=[row.id]) == 0
    assert store.extend_leases("a", until) == 0
    later = T0 + timedelta(seconds=60)  # past the claim's lease, inside the extended one
    assert store.claim_changes(10, "b", later, 30) == []
    assert store.claim_due_timers(later, 10, "b", 30) == []
    assert store.claim_outbox(later, 10, "b", 30) == []
    assert [c.seq for c in store.claim_changes(10, "b", until, 30)] == [held.seq]  # and no further


def test_a_change_whose_every_claimer_died_is_failed_saying_why(store: Store) -> None:
    """The reaper logs what it returns: the change as it now stands, failed, with its error."""
    dying, fresh = store.append_changes([change("A", "a1"), change("B", "b1")])
    store.claim_changes(10, "w1", T0, 10)
    store.claim_changes(1, "w2", T0 + timedelta(seconds=11), 10)  # a1 again: its second attempt
    assert store.fail_exhausted_changes(T0 + timedelta(seconds=15), 2) == []  # w2's lease still runs
    [failed] = store.fail_exhausted_changes(T0 + timedelta(seconds=22), 2)
    assert (failed.seq, failed.status, failed.attempts) == (dying.seq, "failed", 2)
    assert failed.error.startswith("gave up after 2 attempts")
    stored = store.change(dying.seq)
    assert stored is not None and (stored.status, stored.error) == ("failed", failed.error)
    assert [c.seq for c in store.claim_changes(10, "w3", T0 + timedelta(seconds=23), 10)] == [fresh.seq]
    assert store.fail_exhausted_changes(T0 + timedelta(seconds=30), 2) == []  # b1's second lease still runs


def test_a_timer_whose_every_claimer_died_is_removed_and_its_run_failed(store: Store) -> None:
    step = Step(runs={"r1": run("r1"), "r2": run("r2", seq=2)}, timers=[timer("t1", T0), timer("t2", T0, run_id="r2")])
    store.commit_batch([Processed(step=step)], T0)
    store.claim_due_timers(T0, 1, "w1", 10)  # t1
    store.claim_due_timers(T0 + timedelta(seconds=11), 10, "w2", 10)  # t1 again, t2 once
    [given_up] = store.fail_exhausted_timers(T0 + timedelta(seconds=22), 2)
    assert given_up.id == "t1"
    assert store.timers_of("r1") == []
    failed = store.run("r1")
    assert failed is not None and failed.status == "failed"
    assert [t.id for t in store.timers_of("r2")] == ["t2"]
    assert store.fail_exhausted_timers(T0 + timedelta(seconds=22), 2) == []
