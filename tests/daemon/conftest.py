"""A config directory wired to real sinks: SMTP (aiosmtpd) for email, an HTTP server for SMS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowctl.testing import Daemon
from tests.conftest import HttpSink, SmtpServer
from tests.daemon.configs import mail_template, real_channels, sales_pipeline

EXTRA_FIELDS = "    amount: money\n    note: string\n"
REST = """\
apiVersion: flowctl/v1
kind: Template
metadata: {name: invoice}
spec:
  channel: document
  subject: "Hóa đơn {{ record.title }}"
  html: >-
    <h1>Hóa đơn</h1><p>Cảm ơn quý khách đã mua {{ record.title }}: {{ record.amount | money }}</p>
---
"""
REST += mail_template("invoice-mail", "Hóa đơn {{ record.title }}", "Xin chào, hóa đơn đính kèm.") + "---\n"
REST += sales_pipeline(
    """\
        - {name: mail, action: send_email, template: invoice-mail, attach: [invoice]}
        - {name: sms, action: send_sms, text: "Cảm ơn {{ record.title }}", to: "{{ record.phone }}"}
""",
    stages="""\
    - id: followup
      rules:
        - name: later
          action: send_sms
          delay: 3s
          text: "Nhắc {{ record.title }}"
          to: "{{ record.phone }}"
""",
)


@pytest.fixture
def config_dir(tmp_path: Path, smtp_server: SmtpServer, http_sink: HttpSink) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "flowctl.yaml").write_text(real_channels(smtp_server.port, http_sink.url, EXTRA_FIELDS) + REST)
    return folder


@pytest.fixture
def daemon(tmp_path: Path, config_dir: Path) -> Iterator[Daemon]:
    proc = Daemon(config_dir, f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        yield proc
    finally:
        proc.stop_quietly()
