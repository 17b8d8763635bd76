"""Stage-rule waits in the real daemon: a rule waiting for an event, a field change or a moment
of the record is a run and a timer in the database, so it survives a restart (and a moment still
follows its field after one); leaving the stage cancels it there."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowctl.testing import Daemon, wait_for
from tests.conftest import HttpSink, SmtpServer
from tests.daemon.configs import real_channels

SMS = 'to: "{{ record.phone }}"'
PIPELINE = f"""\
apiVersion: flowctl/v1
kind: Pipeline
metadata: {{name: sales}}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - {{name: remind, delay: {{until: "{{{{ record.visit_at }}}}", offset: -2h}},
           action: send_sms, text: "Visit {{{{ record.title }}}}", {SMS}}}
    - id: quoted
      rules:
        - {{name: thanks, wait: {{event: invoice.paid, for: 30d}}, on_timeout: skip,
           action: send_sms, text: "Paid {{{{ record.title }}}} {{{{ event.amount }}}}", {SMS}}}
        - {{name: requote, wait: {{changed: [amount]}},
           action: send_sms, text: "New quote {{{{ record.title }}}}", {SMS}}}
    - id: done
      rules:
        - {{name: closed, action: send_sms, text: "Closed {{{{ record.title }}}}", {SMS}}}
"""
WAIT = {"Prefer": "wait=10"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def daemon(
    request: pytest.FixtureRequest, tmp_path: Path, smtp_server: SmtpServer, http_sink: HttpSink
) -> Iterator[Daemon]:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "flowctl.yaml").write_text(
        real_channels(smtp_server.port, http_sink.url, "    amount: money\n    visit_at: datetime\n") + PIPELINE
    )
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else f"sqlite:///{tmp_path / 'flowctl.db'}"
    proc = Daemon(folder, url)
    try:
        yield proc
    finally:
        proc.stop_quietly()


def processed(daemon: Daemon, path: str, body: Mapping[str, Any]) -> None:
    """POST ``body`` and wait until the engine has handled it (``Prefer: wait``)."""
    answer = httpx.post(f"{daemon.url}{path}", json=body, headers={**daemon.headers(), **WAIT}, timeout=30)
    assert answer.status_code == 200, answer.text


def texts(sink: HttpSink) -> list[str]:
    return [h.json()["text"] for h in sink.hits if h.path == "/sms"]


def rule_runs(daemon: Daemon, record: str) -> dict[str, tuple[str, str]]:
    items = daemon.get(f"/v1/runs?object=deal&record={record}").json()["items"]
    return {r["automation"]: (r["status"], r["waiting_for"]) for r in items}


def quoted(daemon: Daemon, record: str, title: str) -> None:
    answer = daemon.put("deal", record, {"title": title, "phone": "0901234567"}, stage="quoted", headers=WAIT)
    assert answer.status_code == 200, answer.text
    assert rule_runs(daemon, record)["rule:sales/quoted/requote"] == ("waiting", "changed: amount")


def test_a_waiting_rule_survives_a_restart(daemon: Daemon, http_sink: HttpSink) -> None:
    daemon.start()
    quoted(daemon, "1", "Tủ")
    assert rule_runs(daemon, "1")["rule:sales/quoted/thanks"] == ("waiting", "invoice.paid")
    assert daemon.terminate() == 0  # the waits are runs and a timer in the database
    daemon.start()
    processed(daemon, "/v1/events", {"event": "invoice.paid", "object": "deal", "id": "1", "data": {"amount": 500}})
    wait_for(lambda: "Paid Tủ 500" in texts(http_sink), what="the SMS of the event after the restart")
    assert daemon.patch("deal", "1", {"amount": 900}, headers=WAIT).status_code == 200
    wait_for(lambda: "New quote Tủ" in texts(http_sink), what="the SMS of the change after the restart")
    runs = rule_runs(daemon, "1")
    assert runs["rule:sales/quoted/thanks"][0] == runs["rule:sales/quoted/requote"][0] == "done"


def test_leaving_the_stage_cancels_the_waits_across_a_restart(daemon: Daemon, http_sink: HttpSink) -> None:
    daemon.start()
    quoted(daemon, "2", "Bàn")
    assert daemon.terminate() == 0
    daemon.start()
    left = daemon.put("deal", "2", {"title": "Bàn", "phone": "0901234567"}, stage="done", headers=WAIT)
    assert left.status_code == 200, left.text
    runs = rule_runs(daemon, "2")
    assert runs["rule:sales/quoted/thanks"][0] == runs["rule:sales/quoted/requote"][0] == "cancelled"
    assert daemon.patch("deal", "2", {"amount": 900}, headers=WAIT).status_code == 200
    processed(daemon, "/v1/events", {"event": "invoice.paid", "object": "deal", "id": "2", "data": {"amount": 1}})
    # the outbox is written with the step that decides: after both inputs it holds all there is
    rows = daemon.get("/v1/outbox?object=deal&record=2").json()["items"]
    assert [r["summary"] for r in rows] == ["Closed Bàn"]
    wait_for(lambda: "Closed Bàn" in texts(http_sink), what="the SMS of the next stage")
    assert texts(http_sink) == ["Closed Bàn"]


def test_a_reminder_follows_its_field_after_a_restart(daemon: Daemon, http_sink: HttpSink) -> None:
    daemon.start()
    far = {"title": "Ghế", "phone": "0901234567", "visit_at": "2030-01-01T10:00:00+00:00"}
    assert daemon.put("deal", "3", far, headers=WAIT).status_code == 200
    assert rule_runs(daemon, "3")["rule:sales/new/remind"] == ("waiting", "until {{ record.visit_at }} -2h")
    assert daemon.terminate() == 0
    daemon.start()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
    assert daemon.patch("deal", "3", {"visit_at": soon}, headers=WAIT).status_code == 200
    # two hours before a visit one hour away has passed while the visit is ahead: it goes at once
    assert rule_runs(daemon, "3")["rule:sales/new/remind"][0] == "done"
    wait_for(lambda: "Visit Ghế" in texts(http_sink), what="the reminder moved to now")
