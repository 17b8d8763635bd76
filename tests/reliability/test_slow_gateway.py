"""One slow SMS gateway does not hold up email, at the default ``sends_in_flight: 1``.

A real ``flowctl run`` sends each deal's email to a real SMTP server (aiosmtpd) and its SMS to a
real HTTP gateway that hangs on every other request (seconds, within the channel's timeout). Each
channel has its own lane, so every email arrives while the SMS are still crawling through. The
lease is short, so a claim's SMS rows that the lane did not get to in time are released at once:
every SMS row ends with as many attempts as the gateway saw requests for it (an untried claim is
no attempt), and none arrives twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowctl.store import open_store
from flowctl.testing import Daemon, wait_for
from tests.conftest import SmtpServer
from tests.daemon.configs import THANKS_MAIL, real_channels, sales_pipeline
from tests.reliability.gateway import Gateway, serve

DEALS = 20
HANG = 3.0  # seconds the gateway hangs on every other SMS: 30 s for all of them
EMAIL_WITHIN = 12.0  # seconds for every email, from the first write (they wait for no SMS)

REST = THANKS_MAIL + sales_pipeline("""\
        - {name: sms, action: send_sms, text: "Cam on {{ record.title }}", to: "{{ record.phone }}"}
        - {name: mail, action: send_email, template: thanks-mail, to: "{{ record.email }}"}
""")


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with serve() as gw:
        gw.hang_every, gw.hang_seconds = 2, HANG
        yield gw


def test_email_is_not_delayed_by_a_hanging_sms_gateway_at_one_message_in_flight(
    tmp_path: Path, gateway: Gateway, smtp_server: SmtpServer, figures: Callable[..., None]
) -> None:
    root = tmp_path / "config"
    root.mkdir()
    (root / "flowctl.yaml").write_text(real_channels(smtp_server.port, gateway.url) + REST)
    database = f"sqlite:///{tmp_path / 'flowctl.db'}"
    # a 10 s lease: a claim may start sends for 5 s, so a claim of SMS rows runs out of time
    daemon = Daemon(root / "flowctl.yaml", database, env={"FLOWCTL_LEASE_SECONDS": "10"}).start()
    store = open_store(database)
    mails = smtp_server.handler.messages
    try:
        started = time.monotonic()
        for i in range(DEALS):
            answer = daemon.put(
                "deal", f"d{i}", {"title": f"Deal {i}", "email": f"k{i}@example.com", "phone": f"09{i:08d}"}
            )
            assert answer.status_code in (200, 202), answer.text
        email_s = wait_for(lambda: len(mails) == DEALS, EMAIL_WITHIN, "every email")
        sms_then = len(gateway.keys())
        assert sms_then < DEALS, "the SMS gateway was not slow enough to show anything"
        sms_s = wait_for(lambda: len(gateway.keys()) == DEALS, 120, "every SMS") + email_s
        time.sleep(1)  # a copy would arrive now

        assert sorted(m.message["To"] for m in mails) == sorted(f"k{i}@example.com" for i in range(DEALS))
        copies = {key: n for key, n in Counter(gateway.keys()).items() if n > 1}
        assert copies == {}, f"sent twice: {copies}"
        with gateway.lock:
            requests = Counter(r.key for r in gateway.requests)
        rows = [r for r in store.list_outbox(limit=1000) if r.channel == "sms"]
        assert len(rows) == DEALS and all(r.status == "sent" for r in rows)
        # a claim the lane did not get to is released, not counted: attempts are real requests
        assert {r.key: r.attempts for r in rows} == {r.key: requests[r.key] for r in rows}
        released = sum(
            int(line.split("released ")[1].split()[0])
            for line in daemon.output().splitlines()
            if "not started within their claim's time" in line
        )
        figures(
            deals=DEALS,
            emails_all_in_s=round(email_s, 1),
            sms_then=sms_then,
            sms_all_in_s=round(sms_s, 1),
            released_untried=released,
            copies=0,
            elapsed_s=round(time.monotonic() - started, 1),
        )
    finally:
        store.close()
        daemon.stop_quietly()
