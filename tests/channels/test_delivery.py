"""The delivery loop over a real store (memory and SQLite) and real servers, with a fake clock."""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from flowctl.channels import LogSender
from flowctl.channels.base import Receipt, TemporaryFailure
from flowctl.channels.http import HttpSender
from flowctl.channels.smtp import SmtpSender, message_id
from flowctl.engine.state import Effect, Step
from flowctl.ports import OutboxRow, Processed, Store
from flowctl.runtime.delivery.deliverer import LOCAL_BATCH, Deliverer
from flowctl.runtime.delivery.pacing import NUDGE_GAP
from flowctl.spec.model import Channel
from flowctl.store import open_store
from flowctl.testing import FrozenClock

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SECRET = "tok-9f8e7d6c5b4a"

MakeChannel = Callable[..., Channel]
HttpSink: TypeAlias = Any  # conftest's fixtures: tests cannot import conftest.py
SmtpServer: TypeAlias = Any


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_store("memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'flowctl.db'}")
    yield opened
    opened.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


def add(store: Store, *effects: Effect) -> list[int]:
    store.commit_batch([Processed(step=Step(effects=list(effects)))], T0)
    keys = {e.key for e in effects}
    return sorted(r.id for r in store.list_outbox(limit=1000) if r.key in keys)


def sms(key: str = "run-1:sms:0", to: str = "+84901234567", channel: str = "sms") -> Effect:
    return Effect(
        key=key,
        action="send_sms",
        run_id="run-1",
        object="contact",
        record_id="42",
        channel=channel,
        params={"to": to, "text": "Chuc mung sinh nhat Lan!", "encoding": "gsm7", "segments": 1},
    )


def row_of(store: Store, row_id: int) -> OutboxRow:
    found = store.outbox_row(row_id)
    assert found is not None
    return found


@pytest.fixture
def sms_channel(http_sink: HttpSink, make_channel: MakeChannel) -> Iterator[Callable[..., HttpSender]]:
    senders: list[HttpSender] = []

    def make(env: dict[str, str] | None = None, **values: Any) -> HttpSender:
        ch = make_channel(
            "sms",
            type="http",
            url="${SMS_URL}/sms",
            headers={"Authorization": "Bearer ${SMS_TOKEN}"},
            body={"to": "{{ to }}", "text": "{{ text }}"},
            **values,
        )
        sender = HttpSender(ch, {"SMS_URL": http_sink.url, "SMS_TOKEN": SECRET} if env is None else env)
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        sender.close()


def deliverer(store: Store, senders: dict[str, Any], clock: FrozenClock, **options: Any) -> Deliverer:
    return Deliverer(store, senders, clock, owner="test", rng=random.Random(7), **options)


def test_503_twice_then_sent_with_one_idempotency_key(
    store: Store, clock: FrozenClock, http_sink: HttpSink, sms_channel: Callable[..., HttpSender]
) -> None:
    [row_id] = add(store, sms())
    http_sink.answer(503, times=2, body=f"gateway busy ({SECRET})")
    d = deliverer(store, {"sms": sms_channel()}, clock)

    assert d.deliver_once() == 1
    first = row_of(store, row_id)
    assert (first.status, first.attempts) == ("retry", 1)
    assert first.next_attempt_at is not None and first.next_attempt_at > T0
    assert "HTTP 503" in first.last_error and SECRET not in first.last_error

    assert d.deliver_once() == 0  # not due yet: no sleeping, nothing claimed
    clock.set(first.next_attempt_at)
    assert d.deliver_once() == 1
    second = row_of(store, row_id)
    assert (second.status, second.attempts) == ("retry", 2)
    assert second.next_attempt_at is not None and second.next_attempt_at > clock.now()

    clock.set(second.next_attempt_at + timedelta(seconds=1))
    assert d.deliver_once() == 1
    done = row_of(store, row_id)
    assert done.status == "sent" and done.sent_at == clock.now()
    assert [h.headers["Idempotency-Key"] for h in http_sink.hits] == ["run-1:sms:0"] * 3
    assert http_sink.hits[-1].json() == {"to": "+84901234567", "text": "Chuc mung sinh nhat Lan!"}
    d.close()


def test_400_is_dead_at_once(
    store: Store, clock: FrozenClock, http_sink: HttpSink, sms_channel: Callable[..., HttpSender]
) -> None:
    [row_id] = add(store, sms())
    http_sink.answer(400, body='{"error": "bad number"}')
    deliverer(store, {"sms": sms_channel()}, clock).deliver_once()
    dead = row_of(store, row_id)
    assert dead.status == "dead" and dead.next_attempt_at is None
    assert "HTTP 400" in dead.last_error and "bad number" in dead.last_error
    assert len(http_sink.hits) == 1


def test_max_attempts_then_dead(
    store: Store, clock: FrozenClock, http_sink: HttpSink, sms_channel: Callable[..., HttpSender]
) -> None:
    [row_id] = add(store, sms())
    http_sink.answer(503, times=10)
    d = deliverer(store, {"sms": sms_channel(max_attempts=3)}, clock)
    for _ in range(3):
        assert d.deliver_once() == 1
        clock.advance(3600)
    dead = row_of(store, row_id)
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert dead.last_error.startswith("gave up after 3 attempts: POST http://127.0.0.1:")
    assert d.deliver_once() == 0
    assert len(http_sink.hits) == 3

    assert store.retry_outbox(row_id, clock.now())  # an operator retries it: it goes out again
    http_sink.script.clear()
    assert d.deliver_once() == 1
    assert row_of(store, row_id).status == "sent"


def test_missing_env_is_dead_naming_the_variable_and_no_secret_is_stored(
    store: Store, clock: FrozenClock, http_sink: HttpSink, sms_channel: Callable[..., HttpSender]
) -> None:
    missing, echoed = add(store, sms("k-missing", channel="sms"), sms("k-echo", channel="sms2"))
    http_sink.answer(500, body=f"internal error, Authorization: Bearer {SECRET}")
    senders = {"sms": sms_channel({"SMS_URL": http_sink.url}), "sms2": sms_channel()}
    deliverer(store, senders, clock).deliver_once()
    dead = row_of(store, missing)
    assert dead.status == "dead"
    assert dead.last_error == "environment variable SMS_TOKEN is not set"
    assert row_of(store, echoed).status == "retry"
    assert "***" in row_of(store, echoed).last_error
    for stored in store.list_outbox(limit=100):
        assert SECRET not in stored.last_error


def test_unknown_channel_is_dead(store: Store, clock: FrozenClock) -> None:
    [row_id] = add(store, sms(channel="pager"))
    deliverer(store, {}, clock).deliver_once()
    assert (row_of(store, row_id).status, row_of(store, row_id).last_error) == ("dead", "no channel named pager")


def test_email_and_log_through_the_loop(
    store: Store, clock: FrozenClock, smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    mail = Effect(
        key="run-3:mail:0",
        action="send_email",
        run_id="run-3",
        object="contact",
        record_id="42",
        channel="email",
        params={"to": "lan@example.com", "subject": "Chúc mừng sinh nhật", "text": "x"},
    )
    note = Effect(
        key="run-3:task:0",
        action="create_task",
        run_id="run-3",
        object="contact",
        record_id="42",
        channel="log",
        params={"title": "Gọi chúc mừng Lan", "assignee": "minh"},
    )
    mail_id, note_id = add(store, mail, note)
    ch = make_channel(
        "email", type="smtp", host=smtp_server.host, port=smtp_server.port, security="none", sender="crm@example.com"
    )
    smtp, log = SmtpSender(ch, {}), LogSender(io.StringIO())
    try:
        assert deliverer(store, {"email": smtp, "log": log}, clock).deliver_once() == 2
    finally:
        smtp.close()
    assert row_of(store, mail_id).status == row_of(store, note_id).status == "sent"
    [received] = smtp_server.handler.messages
    assert received.message["Message-ID"] == message_id("run-3:mail:0", "example.com")
    assert [r.key for r in log.sent] == ["run-3:task:0"]
    assert "create_task via log contact/42 → minh: Gọi chúc mừng Lan" in log.stream.getvalue()  # type: ignore[union-attr]


class Gate:
    """A sender that holds its message until ``release`` is set (a slow SMTP server)."""

    max_attempts = 8

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def send(self, row: OutboxRow) -> Receipt:
        self.entered.set()
        if not self.release.wait(10):
            raise TemporaryFailure("never released")
        return Receipt("ok")


@pytest.mark.parametrize("in_flight", [1, 2])
def test_a_slow_channel_does_not_hold_up_the_others(store: Store, clock: FrozenClock, in_flight: int) -> None:
    slow_id, fast_id, other_id = add(
        store, sms("k-slow", channel="slow"), sms("k-fast", channel="log"), sms("k-other", channel="other")
    )
    gate, log, other = Gate(), LogSender(io.StringIO()), Recorder()
    d = deliverer(store, {"slow": gate, "log": log, "other": other}, clock, in_flight=in_flight)
    round_done = threading.Thread(target=d.deliver_once)
    round_done.start()
    try:
        assert gate.entered.wait(5)
        deadline = time.monotonic() + 5
        while not (log.sent and other.keys) and time.monotonic() < deadline:
            time.sleep(0.01)
        # sent while the slow one is still in flight: each channel has its own lane
        assert [r.key for r in log.sent] == ["k-fast"] and other.keys == ["k-other"]
    finally:
        gate.release.set()
        round_done.join(10)
    assert row_of(store, slow_id).status == row_of(store, fast_id).status == row_of(store, other_id).status == "sent"
    d.close()


def test_the_loop_sends_a_channel_while_another_hangs(store: Store, http_sink: HttpSink) -> None:
    """The loop does not wait for a hung channel's round before it claims another's new rows."""
    from flowctl.runtime.daemon.clock import SystemClock

    [slow_id] = add(store, sms("k-slow", channel="slow"))
    gate, other = Gate(), Recorder()
    d = Deliverer(store, {"slow": gate, "other": other}, SystemClock(), owner="loop", rng=random.Random(1))
    stop = threading.Event()
    loop = threading.Thread(target=d.run, args=(stop,), kwargs={"poll_interval": 0.02})
    loop.start()
    try:
        assert gate.entered.wait(5)
        later = [sms(f"k-{i}", channel="other") for i in range(25)]  # written while "slow" hangs
        store.commit_batch([Processed(step=Step(effects=later))], datetime.now(UTC))
        deadline = time.monotonic() + 10
        while len(other.keys) < 25 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(other.keys) == 25 and row_of(store, slow_id).status == "sending"
    finally:
        gate.release.set()
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
    assert row_of(store, slow_id).status == "sent"


class Recorder:
    """Records the order of its rows; optionally moves the clock on while sending."""

    def __init__(self, clock: FrozenClock | None = None, seconds: float = 0, concurrency: int = 1) -> None:
        self.keys: list[str] = []
        self.clock = clock
        self.seconds = seconds
        self.concurrency = concurrency
        self.lock = threading.Lock()

    def send(self, row: OutboxRow) -> Receipt:
        with self.lock:
            self.keys.append(row.key)
        if self.clock is not None:
            self.clock.advance(self.seconds)
        return Receipt("ok")


def test_one_recipient_keeps_its_order_across_lanes(store: Store, clock: FrozenClock) -> None:
    effects = [sms(f"k-{i:02d}", to=f"+8490000000{i % 3}") for i in range(30)]
    add(store, *effects)
    recorder = Recorder(concurrency=4)
    assert deliverer(store, {"sms": recorder}, clock, in_flight=4).deliver_once() == 30
    assert sorted(recorder.keys) == sorted(e.key for e in effects)
    for phone in range(3):
        mine = [k for k in recorder.keys if int(k[2:]) % 3 == phone]
        assert mine == sorted(mine)


class Witness:
    """A sender that, at every send, counts the rows it was handed that the store does not yet
    show as sent: the messages a crash at that moment would send again."""

    def __init__(self, store: Store, concurrency: int = 1) -> None:
        self.store = store
        self.concurrency = concurrency
        self.handed: list[int] = []
        self.most_unrecorded = 0
        self.lock = threading.Lock()

    def send(self, row: OutboxRow) -> Receipt:
        with self.lock:
            self.handed.append(row.id)
            unrecorded = [i for i in self.handed if row_of(self.store, i).status != "sent"]
            self.most_unrecorded = max(self.most_unrecorded, len(unrecorded))
        time.sleep(0.002)  # let the other lanes run into this one
        return Receipt("ok")


@pytest.mark.parametrize("in_flight", [1, 3])
def test_a_crash_could_resend_at_most_sends_in_flight_messages(
    store: Store, clock: FrozenClock, in_flight: int
) -> None:
    add(
        store,
        *[sms(f"k-{i:02d}", to=f"+849000000{i:02d}") for i in range(20)],
        *[sms(f"m-{i:02d}", channel="other", to=f"+849100000{i:02d}") for i in range(20)],
    )
    sms_lanes, other = Witness(store, concurrency=4), Witness(store, concurrency=4)
    d = deliverer(store, {"sms": sms_lanes, "other": other}, clock, in_flight=in_flight)
    rounds = [d.deliver_once() for _ in range(6)]
    assert sum(rounds) == 40 and max(rounds) <= 10 * in_flight  # a round claims ten rows per slot
    d.close()
    assert len(sms_lanes.handed) == len(other.handed) == 20
    assert all(row_of(store, i).status == "sent" for i in sms_lanes.handed + other.handed)
    for witness in (sms_lanes, other):  # per channel: each channel has its own slots
        # the row being sent counts: 1 means every earlier row of the channel was recorded first
        assert witness.most_unrecorded <= in_flight
    if in_flight > 1:
        assert max(sms_lanes.most_unrecorded, other.most_unrecorded) > 1, "lanes ran side by side"


def test_log_rows_are_recorded_once_per_claim_and_other_channels_still_one_by_one(
    store: Store, clock: FrozenClock
) -> None:
    """The log channel sends nothing outside, so a claim of its rows costs one commit, not one per
    row; a channel that does leave the machine keeps its per-row record in the same round."""
    add(
        store,
        *[sms(f"log-{i:02d}", channel="log", to=f"+849000000{i:02d}") for i in range(30)],
        *[sms(f"gw-{i:02d}", to=f"+849100000{i:02d}") for i in range(3)],
    )
    gateway = Witness(store, concurrency=1)
    logged = LogSender(io.StringIO())
    marks: list[int] = []
    mark = store.mark_sent_many
    store.mark_sent_many = lambda ids, now, **kw: (marks.append(len(ids)), mark(ids, now, **kw))[1]  # type: ignore[method-assign]
    d = deliverer(store, {"log": logged, "sms": gateway}, clock, in_flight=1)
    while d.deliver_once():
        pass
    assert len(logged.sent) == 30 and len(gateway.handed) == 3
    assert all(r.status == "sent" for r in store.list_outbox(limit=100))
    assert gateway.most_unrecorded == 1  # the gateway's rows: each recorded before the next went
    assert sorted(marks).count(1) == 3 and sum(marks) == 33 and len(marks) < 3 + 30


def test_only_log_channels_claim_a_whole_batch(store: Store, clock: FrozenClock) -> None:
    add(store, *[sms(f"log-{i:03d}", channel="log") for i in range(LOCAL_BATCH + 50)])
    d = deliverer(store, {"log": LogSender(io.StringIO())}, clock, in_flight=1)
    assert d.deliver_once() == LOCAL_BATCH  # not ten: a local send cannot be lost between claim and record
    assert d.deliver_once() == 50


class Slow:
    """A sender that takes ``seconds`` of real time per message (a slow gateway)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sent = 0

    def send(self, row: OutboxRow) -> Receipt:
        time.sleep(self.seconds)
        self.sent += 1
        return Receipt("ok")


def test_a_round_claims_only_what_it_can_send_within_half_a_lease(store: Store, clock: FrozenClock) -> None:
    add(store, *[sms(f"k-{i}") for i in range(5)])
    d = deliverer(store, {"sms": Slow(0.05)}, clock, lease_seconds=0.2)
    assert d.deliver_once() == 5  # the pace is not known yet: a whole batch
    add(store, *[sms(f"m-{i}") for i in range(5)])
    # about 0.05 s a send, 0.1 s to send in: one or two (a busy machine sleeps longer), not five of
    # which three would wait a whole lease
    assert 1 <= d.deliver_once() <= 2


def test_rows_not_started_within_the_lease_are_released_at_once_and_not_counted(
    store: Store, clock: FrozenClock
) -> None:
    first, second, third = add(store, sms("k-1"), sms("k-2"), sms("k-3"))
    recorder = Recorder(clock, seconds=40)  # each send takes 40 s of a 60 s lease
    d = deliverer(store, {"sms": recorder}, clock, lease_seconds=60)
    assert d.deliver_once() == 3
    assert recorder.keys == ["k-1"]
    assert row_of(store, first).status == "sent"
    for untried in (second, third):  # not left leased for a minute: due now, no attempt counted
        row = row_of(store, untried)
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, clock.now())
    assert d.deliver_once() == 2  # at once, without the clock moving on
    assert recorder.keys == ["k-1", "k-2"]
    assert d.deliver_once() == 1
    assert recorder.keys == ["k-1", "k-2", "k-3"] and row_of(store, third).status == "sent"
    assert row_of(store, third).attempts == 1


def test_backoff_is_jittered_bounded_and_honours_retry_after(store: Store, clock: FrozenClock) -> None:
    d = deliverer(store, {}, clock, base_delay=2.0, max_delay=100.0)
    for attempts in range(1, 12):
        for _ in range(50):
            delay = d.backoff(attempts)
            assert 1.0 <= delay <= min(100.0, 2.0 * 2**attempts)
    assert len({round(d.backoff(5), 6) for _ in range(20)}) > 10  # jitter spreads retries
    assert d.backoff(1, retry_after=30) >= 30
    assert d.backoff(1, retry_after=10_000) <= 100.0


def test_run_delivers_until_stopped(store: Store, http_sink: HttpSink, sms_channel: Callable[..., HttpSender]) -> None:
    from flowctl.runtime.daemon.clock import SystemClock

    [row_id] = add(store, sms())
    d = Deliverer(store, {"sms": sms_channel()}, SystemClock(), owner="loop", rng=random.Random(1))
    stop = threading.Event()
    loop = threading.Thread(target=d.run, args=(stop,), kwargs={"poll_interval": 0.02})
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while row_of(store, row_id).status != "sent" and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    assert row_of(store, row_id).status == "sent"


def test_a_nudge_delivers_before_the_poll_and_many_nudges_start_rounds_a_gap_apart(store: Store) -> None:
    """A commit that queued messages nudges the loop: they leave at once rather than at the next
    poll (30 s here), and a stream of nudges (a busy daemon) starts at most a round per
    ``NUDGE_GAP``, each claiming what came meanwhile, instead of a round per commit."""
    from flowctl.runtime.daemon.clock import SystemClock

    logged = LogSender(io.StringIO())
    d = Deliverer(store, {"log": logged}, SystemClock(), owner="loop", rng=random.Random(1))
    claims: list[int] = []
    claim = store.claim_outbox
    store.claim_outbox = lambda *a, **kw: claims.append(1) or claim(*a, **kw)  # type: ignore[method-assign]
    stop = threading.Event()
    loop = threading.Thread(target=d.run, args=(stop,), kwargs={"poll_interval": 30})
    loop.start()
    try:
        wait_until(lambda: len(claims) == 1)  # the first round found nothing: the loop now polls
        add(store, sms("first", channel="log"))
        d.nudge()
        wait_until(lambda: len(logged.sent) == 1)
        started, before = time.monotonic(), len(claims)
        for n in range(60):
            add(store, sms(f"busy-{n}", channel="log"))
            d.nudge()
            time.sleep(0.005)
        wait_until(lambda: len(logged.sent) == 61)
        rounds, spent = len(claims) - before, time.monotonic() - started
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    assert 1 <= rounds <= spent / NUDGE_GAP + 1, (rounds, spent)
    assert all(row.status == "sent" for row in store.list_outbox(limit=100))


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within 10 s (the loop's poll is 30 s: only a nudge starts a round)"
        time.sleep(0.005)


class Paused:
    """A sender paused mid-send past its lease (SIGSTOP, a GC pause): while it is stuck another
    replica's deliverer claims the row and sends it; then this send fails for good."""

    max_attempts = 8

    def __init__(self, while_paused: Callable[[], None]) -> None:
        self.while_paused = while_paused

    def send(self, row: OutboxRow) -> Receipt:
        self.while_paused()
        from flowctl.channels.base import PermanentFailure

        raise PermanentFailure("550 mailbox unavailable (seen late: the row was taken over meanwhile)")


def test_a_sender_paused_past_its_lease_does_not_mark_over_the_replica_that_took_the_row(
    store: Store, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    [row_id] = add(store, sms())
    taker = Deliverer(
        store, {"sms": LogSender(io.StringIO())}, clock, owner="replica-b", rng=random.Random(1), lease_seconds=30
    )

    def take_over() -> None:
        clock.advance(31)  # the paused sender's lease ran out
        assert taker.deliver_once() == 1

    paused = Deliverer(
        store, {"sms": Paused(take_over)}, clock, owner="replica-a", rng=random.Random(1), lease_seconds=30
    )
    with caplog.at_level("WARNING", logger="flowctl.delivery"):
        assert paused.deliver_once() == 1
    row = row_of(store, row_id)
    assert (row.status, row.last_error) == ("sent", "")  # the taker's outcome stands: not dead
    assert any("1 outbox row(s) not marked dead: replica-a lost their lease" in r.message for r in caplog.records)
