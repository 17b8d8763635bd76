"""Sending policies: the pure rules, and the deliverer holding and releasing rows with a fake clock."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowctl.channels.base import Receipt
from flowctl.engine.state import Effect, Step
from flowctl.ports import OutboxRow, Processed, Store
from flowctl.runtime.api.metrics import Metrics
from flowctl.runtime.delivery import policies
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.spec.model import QuietHours, SendPolicy
from flowctl.store import open_store
from flowctl.testing import FrozenClock

HCM = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7, no DST
T0 = datetime(2026, 3, 1, 23, 30, tzinfo=HCM)  # 23:30 local: inside 22:00-07:00


class Recorder:
    """A sender that accepts everything and remembers what it sent."""

    concurrency = 1

    def __init__(self) -> None:
        self.sent: list[OutboxRow] = []

    def send(self, row: OutboxRow) -> Receipt:
        self.sent.append(row)
        return Receipt(detail="ok")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_store("memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'flowctl.db'}")
    yield opened
    opened.close()


def add(store: Store, *tos: str, at: datetime = T0, tz: str = "", prefix: str = "m") -> None:
    effects = [
        Effect(
            key=f"{prefix}{i}",
            action="send_sms",
            run_id="r",
            object="contact",
            record_id=str(i),
            channel="sms",
            params={"to": to, "text": "Khuyen mai", **({"timezone": tz} if tz else {})},
        )
        for i, to in enumerate(tos)
    ]
    store.commit_batch([Processed(step=Step(effects=effects))], at)


def make(
    store: Store, clock: FrozenClock, policy: SendPolicy, metrics: Metrics | None = None
) -> tuple[Deliverer, Recorder]:
    sender = Recorder()
    return Deliverer(
        store,
        {"sms": sender},
        clock,
        owner="t",
        rng=random.Random(1),
        policies={"sms": policy},
        timezone="Asia/Ho_Chi_Minh",
        metrics=metrics,
    ), sender


def statuses(store: Store) -> list[str]:
    return [r.status for r in sorted(store.list_outbox(limit=100), key=lambda r: r.id)]


# ------------------------------------------------------------------------------------ pure rules


def test_parse_rate() -> None:
    assert policies.parse_rate("20/s") == policies.Rate(20, 1.0)
    assert policies.parse_rate("1/d") == policies.Rate(1, 86400.0)
    assert policies.parse_rate("100/5m") == policies.Rate(100, 300.0)
    assert policies.parse_rate("") is None
    with pytest.raises(policies.BadRate, match="'often' is not a rate"):
        policies.parse_rate("often")


def test_quiet_window_wraps_midnight() -> None:
    quiet = QuietHours(start="22:00", end="07:00")
    assert policies.quiet_until(quiet, T0, HCM) == datetime(2026, 3, 2, 7, 0, tzinfo=HCM)
    three = datetime(2026, 3, 2, 3, 0, tzinfo=HCM)
    assert policies.quiet_until(quiet, three, HCM) == datetime(2026, 3, 2, 7, tzinfo=HCM)
    assert policies.quiet_until(quiet, datetime(2026, 3, 2, 7, 0, tzinfo=HCM), HCM) is None
    assert policies.quiet_until(quiet, datetime(2026, 3, 2, 21, 59, tzinfo=HCM), HCM) is None
    day = QuietHours(start="12:00", end="13:00")
    lunch = datetime(2026, 3, 2, 12, 30, tzinfo=HCM)
    assert policies.quiet_until(day, lunch, HCM) == datetime(2026, 3, 2, 13, tzinfo=HCM)


def test_the_rate_window_never_holds_more_than_count_sends() -> None:
    window = policies.Window(policies.Rate(2, 1.0))
    assert [window.take(T0) for _ in range(3)] == [0.0, 0.0, 1.0]  # the third waits for the first to leave
    assert window.take(T0 + timedelta(seconds=0.5)) == 0.5
    assert window.free(T0 + timedelta(seconds=1)) == 2  # a send leaves the window after exactly the period
    assert window.slots(T0 + timedelta(seconds=1), going=2, waiting=3) == [
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=3),
    ]


def test_recipient_zone_prefers_the_row_then_the_policy_then_config() -> None:
    policy = SendPolicy(quiet_hours=QuietHours(start="22:00", end="07:00", timezone="Europe/Paris"))
    assert policies.recipient_zone({"timezone": "America/New_York"}, policy, "UTC").key == "America/New_York"
    assert policies.recipient_zone({}, policy, "UTC").key == "Europe/Paris"
    bad = policies.recipient_zone({"timezone": "Mars/Base"}, SendPolicy(), "Asia/Ho_Chi_Minh")
    assert bad.key == "Asia/Ho_Chi_Minh"


# ------------------------------------------------------------------------------------ the deliverer


def test_quiet_hours_hold_until_seven_local_then_send(store: Store) -> None:
    clock = FrozenClock(T0)
    metrics = Metrics()
    d, sender = make(store, clock, SendPolicy(quiet_hours=QuietHours(start="22:00", end="07:00")), metrics)
    add(store, "0901", "0902")
    assert d.deliver_once() == 2
    held = store.list_outbox(status="held")
    assert len(held) == 2 and not sender.sent
    assert all(r.next_attempt_at == datetime(2026, 3, 2, 0, 0, tzinfo=UTC) for r in held)  # 07:00 +07:00
    assert all(r.attempts == 0 and "quiet hours 22:00-07:00" in r.last_error for r in held)

    clock.set(datetime(2026, 3, 2, 6, 59, tzinfo=HCM))
    assert d.deliver_once() == 0  # still held: nothing claimed, nothing dropped
    clock.set(datetime(2026, 3, 2, 7, 0, tzinfo=HCM))
    assert d.deliver_once() == 2
    assert statuses(store) == ["sent", "sent"] and len(sender.sent) == 2
    outcomes = metrics.counter("flowctl_deliveries_total", "", ("channel", "result"))
    assert outcomes.value(channel="sms", result="held") == 2


def test_quiet_hours_follow_the_recipients_time_zone(store: Store) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))  # 19:00 in Ho Chi Minh, 07:00 in New York
    d, sender = make(store, clock, SendPolicy(quiet_hours=QuietHours(start="22:00", end="08:00")))
    add(store, "vn", "ny", at=clock.now())
    add(store, "ny2", at=clock.now(), tz="America/New_York", prefix="x")
    d.deliver_once()
    assert sorted(r.recipient for r in sender.sent) == ["ny", "vn"]
    [held] = store.list_outbox(status="held")
    assert held.recipient == "ny2" and held.next_attempt_at == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


def test_per_recipient_cap_holds_the_second_message_until_the_next_day(store: Store) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 9, 0, tzinfo=HCM))
    d, sender = make(store, clock, SendPolicy(per_recipient="1/d"))
    add(store, "0901", "0901", "0902", at=clock.now())  # two to one number in one round
    d.deliver_once()
    assert sorted(r.recipient for r in sender.sent) == ["0901", "0902"]
    [held] = store.list_outbox(status="held")
    assert held.recipient == "0901" and held.next_attempt_at == datetime(2026, 3, 2, 0, 0, tzinfo=HCM)
    assert "per-recipient cap 1/d" in held.last_error

    add(store, "0901", at=clock.now(), prefix="later")  # a later round the same day: counted from the store
    clock.set(datetime(2026, 3, 1, 15, 0, tzinfo=HCM))
    d.deliver_once()
    assert len(store.list_outbox(status="held")) == 2 and len(sender.sent) == 2

    clock.set(datetime(2026, 3, 2, 0, 0, tzinfo=HCM))  # the next day: one of the two goes
    d.deliver_once()
    assert len(sender.sent) == 3 and len(store.list_outbox(status="held")) == 1
    clock.set(datetime(2026, 3, 3, 0, 0, tzinfo=HCM))
    d.deliver_once()
    assert len(sender.sent) == 4 and statuses(store).count("sent") == 4


def test_daily_budget_holds_the_rest_until_tomorrow(store: Store) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 9, 0, tzinfo=HCM))
    d, sender = make(store, clock, SendPolicy(daily_budget=3))
    add(store, *(f"09{i}" for i in range(5)), at=clock.now())
    d.deliver_once()
    assert len(sender.sent) == 3
    held = store.list_outbox(status="held")
    assert len(held) == 2 and all(r.next_attempt_at == datetime(2026, 3, 2, tzinfo=HCM) for r in held)
    assert all("daily budget of 3" in r.last_error for r in held)
    clock.set(datetime(2026, 3, 2, 0, 0, 1, tzinfo=HCM))
    d.deliver_once()
    assert len(sender.sent) == 5


def test_rate_holds_messages_over_the_rate_for_their_slot(store: Store) -> None:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    clock = FrozenClock(start)
    d, sender = make(store, clock, SendPolicy(rate="2/s"))
    add(store, *(f"09{i}" for i in range(5)), at=start)
    d.deliver_once()
    assert len(sender.sent) == 2
    held = sorted(store.list_outbox(status="held"), key=lambda r: r.id)
    assert [r.next_attempt_at for r in held] == [start + timedelta(seconds=s) for s in (1, 1, 2)]
    clock.set(start + timedelta(seconds=0.9))
    d.deliver_once()
    assert len(sender.sent) == 2  # nothing before its slot
    clock.set(start + timedelta(seconds=1))
    d.deliver_once()
    assert len(sender.sent) == 4
    clock.set(start + timedelta(seconds=2))
    d.deliver_once()
    assert len(sender.sent) == 5 and not store.list_outbox(status="held")


def test_a_channel_without_policy_is_not_slowed(store: Store) -> None:
    clock = FrozenClock(T0)
    d, sender = make(store, clock, SendPolicy())
    add(store, "a", "a", "a")
    d.deliver_once()
    assert len(sender.sent) == 3


def test_held_rows_are_listed_by_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from flowctl.cli.main import cli

    url = f"sqlite:///{tmp_path / 'flowctl.db'}"
    store = open_store(url)
    d, _ = make(store, FrozenClock(T0), SendPolicy(quiet_hours=QuietHours(start="22:00", end="07:00")))
    add(store, "0901")
    d.deliver_once()
    store.close()
    result = CliRunner().invoke(cli, ["outbox", "list", "--status", "held", "--db", url])
    assert result.exit_code == 0, result.output
    assert "held" in result.output and "0901" in result.output
