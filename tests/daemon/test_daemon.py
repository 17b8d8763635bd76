"""The daemon as a real process: real SMTP and HTTP receivers, SIGTERM, restarts and kill -9."""

from __future__ import annotations

import contextlib
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pypdf import PdfReader

from flowctl.testing import Daemon, wait_for
from tests.conftest import HttpSink, SmtpServer


def sms_hits(sink: HttpSink) -> list[dict]:
    return [h.json() | {"key": h.headers.get("Idempotency-Key")} for h in sink.hits if h.path == "/sms"]


def test_a_new_deal_sends_email_with_pdf_and_sms(daemon: Daemon, smtp_server: SmtpServer, http_sink: HttpSink) -> None:
    daemon.start()
    answer = daemon.put(
        "deal", "7", {"title": "Bộ sofa", "email": "lan@example.com", "phone": "0901234567", "amount": 15000000}
    )
    assert answer.status_code == 202, answer.text
    wait_for(lambda: smtp_server.handler.messages and sms_hits(http_sink), what="email and SMS")
    (mail,) = smtp_server.handler.messages
    message = mail.message
    assert mail.rcpt_tos == ["lan@example.com"]
    assert message["Subject"] == "Hóa đơn Bộ sofa"
    assert message["Message-ID"]
    (pdf,) = [part for part in message.iter_attachments() if part.get_content_type() == "application/pdf"]
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.get_content())).pages)
    assert "Cảm ơn quý khách đã mua Bộ sofa" in text
    assert "15.000.000" in text
    (sms,) = sms_hits(http_sink)
    assert sms["to"] == "0901234567" and sms["text"] == "Cảm ơn Bộ sofa"
    assert sms["key"]
    assert daemon.terminate() == 0


def test_a_gateway_answering_503_is_retried_until_delivered(daemon: Daemon, http_sink: HttpSink) -> None:
    http_sink.answer(503, times=2)
    daemon.start()
    assert daemon.put("deal", "8", {"title": "Bàn ăn", "phone": "0912345678"}).status_code == 202
    wait_for(lambda: len([h for h in http_sink.hits if h.path == "/sms"]) >= 3, what="third SMS attempt")
    keys = {h.headers.get("Idempotency-Key") for h in http_sink.hits if h.path == "/sms"}
    assert len(keys) == 1, "every retry carries the same Idempotency-Key"
    time.sleep(0.5)
    assert len([h for h in http_sink.hits if h.path == "/sms"]) == 3, "delivered once after two refusals"
    out = httpx.get(f"{daemon.url}/metrics").text
    assert "flowctl_changes_accepted_total" in out


def test_a_delay_in_progress_survives_a_restart(daemon: Daemon, http_sink: HttpSink) -> None:
    daemon.start()
    assert daemon.put("deal", "9", {"title": "Tủ", "phone": "0987654321"}).status_code == 202
    moved = httpx.post(f"{daemon.url}/v1/records/deal/9/stage", json={"stage": "followup"}, timeout=10)
    assert moved.status_code == 202, moved.text
    wait_for(lambda: any(h["text"] == "Cảm ơn Tủ" for h in sms_hits(http_sink)), what="first SMS")
    assert daemon.terminate() == 0  # the delayed rule waits in the database, not in memory
    time.sleep(3.5)  # the delay comes due while the daemon is down
    daemon.start()
    wait_for(lambda: any(h["text"] == "Nhắc Tủ" for h in sms_hits(http_sink)), what="delayed SMS after restart")
    time.sleep(0.5)
    assert [h["text"] for h in sms_hits(http_sink)].count("Nhắc Tủ") == 1


def test_sigterm_exits_zero_within_ten_seconds(daemon: Daemon) -> None:
    daemon.start()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(daemon.put, "deal", str(i), {"title": f"d{i}"}) for i in range(200)]
        started = time.monotonic()
        code = daemon.terminate()
        elapsed = time.monotonic() - started
        for future in futures:
            with contextlib.suppress(httpx.HTTPError):  # refused once it stopped listening
                future.result()
    assert code == 0
    assert elapsed < 10
    assert "flowctl: stopped" in daemon.output()


@pytest.mark.slow
def test_kill_9_during_heavy_processing_loses_no_accepted_change(daemon: Daemon, http_sink: HttpSink) -> None:
    daemon.start()
    accepted: set[str] = set()

    def send(i: int) -> None:
        try:
            answer = daemon.put("deal", f"k{i}", {"title": f"Đơn {i}", "phone": "0901234567"})
        except httpx.HTTPError:
            return
        if answer.status_code == 202:
            accepted.add(f"Cảm ơn Đơn {i}")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, range(300)))
        daemon.kill()  # SIGKILL while the worker and the deliverer are busy
        list(pool.map(send, range(300, 400)))  # refused while down: not accepted, not expected
    daemon.start()
    wait_for(lambda: accepted <= {h["text"] for h in sms_hits(http_sink)}, timeout=60, what="every accepted SMS")
    texts = [h["text"] for h in sms_hits(http_sink)]
    keys = {h["key"] for h in sms_hits(http_sink)}
    assert len(keys) == len(set(texts)), "one Idempotency-Key per message, whatever the resends"
    # Messages sent but not yet marked sent when the process died go out again, with the same key,
    # so a receiver that deduplicates by Idempotency-Key sees each message once.
    assert accepted, "the daemon accepted work before it was killed"


def test_a_writer_reads_its_own_write_and_may_wait_for_it_to_be_processed(daemon: Daemon) -> None:
    daemon.start()  # two processes: the change is processed by the engine process, read back by the API's
    for n in range(20):
        assert daemon.put("deal", f"r{n}", {"title": f"R{n}", "phone": "0901234567"}).status_code == 202
        read = httpx.get(f"{daemon.url}/v1/records/deal/r{n}", timeout=10)
        assert read.status_code == 200, read.text  # at once, processed or not ("pending" says which)
        assert read.json()["fields"] == {"title": f"R{n}", "phone": "0901234567"}

    answer = httpx.put(
        f"{daemon.url}/v1/records/deal/w",
        json={"fields": {"title": "W", "phone": "0901234567"}},
        headers={"Prefer": "wait=10"},
        timeout=30,
    )

    assert answer.status_code == 200, answer.text
    assert answer.headers["preference-applied"] == "wait=10"
    body = answer.json()
    assert body["status"] == "done" and body["record"]["stage"] == "new" and body["record"]["pending"] is False
    assert {run["automation"] for run in body["runs"]} == {"rule:sales/new/mail", "rule:sales/new/sms"}
    assert httpx.get(f"{daemon.url}/v1/records/deal/w", timeout=10).json()["pending"] is False
