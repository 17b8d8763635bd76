"""``${ENV}`` resolution, secret masking, the log channel and build_senders."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowctl.channels import HttpSender, LogSender, SmtpSender, build_senders, close_senders, referenced_env
from flowctl.channels.base import PermanentFailure, Secrets, resolve_env, shorten
from flowctl.ports import OutboxRow
from flowctl.spec.config import load_bundle


def test_resolve_env_substitutes_defaults_and_escapes() -> None:
    env = {"TOKEN": "abc123", "EMPTY": ""}
    assert resolve_env("Bearer ${TOKEN}", env) == "Bearer abc123"
    assert resolve_env("${MISSING:-fallback}/${EMPTY:-x}", env) == "fallback/x"
    assert resolve_env("$${TOKEN} stays", env) == "${TOKEN} stays"
    assert resolve_env("no references", env) == "no references"
    assert resolve_env("${EMPTY}", env) == ""


def test_resolve_env_names_the_missing_variable() -> None:
    with pytest.raises(PermanentFailure, match=r"^environment variable SMS_TOKEN is not set$"):
        resolve_env("Bearer ${SMS_TOKEN}", {})


def test_secrets_are_masked_longest_first() -> None:
    secrets = Secrets()
    resolve_env("${A}:${B}:${C}", {"A": "hunter2-long", "B": "hunter2", "C": "ab"}, secrets)
    assert secrets.mask("x hunter2-long y hunter2 z ab") == "x *** y *** z ab"  # too short to mask: "ab"


def test_shorten() -> None:
    assert shorten("a  b\nc") == "a b c"
    assert shorten("x" * 100, 10) == "x" * 9 + "…"


def test_log_sender_prints_and_keeps(make_row: Callable[..., OutboxRow]) -> None:
    stream = io.StringIO()
    sender = LogSender(stream, keep=3)
    for i in range(5):
        receipt = sender.send(make_row(id=i, key=f"k{i}", to="+84901234567", text=f"Chuc mung sinh nhat Lan {i}"))
        assert receipt.detail == "logged"
    assert [r.id for r in sender.sent] == [2, 3, 4]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[0] == "[log] send_sms via sms contact/42 → +84901234567: Chuc mung sinh nhat Lan 0"


def test_log_sender_shows_subject_of_email(make_row: Callable[..., OutboxRow]) -> None:
    stream = io.StringIO()
    LogSender(stream).send(
        make_row(
            "send_email", "email", to="lan@example.com", subject="Chúc mừng sinh nhật " + "Lan " * 40, html="<p>x</p>"
        )
    )
    line = stream.getvalue().strip()
    assert line.startswith("[log] send_email via email contact/42 → lan@example.com: Chúc mừng sinh nhật Lan")
    assert line.endswith("…")


CONFIG = """
apiVersion: flowctl/v1
kind: Channel
metadata: {name: email}
spec: {type: smtp, host: "${SMTP_HOST}", port: 2525, security: none, from: "crm@example.com",
       username: "${SMTP_USER}", password: "${SMTP_PASSWORD}"}
---
apiVersion: flowctl/v1
kind: Channel
metadata: {name: sms}
spec: {type: http, url: "${SMS_URL}", headers: {Authorization: "Bearer ${SMS_TOKEN}"},
       body: {to: "{{ to }}", text: "{{ text }}"}}
---
apiVersion: flowctl/v1
kind: Channel
metadata: {name: quiet}
spec: {type: log}
"""


def test_build_senders_maps_every_channel_and_log(tmp_path: Path) -> None:
    (tmp_path / "channels.yaml").write_text(CONFIG, encoding="utf-8")
    loaded = load_bundle(tmp_path, semantic=False)
    assert loaded.bundle is not None, loaded.issues
    stream = io.StringIO()
    env = {
        "SMS_URL": "http://x",
        "SMS_TOKEN": "t0ken",
        "SMTP_HOST": "h",
        "SMTP_USER": "u",
        "SMTP_PASSWORD": "pw",
        "HOME": "/root",
        "DATABASE_URL": "pg://",
    }
    senders = build_senders(loaded.bundle, env, log_stream=stream)
    try:
        assert set(senders) == {"email", "sms", "quiet", "log"}
        assert isinstance(senders["email"], SmtpSender)
        assert isinstance(senders["sms"], HttpSender)
        assert senders["quiet"] is senders["log"]
        assert isinstance(senders["log"], LogSender)
        assert senders["log"].stream is stream
        # Senders see only what the config references.
        sms: Any = senders["sms"]
        assert dict(sms.env) == {
            "SMS_URL": "http://x",
            "SMS_TOKEN": "t0ken",
            "SMTP_HOST": "h",
            "SMTP_USER": "u",
            "SMTP_PASSWORD": "pw",
        }
    finally:
        close_senders(senders)
    assert referenced_env(loaded.bundle) == {"SMTP_HOST", "SMTP_USER", "SMTP_PASSWORD", "SMS_URL", "SMS_TOKEN"}
