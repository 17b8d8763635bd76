"""The SMTP channel against a real (aiosmtpd) server on loopback."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, TypeAlias

import pytest
from pypdf import PdfReader

from flowctl.channels.base import PermanentFailure, TemporaryFailure
from flowctl.channels.smtp import SmtpSender, message_id
from flowctl.ports import OutboxRow
from flowctl.spec.model import Channel

SUBJECT = "Chúc mừng sinh nhật Nguyễn Thị Lan"
HTML = "<p>Kính gửi <b>chị Lan</b>, chúc mừng sinh nhật!</p>"

MakeChannel = Callable[..., Channel]
MakeRow = Callable[..., OutboxRow]
SmtpServer: TypeAlias = Any  # conftest's fixtures: tests cannot import conftest.py
Tls: TypeAlias = Any


@pytest.fixture
def email_row(make_row: MakeRow) -> OutboxRow:
    return make_row(
        "send_email",
        "email",
        key="run-7:mail:0",
        to="Nguyễn Lan <lan@example.com>",
        cc="boss@example.com",
        bcc="audit@example.com",
        subject=SUBJECT,
        text="Kính gửi chị Lan, chúc mừng sinh nhật!",
        html=HTML,
        attachments=[
            {
                "template": "card",
                "format": "pdf",
                "filename": "thiệp.pdf",
                "title": "Thiệp mừng",
                "html": "<h1>Chúc mừng sinh nhật</h1><p>chị Lan</p>",
            },
            {"template": "card", "format": "original", "filename": "card.html", "title": "x", "html": HTML},
            {"template": "note", "format": "original", "filename": "note.txt", "title": "x", "text": "ghi chú"},
        ],
    )


def plain(make_channel: MakeChannel, server: SmtpServer, **values: object) -> SmtpSender:
    ch = make_channel(
        "email",
        type="smtp",
        host=server.host,
        port=server.port,
        security="none",
        sender="CRM <crm@example.com>",
        **values,
    )
    return SmtpSender(ch, {})


def test_email_arrives_with_utf8_subject_parts_and_pdf(
    smtp_server: SmtpServer, make_channel: MakeChannel, email_row: OutboxRow
) -> None:
    sender = plain(make_channel, smtp_server)
    try:
        receipt = sender.send(email_row)
    finally:
        sender.close()
    assert message_id("run-7:mail:0", "example.com") in receipt.detail
    [received] = smtp_server.handler.messages
    assert received.mail_from == "crm@example.com"
    assert sorted(received.rcpt_tos) == ["audit@example.com", "boss@example.com", "lan@example.com"]
    message = received.message
    assert message["Subject"] == SUBJECT
    assert b"Subject: =?utf-8?" in received.data  # RFC 2047, readable by any server
    assert message["To"] == "Nguyễn Lan <lan@example.com>"
    assert message["Cc"] == "boss@example.com"
    assert message["Bcc"] is None
    assert message["From"] == "CRM <crm@example.com>"
    assert message["Message-ID"] == message_id("run-7:mail:0", "example.com")

    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() == "Kính gửi chị Lan, chúc mừng sinh nhật!"
    assert html.get_content().strip() == HTML

    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(attachments) == {"thiệp.pdf", "card.html", "note.txt"}
    assert attachments["thiệp.pdf"].get_content_type() == "application/pdf"
    pdf = attachments["thiệp.pdf"].get_content()
    assert "Chúc mừng sinh nhật" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert attachments["card.html"].get_content_type() == "text/html"
    assert attachments["card.html"].get_content().strip() == HTML
    assert attachments["note.txt"].get_content().strip() == "ghi chú"


def test_message_id_is_stable_across_resends_and_connection_is_reused(
    smtp_server: SmtpServer, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    sender = plain(make_channel, smtp_server)
    first = make_row("send_email", "email", key="k-1", to="a@example.com", subject="a", text="x")
    try:
        sender.send(first)
        connection = sender._connection
        sender.send(first)  # a resend after a crash
        sender.send(make_row("send_email", "email", key="k-2", to="a@example.com", subject="b", text="x"))
        assert sender._connection is connection
    finally:
        sender.close()
    ids = [m.message["Message-ID"] for m in smtp_server.handler.messages]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0] == message_id("k-1", "example.com")


def test_a_dropped_connection_is_reopened(
    smtp_server: SmtpServer, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    sender = plain(make_channel, smtp_server)
    try:
        sender.send(make_row("send_email", "email", key="k-1", to="a@example.com", text="x"))
        assert sender._connection is not None
        sender._connection.sock.close()  # type: ignore[union-attr]  # as a server's idle timeout would
        sender.send(make_row("send_email", "email", key="k-2", to="a@example.com", text="y"))
    finally:
        sender.close()
    assert len(smtp_server.handler.messages) == 2


def test_html_only_gets_a_text_part(smtp_server: SmtpServer, make_channel: MakeChannel, make_row: MakeRow) -> None:
    sender = plain(make_channel, smtp_server)
    try:
        sender.send(make_row("send_email", "email", to="a@example.com", subject="s", html="<p>Xin chào <b>Lan</b></p>"))
    finally:
        sender.close()
    message = smtp_server.handler.messages[0].message
    text = message.get_body(("plain",))
    assert text is not None and text.get_content().strip() == "Xin chào Lan"


ORDER_HTML = """<html><head><style>td { padding: 4px }</style></head><body>
<p>Kính gửi chị Lan, đơn hàng của chị: <a href="https://shop.example.com/don/12?ma=A&amp;b=1">xem đơn hàng</a>.</p>
<table>
  <tr><th>Sản phẩm</th><th>SL</th><th>Thành tiền</th></tr>
  <tr><td>Sofa góc</td><td>1</td><td>15.000.000 ₫</td></tr>
  <tr><td>Bàn trà</td><td>2</td><td>3.000.000 ₫</td></tr>
</table>
<p>Hỏi đáp: <a href="https://shop.example.com/hoi-dap">https://shop.example.com/hoi-dap</a></p>
</body></html>"""


def test_the_text_part_of_an_html_email_keeps_link_urls_and_table_rows(
    smtp_server: SmtpServer, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    sender = plain(make_channel, smtp_server)
    try:
        sender.send(make_row("send_email", "email", to="a@example.com", subject="Đơn hàng", html=ORDER_HTML))
    finally:
        sender.close()
    part = smtp_server.handler.messages[0].message.get_body(("plain",))
    assert part is not None
    lines = part.get_content().splitlines()
    assert lines[0] == ("Kính gửi chị Lan, đơn hàng của chị: [xem đơn hàng](https://shop.example.com/don/12?ma=A&b=1).")
    rows = [line.split() for line in lines if "Sofa" in line or "Bàn trà" in line or "Sản phẩm" in line]
    assert rows == [
        ["Sản", "phẩm", "SL", "Thành", "tiền"],
        ["Sofa", "góc", "1", "15.000.000", "₫"],
        ["Bàn", "trà", "2", "3.000.000", "₫"],
    ]
    header = next(line for line in lines if "Sản phẩm" in line)
    sofa = next(line for line in lines if "Sofa" in line)
    assert header.index("SL") == sofa.index("1")  # cells line up in columns
    assert lines[-1] == "Hỏi đáp: https://shop.example.com/hoi-dap"  # a bare URL once, not [u](u)
    assert "td {" not in part.get_content()


def test_login_with_password_from_env_never_leaks(
    smtp_server: SmtpServer, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    ch = make_channel(
        "email",
        type="smtp",
        host="${SMTP_HOST}",
        port=smtp_server.port,
        security="none",
        sender="${SMTP_FROM}",
        username="${SMTP_USER}",
        password="${SMTP_PASSWORD}",
    )
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_FROM": "crm@example.com", "SMTP_USER": "crm"}
    good = SmtpSender(ch, {**env, "SMTP_PASSWORD": "s3cret-pass"})
    try:
        good.send(make_row("send_email", "email", to="a@example.com", text="x"))
    finally:
        good.close()
    assert smtp_server.handler.logins == [("crm", "s3cret-pass")]
    assert len(smtp_server.handler.messages) == 1

    bad = SmtpSender(ch, {**env, "SMTP_PASSWORD": "wrong-password"})
    with pytest.raises(PermanentFailure) as info:  # 535: authentication failed
        bad.send(make_row("send_email", "email", to="a@example.com", text="x"))
    assert "535" in info.value.reason
    assert "wrong-password" not in repr(info.value) and info.value.__cause__ is None

    missing = SmtpSender(ch, env)
    with pytest.raises(PermanentFailure, match="environment variable SMTP_PASSWORD is not set"):
        missing.send(make_row("send_email", "email", to="a@example.com", text="x"))


def test_smtp_replies_map_to_temporary_and_permanent(
    smtp_server: SmtpServer, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    sender = plain(make_channel, smtp_server)
    smtp_server.handler.replies = ["451 4.3.0 try again later", "554 5.6.0 message rejected"]
    smtp_server.handler.refuse = {"gone@example.com"}
    try:
        with pytest.raises(TemporaryFailure, match="451"):
            sender.send(make_row("send_email", "email", to="a@example.com", text="x"))
        with pytest.raises(PermanentFailure, match="554"):
            sender.send(make_row("send_email", "email", to="a@example.com", text="x"))
        with pytest.raises(PermanentFailure, match=r"gone@example\.com: 550"):
            sender.send(make_row("send_email", "email", to="gone@example.com", text="x"))
        receipt = sender.send(make_row("send_email", "email", to="a@example.com, gone@example.com", text="x"))
        assert "refused: gone@example.com" in receipt.detail
        with pytest.raises(PermanentFailure, match="no recipient"):
            sender.send(make_row("send_email", "email", text="x"))
    finally:
        sender.close()


def test_connection_refused_is_temporary(make_channel: MakeChannel, make_row: MakeRow, unused_port: int) -> None:
    ch = make_channel(
        "email",
        type="smtp",
        host="127.0.0.1",
        port=unused_port,
        security="none",
        sender="crm@example.com",
        timeout="2s",
    )
    with pytest.raises(TemporaryFailure, match="ConnectionRefusedError"):
        SmtpSender(ch, {}).send(make_row("send_email", "email", to="a@example.com", text="x"))


def test_starttls(starttls_server: SmtpServer, tls: Tls, make_channel: MakeChannel, make_row: MakeRow) -> None:
    ch = make_channel(
        "email", type="smtp", host="127.0.0.1", port=starttls_server.port, security="starttls", sender="crm@example.com"
    )
    sender = SmtpSender(ch, {}, ssl_context=tls.client)
    try:
        sender.send(make_row("send_email", "email", to="a@example.com", subject=SUBJECT, text="x"))
    finally:
        sender.close()
    assert starttls_server.handler.messages[0].message["Subject"] == SUBJECT

    untrusted = SmtpSender(ch, {})  # the system's CAs do not know the self-signed certificate
    with pytest.raises(TemporaryFailure, match="SSLCertVerificationError"):
        untrusted.send(make_row("send_email", "email", to="a@example.com", text="x"))


def test_notify_goes_to_the_employee_address(
    smtp_server: SmtpServer, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    sender = plain(make_channel, smtp_server)
    try:
        sender.send(
            make_row(
                "notify",
                "email",
                to="minh",
                user="minh",
                email="minh@example.com",
                name="Minh",
                title="Deal 7 chờ duyệt",
                text="Xem deal 7",
            )
        )
    finally:
        sender.close()
    [received] = smtp_server.handler.messages
    assert received.rcpt_tos == ["minh@example.com"]
    assert received.message["Subject"] == "Deal 7 chờ duyệt"
