"""Secrets come from the environment (``${ENV}``) and never come back out: not in the traces, the
logs, the outbox's errors, the API's answers (records, errors, /metrics, /openapi.json) or the
CLI's output — even when every channel fails and the other side echoes the credentials back in
its error (a gateway answering 401 with the request's URL and Authorization header, an SMTP
server refusing the login, a host that refuses the connection to a URL holding a password).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flowctl.ports import Store
from tests.conftest import HttpSink, SmtpServer
from tests.reliability.conftest import Daemon, MakeDaemon

SECRETS = {
    "API_TOKEN": "api-TOKEN-9f8e7d6c5b4a",
    "SMS_TOKEN": "Bearer-SMS-q1w2e3r4t5y6",
    "SMS_KEY": "k3y+Z/x9Yw==",  # base64-like: the characters a URL may encode
    "SMTP_USER": "mailer-user-31337",
    "SMTP_PASSWORD": "smtp-PASS-wrong-0451",
    "HOOK_PASSWORD": "hook-pw-8d7c6b5a",
    "HOOK_SECRET": "hook-SECRET-a1b2c3d4",
}


def files(sink: str, smtp_port: int, dead_port: int) -> dict[str, str]:
    return {
        "flowctl.yaml": """
            apiVersion: flowctl/v1
            kind: Config
            metadata: {name: secrets}
            spec: {timezone: UTC, api_token: "${API_TOKEN}"}
        """,
        "contact.yaml": """
            apiVersion: flowctl/v1
            kind: ObjectType
            metadata: {name: contact}
            spec: {fields: {full_name: {type: string}, phone: {type: phone}, email: {type: email}}}
        """,
        "channels.yaml": f"""
            apiVersion: flowctl/v1
            kind: Channel
            metadata: {{name: sms}}
            spec:
              type: http
              url: "{sink}/sms?key=${{SMS_KEY}}"
              headers: {{Authorization: "Bearer ${{SMS_TOKEN}}"}}
              body: {{to: "{{{{ to }}}}", text: "{{{{ text }}}}"}}
              max_attempts: 1
            ---
            apiVersion: flowctl/v1
            kind: Channel
            metadata: {{name: email}}
            spec: {{type: smtp, host: 127.0.0.1, port: {smtp_port}, security: none, from: shop@example.com,
                    username: "${{SMTP_USER}}", password: "${{SMTP_PASSWORD}}", max_attempts: 1}}
            ---
            apiVersion: flowctl/v1
            kind: Channel
            metadata: {{name: webhook}}
            spec: {{type: http, url: "http://crm:${{HOOK_PASSWORD}}@127.0.0.1:{dead_port}/in?sig=${{HOOK_SECRET}}",
                    max_attempts: 1}}
        """,
        "flow.yaml": """
            apiVersion: flowctl/v1
            kind: Flow
            metadata: {name: welcome}
            spec:
              object: contact
              trigger: {on: created}
              start: sms
              nodes:
                sms: {type: send_sms, text: "Chào {{ record.full_name }}", to: "{{ record.phone }}", next: mail}
                mail: {type: send_email, template: hello, to: "{{ record.email }}", next: hook}
                hook: {type: webhook, body: {name: "{{ record.full_name }}"}}
        """,
        "template.yaml": """
            apiVersion: flowctl/v1
            kind: Template
            metadata: {name: hello}
            spec: {channel: email, subject: "Chào {{ record.full_name }}", text: "Xin chào"}
        """,
        "source.yaml": """
            apiVersion: flowctl/v1
            kind: Source
            metadata: {name: crm}
            spec:
              type: webhook
              path: /hooks/crm
              secret: "${HOOK_SECRET}"
              map: {object: contact, id: "{{ payload.id }}", fields: "{{ payload.data }}"}
        """,
    }


def leaks(text: str) -> list[str]:
    """The secrets found in ``text``, as written or as a URL would carry them."""
    from urllib.parse import quote, quote_plus

    found = []
    for name, value in SECRETS.items():
        if any(form in text for form in {value, quote(value, safe=""), quote_plus(value)}):
            found.append(name)
    return found


def dead_letters(store: Store, expected: int, timeout: float = 20.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = store.list_outbox(limit=100)
        if len(rows) >= expected and all(row.status == "dead" for row in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError(f"not every message was dead-lettered: {store.list_outbox(limit=100)}")


@pytest.fixture
def failing(
    make_daemon: MakeDaemon,
    http_sink: HttpSink,
    smtp_server: SmtpServer,
    unused_port: int,
    caplog: pytest.LogCaptureFixture,
) -> tuple[Daemon, io.StringIO]:
    """A daemon whose every channel fails, the gateway echoing the credentials it was sent."""
    caplog.set_level(logging.DEBUG)
    http_sink.answer(401, times=5)
    log_stream = io.StringIO()
    daemon = make_daemon(files(http_sink.url, smtp_server.port, unused_port), env=SECRETS, log_stream=log_stream)
    return daemon, log_stream


def test_failing_channels_echoing_credentials_leak_nothing(
    failing: tuple[Daemon, io.StringIO], http_sink: HttpSink, caplog: pytest.LogCaptureFixture, figures: Any
) -> None:
    daemon, log_stream = failing
    # the gateway refuses, echoing what it got: the URL with its key and the Authorization header
    http_sink.script.clear()
    http_sink.answer(401, times=5, body=f"denied /sms?key={SECRETS['SMS_KEY']} for Bearer {SECRETS['SMS_TOKEN']}")
    client = daemon.client
    auth = {"Authorization": f"Bearer {SECRETS['API_TOKEN']}"}

    put = client.put(
        "/v1/records/contact/1",
        headers=auth,
        json={"fields": {"full_name": "Lan", "phone": "0901234567", "email": "lan@example.com"}},
    )
    assert put.status_code == 202, put.text
    rows = dead_letters(daemon.store, 3)

    assert http_sink.hits and http_sink.hits[0].headers["Authorization"] == f"Bearer {SECRETS['SMS_TOKEN']}"
    errors = {row.channel: row.last_error for row in rows}
    assert "HTTP 401" in errors["sms"] and "535" in errors["email"] and errors["webhook"], errors  # they did fail
    places: dict[str, str] = {
        "outbox": json.dumps([[row.last_error, dict(row.payload)] for row in rows], default=str),
        "runs and traces": json.dumps([repr(run) for run in daemon.store.list_runs(limit=50)]),
        "log records": caplog.text,
        "log channel": log_stream.getvalue(),
    }
    answers = {
        "record": client.get("/v1/records/contact/1", headers=auth),
        "records": client.get("/v1/records/contact", headers=auth),
        "metrics": client.get("/metrics", headers=auth),
        "openapi": client.get("/openapi.json"),
        "readyz": client.get("/readyz"),
        "no token": client.get("/v1/records/contact/1"),
        "wrong token": client.get("/v1/records/contact/1", headers={"Authorization": "Bearer nope"}),
        "bad hook signature": client.post("/hooks/crm", json={"id": 1}, headers={"X-Signature": "00"}),
        "unknown field": client.put("/v1/records/contact/2", headers=auth, json={"fields": {"x": 1}}),
    }
    for name, response in answers.items():
        places[f"API {name}"] = response.text + json.dumps(dict(response.headers))
    assert answers["record"].status_code == 200 and answers["no token"].status_code == 401

    leaked = {place: found for place, text in places.items() if (found := leaks(text))}

    assert leaked == {}
    figures(places_checked=len(places), secrets=len(SECRETS), failed_deliveries=len(rows))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **SECRETS}
    return subprocess.run(
        [sys.executable, "-m", "flowctl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_the_cli_shows_no_secret(failing: tuple[Daemon, io.StringIO], tmp_path: Path, figures: Any) -> None:
    daemon, _ = failing
    auth = {"Authorization": f"Bearer {SECRETS['API_TOKEN']}"}
    daemon.client.put(
        "/v1/records/contact/1",
        headers=auth,
        json={"fields": {"full_name": "Lan", "phone": "0901234567", "email": "lan@example.com"}},
    )
    rows = dead_letters(daemon.store, 3)
    root, database = daemon.svc.root, str(daemon.store.engine.url)  # type: ignore[attr-defined]
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {
                "create": {
                    "object": "contact",
                    "id": "9",
                    "fields": {"full_name": "Mai", "phone": "0901234567", "email": "mai@example.com"},
                }
            }
        )
    )
    run_id = next(row.run_id for row in rows)

    outputs = {
        "validate": run_cli("validate", str(root), "--format", "json", cwd=tmp_path),
        "dry-run": run_cli("dry-run", str(root), "--event", str(event), "--format", "json", cwd=tmp_path),
        "dry-run text": run_cli("dry-run", str(root), "--event", str(event), cwd=tmp_path),
        "outbox list": run_cli("outbox", "list", "--db", database, "--status", "dead", cwd=tmp_path),
        "runs list": run_cli("runs", "list", "--db", database, cwd=tmp_path),
        "runs show": run_cli("runs", "show", run_id, "--db", database, cwd=tmp_path),
    }

    assert outputs["validate"].returncode == 0, outputs["validate"].stdout
    assert "dead" in outputs["outbox list"].stdout, outputs["outbox list"]
    leaked = {name: found for name, out in outputs.items() if (found := leaks(out.stdout + out.stderr))}
    assert leaked == {}
    figures(cli_commands=len(outputs))
