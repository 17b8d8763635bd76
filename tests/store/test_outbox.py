"""The ``Outbox`` contract: claims of due rows, their outcomes, holds, the clock going back, sent counts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from flowctl.engine.state import Effect, Step
from flowctl.ports import Processed, Store
from tests.store.contract import T0, effect


def test_outbox_claim_send_fail_dead_and_retry(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2"), effect("e3")]))], T0)
    e1, e2, e3 = store.claim_outbox(T0, 10, "d1", 60)
    assert [(r.key, r.status, r.attempts) for r in (e1, e2, e3)] == [
        ("e1", "sending", 1),
        ("e2", "sending", 1),
        ("e3", "sending", 1),
    ]
    assert store.claim_outbox(T0, 10, "d2", 60) == []

    store.mark_sent(e1.id, T0)
    store.mark_failed(e2.id, "421 try later", T0 + timedelta(minutes=5), T0)
    store.mark_failed(e3.id, "550 no such user", None, T0)
    sent, retry, dead = (store.outbox_row(r.id) for r in (e1, e2, e3))
    assert sent is not None and (sent.status, sent.sent_at) == ("sent", T0)
    assert retry is not None and (retry.status, retry.last_error, retry.next_attempt_at) == (
        "retry",
        "421 try later",
        T0 + timedelta(minutes=5),
    )
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
    sms = Effect(
        key="s1",
        action="send_sms",
        run_id="r1",
        object="deal",
        record_id="7",
        channel="sms",
        params={"to": "0901234567", "text": "x"},
    )
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


def test_held_rows_of_a_fixed_channel_are_released_and_the_others_stay_held(store: Store) -> None:
    effects = [
        replace(effect("e1"), channel="sms"),
        replace(effect("e2"), channel="email"),
        replace(effect("e3"), channel="sms"),
    ]
    store.commit_batch([Processed(step=Step(effects=effects))], T0)
    e1, e2, e3 = store.claim_outbox(T0, 10, "d1", 60)
    later = T0 + timedelta(hours=1)
    store.hold_outbox_many(
        [
            (e1.id, later, "held: channel sms: SMS_URL is not set"),
            (e2.id, later, "held: channel email: SMTP_HOST is not set"),
            (e3.id, later, "held: quiet hours 22:00-07:00 (UTC) until …"),
        ],
        T0,
    )
    assert store.release_held(["sms"], "held: channel ", T0) == 1  # not e2 (email), not e3 (another reason)
    assert [r.key for r in store.claim_outbox(T0, 10, "d1", 60)] == ["e1"]
    assert store.release_held([], "held: channel ", T0) == 0


def test_sent_counts_per_channel_and_recipient_since_a_time(store: Store) -> None:
    """What a sending policy (at most n a day, per recipient) counts: only rows sent, by ``sent_at``."""
    effects = [
        effect("e1"),
        effect("e2", to="b@example.com"),
        effect("e3"),
        replace(effect("e4"), channel="sms"),
        effect("e5"),
    ]
    store.commit_batch([Processed(step=Step(effects=effects))], T0)
    e1, e2, e3, e4, e5 = store.claim_outbox(T0, 10, "d", 60)
    store.mark_sent_many([e1.id, e2.id, e4.id], T0)
    store.mark_sent(e3.id, T0 + timedelta(hours=1))
    store.mark_failed(e5.id, "refused", T0 + timedelta(minutes=5), T0)  # not sent: not counted
    assert store.sent_counts("smtp", T0, ["a@example.com"]) == (3, {"a@example.com": 2})
    later = T0 + timedelta(minutes=30)
    assert store.sent_counts("smtp", later, ["a@example.com", "b@example.com"]) == (1, {"a@example.com": 1})
    assert store.sent_counts("smtp", T0) == (3, {})
    assert store.sent_counts("sms", T0, ["b@example.com"]) == (1, {})


def test_an_operator_retries_dead_retry_or_held_rows_and_cancels_any_not_sent_nor_sending(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect(f"e{i}") for i in range(5)]))], T0)
    e0, e1, e2, e3, e4 = store.claim_outbox(T0, 10, "d1", 60)
    store.mark_failed(e0.id, "550 no such user", None, T0)  # dead
    store.mark_failed(e1.id, "421 later", T0 + timedelta(hours=1), T0)  # retry
    store.hold_outbox_many([(e2.id, T0 + timedelta(hours=8), "quiet hours")], T0)  # held
    store.mark_sent(e3.id, T0)  # sent; e4 stays sending
    later = T0 + timedelta(seconds=30)  # e4 is still in d1's hands
    assert [store.retry_outbox(r.id, later) for r in (e0, e1, e2, e3, e4)] == [True, True, True, False, False]
    retried = store.outbox_row(e2.id)
    assert retried is not None and (retried.status, retried.attempts, retried.next_attempt_at) == ("pending", 0, later)
    assert [store.cancel_outbox(r.id, later) for r in (e0, e3, e4)] == [True, False, False]
    assert store.cancel_outbox(e0.id, later) is False  # cancelled already
    assert store.retry_outbox(e0.id, later) is False  # a cancelled row stays cancelled
    assert store.cancel_outbox(e4.id + 100, later) is False
    cancelled = store.outbox_row(e0.id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert {r.key for r in store.claim_outbox(later, 10, "d2", 60)} == {"e1", "e2"}  # never the cancelled one
