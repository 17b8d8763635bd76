"""Bitrix24 write-back from a running daemon: a deal that came from the portal gets its note, its
task and its move to won written back once each (a rate-limited call retried, nothing sent again
after a restart), and the portal's echoing "deal updated" event runs nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowctl.testing import Daemon, wait_for
from tests.channels.bitrix24_server import Bitrix24Server, bitrix24_server
from tests.conftest import HttpSink
from tests.daemon.configs import deal_config, http_channel

FIELDS = """\
    amount: money
    phone: phone
"""
WRITE_BACK = """\
  write_back:
    channel: b24
    entity: deal
    fields: {title: TITLE, amount: OPPORTUNITY}
    stages: {new: NEW, won: WON}
    users: {lan: "1"}
"""
DOCUMENTS = """\
apiVersion: flowctl/v1
kind: Channel
metadata: {name: b24}
spec: {type: bitrix24, url: "${B24_WEBHOOK_URL}", timeout: 5s}
---
apiVersion: flowctl/v1
kind: Source
metadata: {name: bitrix24}
spec:
  type: webhook
  path: /hooks/b24
  auth: none
  map:
    object: deal
    id: "{{ payload.ID }}"
    op: put
    stage: "{{ 'won' if payload.STAGE_ID == 'WON' else 'new' }}"
    fields: {title: "{{ payload.TITLE }}", amount: "{{ payload.OPPORTUNITY }}", phone: "{{ payload.PHONE }}"}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: won
      final: success
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: close}
spec:
  object: deal
  trigger: {on: created}
  start: note
  nodes:
    note: {type: add_note, text: "Paid {{ record.amount }}", next: task}
    task: {type: create_task, title: "Deliver {{ record.title }}", assignee: {user: lan}, next: won}
    won: {type: move_stage, stage: won}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: thanks}
spec:
  object: deal
  trigger: {on: updated, changed: [stage]}
  start: sms
  nodes:
    sms: {type: send_sms, channel: sms, text: "Cam on {{ record.title }}"}
"""
DEAL = {"ID": "7", "TITLE": "Sofa", "OPPORTUNITY": "5000", "PHONE": "0912345678", "STAGE_ID": "NEW"}


@pytest.fixture
def portal() -> Iterator[Bitrix24Server]:
    with bitrix24_server() as state:
        state.deals["7"] = {"TITLE": "Sofa", "STAGE_ID": "NEW"}
        state.deals["8"] = {"TITLE": "Table", "STAGE_ID": "NEW"}
        yield state


def outbox(database: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("select key, channel, status from outbox order by id").fetchall()


def hook(daemon: Daemon, payload: dict[str, Any]) -> int:
    return httpx.post(f"{daemon.url}/hooks/b24", json=payload, timeout=30).status_code


def deal_of(params: dict[str, Any]) -> str:
    """The deal a call is about: ``id``, ``fields.ENTITY_ID`` or the task's ``D_<id>`` link."""
    fields = params.get("fields", {})
    return str(params.get("id") or fields.get("ENTITY_ID") or "".join(fields.get("UF_CRM_TASK", [])).removeprefix("D_"))


def config(tmp_path: Path, sink: HttpSink) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    users = "{timezone: UTC, users: {lan: {full_name: Lan, email: lan@example.com}}}"
    text = deal_config(FIELDS, spec=users, then=http_channel("sms", f"{sink.url}/sms") + "---\n" + DOCUMENTS)
    text = text.replace("    phone: phone\n", "    phone: phone\n" + WRITE_BACK, 1)
    (folder / "flowctl.yaml").write_text(text)
    return folder


def test_a_won_deal_is_written_back_once_and_its_echo_runs_nothing(
    tmp_path: Path, portal: Bitrix24Server, http_sink: HttpSink
) -> None:
    database = tmp_path / "b24.db"
    daemon = Daemon(config(tmp_path, http_sink), f"sqlite:///{database}", env={"B24_WEBHOOK_URL": portal.webhook})
    portal.busy()  # the first call finds the portal's request bucket full
    with daemon:
        assert hook(daemon, DEAL) == 202
        wait_for(lambda: len(portal.calls) == 3, what="three write-backs", detail=lambda: outbox(database))
        wait_for(lambda: len(http_sink.hits) == 1, what="the thank-you SMS", detail=daemon.output)
        assert daemon.terminate() == 0

    assert [code for _, code in portal.refused] == ["QUERY_LIMIT_EXCEEDED"]
    calls = dict(portal.calls)
    assert calls["crm.timeline.comment.add"] == {
        "fields": {"ENTITY_ID": "7", "ENTITY_TYPE": "deal", "COMMENT": "Paid 5000"}
    }
    assert calls["tasks.task.add"]["fields"] == {"TITLE": "Deliver Sofa", "UF_CRM_TASK": ["D_7"], "RESPONSIBLE_ID": "1"}
    assert calls["crm.deal.update"] == {"id": "7", "fields": {"STAGE_ID": "WON"}}
    assert portal.deals["7"]["STAGE_ID"] == "WON"
    written = [(key, status) for key, channel, status in outbox(database) if channel == "b24"]
    assert len(written) == 3 and all(key.endswith(":wb") and status == "sent" for key, status in written)

    with daemon.start():  # a restart sends nothing again; the portal's echo of the write runs nothing
        echo = {**DEAL, "STAGE_ID": "WON"}
        assert hook(daemon, echo) == 202
        assert hook(daemon, {**DEAL, "ID": "8", "TITLE": "Table"}) == 202  # a new deal: runs, as a marker
        wait_for(lambda: len(portal.calls) == 6, what="the marker deal's write-backs", detail=lambda: outbox(database))
        wait_for(lambda: len(http_sink.hits) == 2, what="the marker deal's SMS", detail=daemon.output)
        assert daemon.terminate() == 0

    for deal in ("7", "8"):  # once each, in whatever order the retried call came back in
        assert sorted(method for method, params in portal.calls if deal_of(params) == deal) == [
            "crm.deal.update",
            "crm.timeline.comment.add",
            "tasks.task.add",
        ]
    assert [hit.json()["text"] for hit in http_sink.hits] == ["Cam on Sofa", "Cam on Table"]  # none for the echo


REPRICE = """\
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: reprice}
spec:
  object: deal
  trigger: {on: event, event: repriced}
  start: first
  nodes:
    first: {type: update_fields, set: {amount: 6000}, next: second}
    second: {type: update_fields, set: {amount: 7000}}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: tell-price}
spec:
  object: deal
  trigger: {on: updated, changed: [amount]}
  start: sms
  nodes:
    sms: {type: send_sms, channel: sms, text: "Gia {{ record.amount }}"}
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_late_echo_of_an_older_write_back_runs_nothing_and_keeps_the_newer_value(
    tmp_path: Path, portal: Bitrix24Server, http_sink: HttpSink, backend: str, request: pytest.FixtureRequest
) -> None:
    folder = config(tmp_path, http_sink)
    (folder / "flowctl.yaml").write_text((folder / "flowctl.yaml").read_text() + REPRICE)
    database = f"sqlite:///{tmp_path / 'late.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    daemon = Daemon(folder, database, env={"B24_WEBHOOK_URL": portal.webhook})
    with daemon:
        assert hook(daemon, DEAL) == 202
        wait_for(lambda: len(portal.calls) == 3, what="the won deal's write-backs", detail=daemon.output)
        assert daemon.post("/v1/events", {"event": "repriced", "object": "deal", "id": "7"}).status_code == 202
        wait_for(lambda: len(portal.calls) == 5, what="two price write-backs", detail=daemon.output)
        assert [params["fields"] for method, params in portal.calls[3:]] == [
            {"OPPORTUNITY": 6000},
            {"OPPORTUNITY": 7000},
        ]
        # the portal's event for the first write, fetched before the second landed: it says 6000
        assert hook(daemon, {**DEAL, "STAGE_ID": "WON", "OPPORTUNITY": "6000"}) == 202
        assert hook(daemon, {**DEAL, "ID": "8", "TITLE": "Table"}) == 202  # a marker behind it
        wait_for(lambda: len(portal.calls) == 8, what="the marker deal's write-backs", detail=daemon.output)
        wait_for(lambda: len(http_sink.hits) == 4, what="the marker deal's SMS", detail=daemon.output)
        assert daemon.get("/v1/records/deal/7").json()["fields"]["amount"] == 7000
        assert daemon.terminate() == 0
    texts = [hit.json()["text"] for hit in http_sink.hits]
    assert sorted(texts) == ["Cam on Sofa", "Cam on Table", "Gia 6000", "Gia 7000"]  # nothing for the late echo


def test_a_deal_the_portal_does_not_have_is_dead_lettered_not_retried(
    tmp_path: Path, portal: Bitrix24Server, http_sink: HttpSink
) -> None:
    database = tmp_path / "dead.db"
    daemon = Daemon(config(tmp_path, http_sink), f"sqlite:///{database}", env={"B24_WEBHOOK_URL": portal.webhook})
    with daemon:
        assert hook(daemon, {**DEAL, "ID": "9"}) == 202  # deleted in the portal since
        wait_for(
            lambda: sorted(s for _, c, s in outbox(database) if c == "b24") == ["dead", "sent", "sent"],
            what="the update dead-lettered",
            detail=lambda: outbox(database),
        )
        assert daemon.terminate() == 0
    assert portal.refused == [("crm.deal.update", "ERROR_CORE")]  # asked once: a permanent error
    with sqlite3.connect(database) as db:
        (error,) = db.execute("select last_error from outbox where status = 'dead'").fetchone()
    assert "crm.deal.update: ERROR_CORE: Not found" in error
