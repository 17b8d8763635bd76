"""The crash test: 5,000 changes fed to a daemon that is SIGKILLed at random moments.

A real daemon process (``flowctl run``) sends email to a real SMTP server (aiosmtpd) and SMS to a
real HTTP server. Clients keep writing while it is killed and restarted at least 10 times, each
retrying a cut-off write with its Idempotency-Key, as the API asks. Afterwards every accepted
change is stored and processed once, every expected message arrived, and the copies received
are no more than two a kill (a kill resends at most ``limits.sends_in_flight`` = 1 message per
channel, email and SMS, with the same Message-ID / Idempotency-Key, so a receiver that
deduplicates sees none).

``FLOWCTL_CRASH_SEED`` replays one run's kill moments; the seed is in the failure message.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from flowctl.testing import Daemon, wait_for
from tests.conftest import HttpSink, SmtpServer
from tests.daemon.configs import mail_template, real_channels, sales_pipeline

CHANGES = 5000
KILLS = 12
CLIENTS = 8

REST = (
    mail_template("welcome", "Chào {{ record.title }}", "Cảm ơn {{ record.title }}.")
    + "---\n"
    + sales_pipeline("""\
        - {name: mail, action: send_email, template: welcome}
        - {name: sms, action: send_sms, text: "Ngay {{ record.title }}", to: "{{ record.phone }}"}
        - name: later
          action: send_sms
          delay: 2s
          text: "Sau {{ record.title }}"
          to: "{{ record.phone }}"
""")
)


class Feed:
    """Clients that write every change until the daemon answers 2xx, with the same key each time."""

    def __init__(self, daemon: Daemon, count: int) -> None:
        self.daemon = daemon
        self.count = count
        self.accepted: set[int] = set()
        self.refused = 0  # connection refused, cut off or 503: tried again
        self.lock = threading.Lock()
        self.stop = threading.Event()  # a failed test must not leave clients writing forever
        self.client = httpx.Client(timeout=10)  # one pool: a client per request costs more than the daemon

    def write(self, i: int) -> None:
        body = {"fields": {"title": f"D{i}", "email": f"d{i}@example.com", "phone": f"09{i:08d}"}}
        while not self.stop.is_set():
            try:
                answer = self.client.put(
                    f"{self.daemon.url}/v1/records/deal/d{i}", json=body, headers={"Idempotency-Key": f"c{i}"}
                )
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code in (200, 201, 202):
                with self.lock:
                    self.accepted.add(i)
                return
            assert answer is None or answer.status_code == 503, f"d{i}: {answer.status_code} {answer.text}"
            with self.lock:
                self.refused += 1
            time.sleep(0.1)

    def run(self) -> None:
        try:
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(self.write, range(self.count)))
        finally:
            self.client.close()


class Received:
    """The Message-IDs the SMTP server got, parsed once each (the test polls them often)."""

    def __init__(self, smtp_server: SmtpServer) -> None:
        self.messages = smtp_server.handler.messages
        self.ids: list[str] = []

    def __call__(self) -> list[str]:
        for message in list(self.messages[len(self.ids) :]):
            self.ids.append(message.message["Message-ID"])
        return self.ids


@pytest.fixture
def crash_daemon(tmp_path: Path, smtp_server: SmtpServer, http_sink: HttpSink) -> Iterator[Daemon]:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "flowctl.yaml").write_text(real_channels(smtp_server.port, http_sink.url) + REST)
    daemon = Daemon(folder, f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        yield daemon
    finally:
        daemon.stop_quietly()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_resends_at_most_one_per_channel_and_kill(
    crash_daemon: Daemon,
    smtp_server: SmtpServer,
    http_sink: HttpSink,
    tmp_path: Path,
    figures: Callable[..., None],
) -> None:
    seed = int(os.environ.get("FLOWCTL_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
    rng = random.Random(seed)
    daemon = crash_daemon
    started = time.monotonic()
    daemon.start()
    feed = Feed(daemon, CHANGES)
    feeder = threading.Thread(target=feed.run, name="feed", daemon=True)
    feeder.start()
    try:
        run_and_check(daemon, feed, feeder, rng, seed, started, smtp_server, http_sink, tmp_path, figures)
    finally:
        feed.stop.set()


def run_and_check(
    daemon: Daemon,
    feed: Feed,
    feeder: threading.Thread,
    rng: random.Random,
    seed: int,
    started: float,
    smtp_server: SmtpServer,
    http_sink: HttpSink,
    tmp_path: Path,
    figures: Callable[..., None],
) -> None:

    emails = Received(smtp_server)

    def sms() -> list[str]:
        return [h.headers.get("Idempotency-Key", "") for h in list(http_sink.hits) if h.path == "/sms"]

    kills: list[str] = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.3, 2.5))  # a random moment: writing, processing, sending or waiting
        moment = f"{len(feed.accepted)} accepted, {len(emails())} emails, {len(sms())} sms"
        daemon.kill()
        kills.append(moment)
        daemon.start(timeout=60)
    feeder.join(timeout=300)
    assert not feeder.is_alive(), f"seed {seed}: the clients could not write everything"

    expected_sms = 2 * CHANGES  # at once and two seconds later
    try:
        wait_for(
            lambda: len(set(emails())) >= CHANGES and len(set(sms())) >= expected_sms,
            timeout=300,
            what="every email and SMS",
            every=0.2,
        )
    finally:
        stopped = daemon.terminate()
    elapsed = time.monotonic() - started
    mails, texts = Counter(emails()), Counter(sms())
    duplicates = (sum(mails.values()) - len(mails)) + (sum(texts.values()) - len(texts))

    database = sqlite3.connect(tmp_path / "flowctl.db")
    stored = dict(database.execute("SELECT status, count(*) FROM changes GROUP BY status").fetchall())
    keys = {k for (k,) in database.execute("SELECT idempotency_key FROM changes")}
    outbox = dict(database.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    database.close()
    lost = len({f"api/c{i}" for i in feed.accepted} - keys)
    figures(
        seed=seed,
        changes_accepted=len(feed.accepted),
        kills=len(kills),
        writes_retried=feed.refused,
        emails=len(mails),
        sms=len(texts),
        duplicates_received=duplicates,
        lost=lost,
        seconds=round(elapsed, 1),
    )

    context = f"seed {seed}; kills at: {kills}"
    assert stopped == 0, context
    assert len(kills) >= 10
    assert feed.accepted == set(range(CHANGES)), context
    assert lost == 0, context
    assert stored == {"done": CHANGES}, f"{context}; changes by status: {stored}"
    assert outbox == {"sent": CHANGES + expected_sms}, f"{context}; outbox by status: {outbox}"
    # Each message exactly once for a receiver that deduplicates by Message-ID / Idempotency-Key …
    assert len(mails) == CHANGES and len(texts) == expected_sms, context
    assert all(key for key in texts), "every SMS carries an Idempotency-Key"
    # … and no more copies than one per channel (email, SMS) and kill for one that does not.
    assert duplicates <= 2 * len(kills), f"{context}; {duplicates} copies: {[k for k, n in texts.items() if n > 1]}"
