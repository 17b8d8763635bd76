"""Real servers for the channel tests: an aiosmtpd SMTP server and an HTTP sink, both on loopback."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from flowctl.ports import OutboxRow
from flowctl.spec.durations import parse_duration
from flowctl.spec.model import Channel, Duration, Metadata
from flowctl.testing import free_port


@pytest.fixture
def unused_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    return free_port()


# --- SMTP -----------------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpHandler:
    """Records every message; ``replies`` (consumed first to last) answers DATA instead of 250."""

    messages: list[Received] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # recipients answered 550 at RCPT
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.replies:
            return self.replies.pop(0)
        assert isinstance(envelope.content, bytes)
        self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), envelope.content))
        return "250 OK queued"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            self.logins.append((user, password))
            if password == "s3cret-pass":
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: SmtpHandler


def _start(controller: Controller) -> Controller:
    controller.start()
    return controller


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = SmtpHandler()
    port = free_port()
    controller = _start(
        Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            authenticator=handler.authenticate,
            auth_require_tls=False,
            enable_SMTPUTF8=True,
        )
    )
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1 and the contexts of both ends."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return Tls(server=server, client=client)


@pytest.fixture
def starttls_server(tls: Tls) -> Iterator[SmtpServer]:
    handler = SmtpHandler()
    port = free_port()
    controller = _start(
        Controller(handler, hostname="127.0.0.1", port=port, tls_context=tls.server, require_starttls=True)
    )
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


# --- HTTP -----------------------------------------------------------------------------------------


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpSink:
    """Records requests; answers from ``script`` (status, headers, body) first, then 200."""

    url: str
    hits: list[Hit] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int, times: int = 1, headers: dict[str, str] | None = None, body: str = "") -> None:
        with self.lock:
            self.script += [(status, headers or {}, body)] * times


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    sink = HttpSink(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with sink.lock:
                sink.hits.append(Hit(self.command, self.path, dict(self.headers.items()), body))
                status, headers, text = sink.script.pop(0) if sink.script else (200, {}, '{"ok": true}')
            payload = text.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PUT = do_GET = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    with serving(Handler) as url:
        sink.url = url
        yield sink


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a loopback port from a daemon thread and yield its base URL; the
    server is shut down, closed and its thread joined on the way out."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- values -----------------------------------------------------------------------------------------


def _channel(name: str, **values: Any) -> Channel:
    """A Channel as the builder would make it (``timeout`` as text: ``"2s"``)."""
    timeout = values.pop("timeout", None)
    if timeout is not None:
        values["timeout"] = Duration(text=timeout, value=parse_duration(timeout))
    return Channel(metadata=Metadata(name=name), **values)


def _row(
    action: str = "send_sms", channel: str = "sms", key: str = "run-1:node:0", id: int = 1, **payload: Any
) -> OutboxRow:
    return OutboxRow(
        id=id,
        key=key,
        channel=channel,
        action=action,
        object="contact",
        record_id="42",
        run_id="run-1",
        payload=payload,
        recipient=str(payload.get("to") or ""),
    )


@pytest.fixture
def make_channel() -> Callable[..., Channel]:
    return _channel


@pytest.fixture
def make_row() -> Callable[..., OutboxRow]:
    return _row


# --- PostgreSQL ------------------------------------------------------------------------------------

PG_ENV = "FLOWCTL_TEST_DATABASE_URL"


def fresh_schema(base: str, database: str | None = None) -> Iterator[str]:
    """A URL whose connections live in a new, empty schema (of ``database``, created if missing);
    the schema is dropped afterwards, so PostgreSQL tests never see each other's rows."""
    url = sa.make_url(base)
    if database:
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).first():
                conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        url = url.set(database=database)
    schema = f"flowctl_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        engine.dispose()


def pg_base() -> str:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"set {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run PostgreSQL tests")
    return base


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL in a fresh, empty schema; skipped without FLOWCTL_TEST_DATABASE_URL."""
    yield from fresh_schema(pg_base())


# --- figures for RELIABILITY.md -----------------------------------------------------------------

FIGURES_ENV = "FLOWCTL_FIGURES"
_figures: dict[str, dict[str, Any]] = {}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record what a reliability test measured (changes fed, kills survived, inputs tried, …).

    The figures are printed at the end of the run and, when ``FLOWCTL_FIGURES`` names a file,
    written there as JSON, so RELIABILITY.md quotes a run anyone can repeat."""

    def record(**values: Any) -> None:
        _figures.setdefault(request.node.nodeid, {}).update(values)

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _figures:
        return
    terminalreporter.section("reliability figures")
    for test, values in sorted(_figures.items()):
        shown = ", ".join(f"{key}={value}" for key, value in values.items())
        terminalreporter.write_line(f"{test}: {shown}")
    target = os.environ.get(FIGURES_ENV)
    if target:
        Path(target).write_text(json.dumps(_figures, indent=2, sort_keys=True, default=str) + "\n")
        terminalreporter.write_line(f"written to {target}")
