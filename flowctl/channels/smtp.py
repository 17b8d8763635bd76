"""The ``smtp`` channel: email through an SMTP server (STARTTLS, implicit TLS or plain).

Each message carries a ``Message-ID`` derived from the outbox row's key, so a message resent after
a crash (sent, but not yet marked sent) has the same id and receivers can drop the duplicate.
One connection is kept per sender and reused; a connection the server dropped while idle is
reopened once before the send counts as failed.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
import threading
from collections.abc import Mapping
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from typing import Any

from flowctl.channels.base import PermanentFailure, Receipt, Secrets, TemporaryFailure, resolve_env, shorten
from flowctl.channels.pdf import FontNotFound, PdfError, render_pdf
from flowctl.channels.plaintext import html_to_text
from flowctl.ports import OutboxRow
from flowctl.spec.model import Channel

__all__ = ["SmtpSender", "build_message", "message_id"]

DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}
DEFAULT_TIMEOUT = 30.0


def message_id(key: str, domain: str = "flowctl") -> str:
    """The Message-ID of the outbox row with idempotency key ``key``: the same on every resend."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain or 'flowctl'}>"


def _addresses(value: Any) -> list[str]:
    """``"a@x, Lan <b@y>"`` or ``["a@x", ...]`` → the header values, empty entries dropped."""
    items = value if isinstance(value, list | tuple) else [value]
    out: list[str] = []
    for item in items:
        if item:
            out += [formatted for _, formatted in _parse(str(item))]
    return out


def _has_address(value: Any) -> bool:
    items = value if isinstance(value, list | tuple) else [value]
    return any("@" in str(item) for item in items if item)


def _parse(text: str) -> list[tuple[str, str]]:
    """(bare address, header form) of each address in a comma-separated list."""
    out = []
    for name, addr in getaddresses([text]):
        if addr:
            out.append((addr, str(Address(display_name=name, addr_spec=addr)) if name else addr))
    return out


def build_message(row: OutboxRow, sender: str) -> EmailMessage:
    """The email for one ``send_email`` (or ``notify``) row; raises :class:`PermanentFailure`.

    Attachments: ``pdf`` renders the document to PDF, ``html`` attaches the HTML, ``original``
    attaches what the template produced (HTML or text).
    """
    payload = row.payload
    # ``notify`` names the employee in ``to`` and their address in ``email``.
    to = next((_addresses(v) for v in (payload.get("to"), payload.get("email"), row.recipient) if _has_address(v)), [])
    cc = _addresses(payload.get("cc"))
    if not to and not cc:
        raise PermanentFailure(f"{row.action} for {row.object} {row.record_id} has no recipient address")
    domain = sender.rpartition("@")[2].strip(">").strip() or "flowctl"
    message = EmailMessage()
    try:
        message["From"] = sender
        message["To"] = ", ".join(to)
        if cc:
            message["Cc"] = ", ".join(cc)
        message["Subject"] = str(payload.get("subject") or payload.get("title") or "")
    except (ValueError, IndexError, MessageError) as exc:  # the email package on a malformed address
        raise PermanentFailure(f"bad email address in {row.action}: {exc}") from None
    message["Message-ID"] = message_id(row.key, domain)
    message["Date"] = formatdate(usegmt=True)

    text = str(payload.get("text") or "")
    html = str(payload.get("html") or "")
    message.set_content(text or (html_to_text(html) if html else ""))
    if html:
        message.add_alternative(html, subtype="html")
    for attachment in payload.get("attachments") or ():
        _attach(message, attachment)
    return message


def _attach(message: EmailMessage, attachment: Mapping[str, Any]) -> None:
    fmt = attachment.get("format", "original")
    html = attachment.get("html")
    body = str(html if html is not None else attachment.get("text") or "")
    name = str(attachment.get("filename") or attachment.get("template") or "document")
    if fmt == "pdf":
        title = str(attachment.get("title") or "")
        try:
            data = render_pdf(title, body)
        except FontNotFound as exc:
            raise PermanentFailure(str(exc)) from None
        except PdfError as exc:
            raise PermanentFailure(f"attachment '{name}': {exc}") from None
        message.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    elif fmt == "html" or html is not None:
        message.add_attachment(body, subtype="html", filename=name)
    else:
        message.add_attachment(body, subtype="plain", filename=name)


def _recipients(message: EmailMessage, payload: Mapping[str, Any]) -> list[str]:
    """Envelope recipients: To, Cc and Bcc (Bcc is never written into the headers)."""
    found: list[str] = []
    for value in (message.get("To", ""), message.get("Cc", ""), *_addresses(payload.get("bcc"))):
        found += [addr for addr, _ in _parse(str(value))]
    return list(dict.fromkeys(found))


class SmtpSender:
    """Sends email through ``channel`` (type ``smtp``); one connection, used by one send at a time.

    ``env`` resolves the channel's ``${ENV}`` references (host, username, password, from) at send
    time. ``ssl_context`` overrides certificate verification (tests with a self-signed server).
    """

    concurrency = 1

    def __init__(self, channel: Channel, env: Mapping[str, str], *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.channel = channel
        self.env = env
        self.ssl_context = ssl_context
        self.timeout = channel.timeout.value.total_seconds() if channel.timeout else DEFAULT_TIMEOUT
        self.secrets = Secrets()
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    @property
    def max_attempts(self) -> int:
        return self.channel.max_attempts

    def mask(self, text: str) -> str:
        return self.secrets.mask(text)

    def _resolve(self, value: str) -> str:
        return resolve_env(value, self.env, self.secrets)

    def message(self, row: OutboxRow) -> EmailMessage:
        """The email this sender would send for ``row`` (also used to preview it)."""
        sender = self._resolve(self.channel.sender) or self._resolve(self.channel.username)
        if "@" not in sender:
            raise PermanentFailure(f"channel {self.channel.name} has no 'from' address")
        return build_message(row, sender)

    def send(self, row: OutboxRow) -> Receipt:
        message = self.message(row)
        recipients = _recipients(message, row.payload)
        with self._lock:
            try:
                refused = self._send(message, recipients)
            except smtplib.SMTPRecipientsRefused as exc:
                raise self._refused(exc.recipients, len(recipients)) from None
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                raise self._failure(exc) from None
        detail = f"250 accepted {message['Message-ID']}"
        if refused:
            detail += " (refused: " + ", ".join(sorted(refused)) + ")"
        return Receipt(detail)

    # ---- connection

    def _send(self, message: EmailMessage, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
        if self._connection is not None:
            try:
                return self._connection.send_message(message, to_addrs=recipients)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                # The server closed our idle connection: that says nothing about this message.
                self._drop()
        self._connection = self._connect()
        return self._connection.send_message(message, to_addrs=recipients)

    def _connect(self) -> smtplib.SMTP:
        channel = self.channel
        host = self._resolve(channel.host)
        if not host:
            raise PermanentFailure(f"channel {channel.name} has no host")
        port = channel.port or DEFAULT_PORTS[channel.security]
        context = self.ssl_context or ssl.create_default_context()
        connection: smtplib.SMTP
        if channel.security == "ssl":
            connection = smtplib.SMTP_SSL(host, port, timeout=self.timeout, context=context)
        else:
            connection = smtplib.SMTP(host, port, timeout=self.timeout)
        try:
            connection.ehlo()
            if channel.security == "starttls":
                connection.starttls(context=context)
                connection.ehlo()
            if channel.username:
                connection.login(self._resolve(channel.username), self._resolve(channel.password))
        except BaseException:
            connection.close()
            raise
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    # ---- outcomes

    def _where(self) -> str:
        return f"SMTP {self.channel.name}"

    def _failure(self, exc: Exception) -> PermanentFailure | TemporaryFailure:
        if isinstance(exc, smtplib.SMTPResponseException):
            reply = (
                exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            )
            reason = self.mask(f"{self._where()}: {exc.smtp_code} {shorten(reply, 200)}")
            return PermanentFailure(reason) if exc.smtp_code >= 500 else TemporaryFailure(reason)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentFailure(self.mask(f"{self._where()}: {exc}"))
        if isinstance(exc, TimeoutError):
            return TemporaryFailure(f"{self._where()}: timed out after {self.timeout:g}s")
        reason = str(exc) or type(exc).__name__
        return TemporaryFailure(self.mask(f"{self._where()}: {type(exc).__name__}: {shorten(reason, 200)}"))

    def _refused(self, refused: Mapping[str, tuple[int, bytes]], total: int) -> PermanentFailure | TemporaryFailure:
        """Every recipient refused: permanent if the server said 5xx to all of them."""
        parts = [f"{addr}: {code} {shorten(msg.decode(errors='replace'), 80)}" for addr, (code, msg) in refused.items()]
        reason = self.mask(f"{self._where()}: all {total} recipients refused ({'; '.join(parts)})")
        permanent = all(code >= 500 for code, _ in refused.values())
        return PermanentFailure(reason) if permanent else TemporaryFailure(reason)
