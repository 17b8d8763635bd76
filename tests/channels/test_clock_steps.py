"""The wall clock stepped back (or forward) under the deliverer, with an injected clock.

An NTP correction or an operator's ``date -s`` can move the wall clock an hour back. Rows stored
before the step carry times of the old clock (due at creation, a backoff, a hold until a rate slot
frees), and the rate window remembers sends "in the future". None of that may stall delivery for
the size of the step; a forward step must not send anything twice. The daemon under libfaketime
is in tests/reliability/test_clock_step.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowctl.channels.base import Receipt, TemporaryFailure
from flowctl.engine.state import Effect, Step
from flowctl.ports import OutboxRow, Processed, Store
from flowctl.runtime.delivery import policies
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.spec.model import SendPolicy
from flowctl.store import open_store
from flowctl.testing import FrozenClock

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Gateway:
    """Accepts everything (after ``fail`` temporary failures) and notes the clock at each send."""

    concurrency = 1

    def __init__(self, clock: FrozenClock, fail: int = 0) -> None:
        self.clock = clock
        self.fail = fail
        self.sent: list[tuple[datetime, str]] = []

    def send(self, row: OutboxRow) -> Receipt:
        if self.fail:
            self.fail -= 1
            raise TemporaryFailure("HTTP 503 from the gateway")
        self.sent.append((self.clock.now(), row.key))
        return Receipt("ok")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_store("memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'flowctl.db'}")
    yield opened
    opened.close()


def queue(store: Store, count: int, at: datetime, prefix: str) -> None:
    effects = [
        Effect(
            key=f"{prefix}{i}",
            action="send_sms",
            run_id="r",
            object="deal",
            record_id=str(i),
            channel="sms",
            params={"to": f"09{i:08d}", "text": "Khuyen mai"},
        )
        for i in range(count)
    ]
    store.commit_batch([Processed(step=Step(effects=effects))], at)


def make(store: Store, clock: FrozenClock, gateway: Gateway, policy: SendPolicy | None = None) -> Deliverer:
    return Deliverer(
        store,
        {"sms": gateway},
        clock,
        owner="t",
        rng=random.Random(1),
        base_delay=2.0,
        policies={"sms": policy} if policy else None,
    )


def run_for(deliverer: Deliverer, clock: FrozenClock, start: datetime, seconds: float, step: float = 0.1) -> None:
    for n in range(int(seconds / step) + 1):
        clock.set(start + timedelta(seconds=round(n * step, 6)))
        deliverer.deliver_once()


# ------------------------------------------------------------------------------------ the rate window


def test_a_rate_window_with_sends_in_the_future_frees_within_one_period() -> None:
    window = policies.Window(policies.Rate(5, 1.0))
    for _ in range(5):
        assert window.take(T0) == 0
    assert window.take(T0) > 0  # the rate holds at T0
    back = T0 - HOUR
    wait = window.take(back)  # the clock went back an hour: the five sends count as "just now"
    assert 0 < wait <= 1.0
    assert window.free(back + timedelta(seconds=1)) == 5
    assert window.slots(back, 0, 5) == [back + timedelta(seconds=1)] * 5


# ------------------------------------------------------------------------------------ stored times


def test_pending_rows_stored_before_a_step_back_go_at_once(store: Store) -> None:
    clock = FrozenClock(T0 - HOUR)  # the rows were written at T0; the clock now says an hour earlier
    queue(store, 30, T0, "old")
    gateway = Gateway(clock)
    d = make(store, clock, gateway)
    while d.deliver_once():
        pass
    assert len(gateway.sent) == 30
    d.close()


def test_a_backoff_stored_before_a_step_back_is_not_an_hour_longer(store: Store) -> None:
    clock = FrozenClock(T0)
    queue(store, 1, T0, "r")
    gateway = Gateway(clock, fail=1)
    d = make(store, clock, gateway)
    d.deliver_once()
    [row] = store.list_outbox(limit=10)
    assert row.status == "retry" and row.next_attempt_at is not None
    waited = (row.next_attempt_at - T0).total_seconds()
    assert 0 < waited <= 4  # the first backoff: at most base_delay * 2
    back = T0 - HOUR + timedelta(seconds=0.5)
    run_for(d, clock, back, 10)
    assert [key for _, key in gateway.sent] == ["r0"]
    assert gateway.sent[0][0] <= back + timedelta(seconds=waited + 1)
    d.close()


def test_a_rate_channel_keeps_sending_after_a_step_back_and_a_step_forward(store: Store) -> None:
    clock = FrozenClock(T0)
    queue(store, 20, T0, "a")
    gateway = Gateway(clock)
    d = make(store, clock, gateway, SendPolicy(rate="5/s"))
    run_for(d, clock, T0, 1.0)  # five or ten go; the rest are held until their slot
    before = len(gateway.sent)
    assert 5 <= before < 20
    back = T0 - HOUR + timedelta(seconds=1.5)
    queue(store, 10, back, "b")  # written after the step
    run_for(d, clock, back, 8)
    keys = [key for _, key in gateway.sent]
    assert len(keys) == 30 and len(set(keys)) == 30  # everything, nothing twice
    assert max(at for at, _ in gateway.sent[before:]) <= back + timedelta(seconds=8)
    assert all(row.status == "sent" for row in store.list_outbox(limit=100))

    forward = back + 2 * HOUR  # and forward again, past every stored time
    queue(store, 10, forward, "c")
    run_for(d, clock, forward, 4)
    keys = [key for _, key in gateway.sent]
    assert len(keys) == 40 and len(set(keys)) == 40
    d.close()


def test_a_retry_stored_before_a_step_back_while_no_deliverer_ran_goes_at_once(store: Store) -> None:
    queue(store, 1, T0, "r")
    clock = FrozenClock(T0)
    first = make(store, clock, Gateway(clock, fail=1))
    first.deliver_once()
    first.close()
    [row] = store.list_outbox(limit=10)
    assert row.status == "retry"
    clock.set(T0 - 2 * HOUR)  # a restart after the clock went back: no round saw the step
    # (the longest backoff is an hour: a retry due later than that is due now)
    gateway = Gateway(clock)
    again = make(store, clock, gateway)
    again.deliver_once()
    assert [key for _, key in gateway.sent] == ["r0"]
    again.close()
