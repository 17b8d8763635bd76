"""The HTTP channel against a real HTTP server on loopback."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeAlias

import pytest

from flowctl.channels.base import PermanentFailure, TemporaryFailure
from flowctl.channels.http import HttpSender
from flowctl.ports import OutboxRow
from flowctl.spec.model import Channel
from tests.conftest import serving

MakeChannel = Callable[..., Channel]
MakeRow = Callable[..., OutboxRow]
HttpSink: TypeAlias = Any  # conftest.HttpSink: tests cannot import conftest.py

SMS_BODY = {
    "to": "{{ to }}",
    "text": "{{ text | unaccent }}",
    "ref": "{{ key }}",
    "parts": "{{ segments }}",
    "meta": {"object": "{{ object }}", "id": "{{ record_id }}", "all": "{{ payload }}"},
}


@pytest.fixture
def sms(http_sink: HttpSink, make_channel: MakeChannel) -> Channel:
    return make_channel(
        "sms",
        type="http",
        url="${SMS_URL}/send?token=${SMS_TOKEN}",
        headers={"Authorization": "Bearer ${SMS_TOKEN}", "X-Record": "{{ object }}/{{ record_id }}"},
        body=SMS_BODY,
        timeout="5s",
    )


def sms_row(make_row: MakeRow, **values: Any) -> OutboxRow:
    return make_row(
        "send_sms",
        "sms",
        key="run-1:sms:0",
        to="+84901234567",
        text="Chúc mừng sinh nhật Lan!",
        encoding="gsm7",
        segments=1,
        **values,
    )


def test_sms_body_is_templated_with_idempotency_key(http_sink: HttpSink, sms: Channel, make_row: MakeRow) -> None:
    sender = HttpSender(sms, {"SMS_URL": http_sink.url, "SMS_TOKEN": "tok-123456"})
    try:
        receipt = sender.send(sms_row(make_row))
    finally:
        sender.close()
    assert receipt.detail == "HTTP 200"
    [hit] = http_sink.hits
    assert (hit.method, hit.path) == ("POST", "/send?token=tok-123456")
    assert hit.headers["Idempotency-Key"] == "run-1:sms:0"
    assert hit.headers["Authorization"] == "Bearer tok-123456"
    assert hit.headers["X-Record"] == "contact/42"
    assert hit.headers["Content-Type"] == "application/json"
    body = hit.json()
    assert body["to"] == "+84901234567"
    assert body["text"] == "Chuc mung sinh nhat Lan!"
    assert body["ref"] == "run-1:sms:0"
    assert body["parts"] == 1  # a lone expression keeps its JSON type
    assert body["meta"]["object"] == "contact" and body["meta"]["id"] == "42"
    assert body["meta"]["all"]["text"] == "Chúc mừng sinh nhật Lan!"


def test_record_data_cannot_read_environment_variables(
    http_sink: HttpSink, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    ch = make_channel("sms", type="http", url=http_sink.url, body={"text": "{{ text }}", "key": "${API_KEY}"})
    sender = HttpSender(ch, {"API_KEY": "key-from-env", "SMS_TOKEN": "tok-123456"})
    sender.send(make_row(to="1", text="hi ${SMS_TOKEN} ${API_KEY}"))
    sender.close()
    assert http_sink.hits[0].json() == {"text": "hi ${SMS_TOKEN} ${API_KEY}", "key": "key-from-env"}


def test_without_a_body_the_payload_is_sent(http_sink: HttpSink, make_channel: MakeChannel, make_row: MakeRow) -> None:
    sender = HttpSender(make_channel("call", type="http", url=http_sink.url + "/call"), {})
    sender.send(make_row("call", "call", to="0901234567", text="Nhắc lịch hẹn"))
    sender.close()
    assert http_sink.hits[0].json() == {"to": "0901234567", "text": "Nhắc lịch hẹn"}


def test_webhook_effect_sends_its_own_body_url_and_method(
    http_sink: HttpSink, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    ch = make_channel("webhook", type="http", url="http://127.0.0.1:9/unused", headers={"X-From": "flowctl"})
    sender = HttpSender(ch, {"HOOK_TOKEN": "hook-token-1"})
    row = make_row(
        "webhook",
        "webhook",
        key="run-2:hook:0",
        url=http_sink.url + "/hook",
        method="PUT",
        body={"object": "deal", "id": "7", "amount": 1500000},
        headers={"Authorization": "Bearer ${HOOK_TOKEN}"},
    )
    sender.send(row)
    sender.close()
    [hit] = http_sink.hits
    assert (hit.method, hit.path) == ("PUT", "/hook")
    assert hit.json() == {"object": "deal", "id": "7", "amount": 1500000}
    assert hit.headers["Authorization"] == "Bearer hook-token-1"
    assert hit.headers["X-From"] == "flowctl"
    assert hit.headers["Idempotency-Key"] == "run-2:hook:0"


def test_text_body(http_sink: HttpSink, make_channel: MakeChannel, make_row: MakeRow) -> None:
    ch = make_channel(
        "sms",
        type="http",
        url=http_sink.url,
        body="to={{ to }}&msg={{ text | unaccent }}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    sender = HttpSender(ch, {})
    sender.send(make_row(to="0901", text="Xin chào"))
    sender.close()
    assert http_sink.hits[0].body == b"to=0901&msg=Xin chao"
    assert http_sink.hits[0].headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_status_codes(http_sink: HttpSink, sms: Channel, make_row: MakeRow) -> None:
    sender = HttpSender(sms, {"SMS_URL": http_sink.url, "SMS_TOKEN": "tok-123456"})
    http_sink.answer(503, headers={"Retry-After": "120"}, body="down for maintenance, token tok-123456")
    http_sink.answer(429)
    http_sink.answer(408)
    http_sink.answer(400, body='{"error": "invalid phone number"}')
    http_sink.answer(302, headers={"Location": "/elsewhere"})
    try:
        with pytest.raises(TemporaryFailure) as info:
            sender.send(sms_row(make_row))
        assert info.value.retry_after == 120
        assert "HTTP 503" in info.value.reason and "tok-123456" not in info.value.reason
        assert "***" in info.value.reason
        with pytest.raises(TemporaryFailure, match="HTTP 429") as info:
            sender.send(sms_row(make_row))
        assert info.value.retry_after is None
        with pytest.raises(TemporaryFailure, match="HTTP 408"):
            sender.send(sms_row(make_row))
        with pytest.raises(PermanentFailure, match=r"HTTP 400: \{\"error\": \"invalid phone number\"\}"):
            sender.send(sms_row(make_row))
        with pytest.raises(PermanentFailure, match="HTTP 302"):
            sender.send(sms_row(make_row))
    finally:
        sender.close()


def test_connection_refused_and_timeout_are_temporary(
    make_channel: MakeChannel, make_row: MakeRow, unused_port: int
) -> None:
    sender = HttpSender(make_channel("sms", type="http", url=f"http://127.0.0.1:{unused_port}/x?token=abcd1234"), {})
    with pytest.raises(TemporaryFailure, match=f"POST http://127.0.0.1:{unused_port}: ConnectError") as info:
        sender.send(make_row(to="1", text="x"))
    assert "abcd1234" not in info.value.reason  # the query is left out: it may hold a token
    sender.close()


def test_timeout_is_temporary(make_channel: MakeChannel, make_row: MakeRow) -> None:
    import socket

    with socket.socket() as listener:  # accepts connections but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        sender = HttpSender(make_channel("sms", type="http", url=url, timeout="1s"), {})
        with pytest.raises(TemporaryFailure, match="timed out after 1s"):
            sender.send(make_row(to="1", text="x"))
        sender.close()


def test_template_and_env_problems_are_permanent(make_channel: MakeChannel, make_row: MakeRow) -> None:
    broken = HttpSender(make_channel("sms", type="http", url="http://127.0.0.1:9", body={"t": "{{ nope.x }}"}), {})
    with pytest.raises(PermanentFailure, match=r"channel sms: the body\.t template failed"):
        broken.send(make_row(to="1", text="x"))
    missing = HttpSender(make_channel("sms", type="http", url="${SMS_URL}"), {})
    with pytest.raises(PermanentFailure, match=r"^environment variable SMS_URL is not set$"):
        missing.send(make_row(to="1", text="x"))
    bad_url = HttpSender(make_channel("sms", type="http", url="ftp://x"), {})
    with pytest.raises(PermanentFailure, match="http:// or https://"):
        bad_url.send(make_row(to="1", text="x"))
    for sender in (broken, missing, bad_url):
        sender.close()


def test_concurrent_sends_on_kept_alive_connections_each_arrive_once(
    make_channel: MakeChannel, make_row: MakeRow
) -> None:
    """Eight threads send through one sender to a gateway that keeps connections alive; an idle
    connection expires after a millisecond, so the pool closes connections all the time. One
    ``httpx.Client`` shared by the threads sometimes closed a connection another thread had just
    sent on (``ReadError: Bad file descriptor`` after the gateway got the message): that send
    failed and its retry delivered the message twice. Every send succeeds, each message once."""
    keys: Counter[str] = Counter()
    lock = threading.Lock()

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                keys[self.headers.get("Idempotency-Key", "")] += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(KeepAlive) as url:
        sender = HttpSender(make_channel("sms", type="http", url=url + "/sms"), {}, keepalive_expiry=0.001)
        rows = [make_row("send_sms", "sms", key=f"run-{i}:sms:0", to="+84901234567", text="hi") for i in range(3000)]
        failures: list[str] = []

        def send(row: OutboxRow) -> None:
            try:
                sender.send(row)
            except TemporaryFailure as exc:
                failures.append(str(exc))

        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(send, rows))
        finally:
            sender.close()
    assert failures == []
    assert len(keys) == len(rows) and set(keys.values()) == {1}
