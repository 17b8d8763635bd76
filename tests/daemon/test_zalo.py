"""Zalo ZNS from a running daemon: the rotated refresh token survives a restart (the restarted
daemon refreshes with the newest one, never the spent one in its environment), and a phone without
Zalo gets the SMS fallback once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowctl.testing import Daemon, wait_for
from tests.channels.zalo_server import APP_ID, FIRST_REFRESH, SECRET_KEY, ZaloServer, zalo_server
from tests.conftest import HttpSink
from tests.daemon.configs import deal_config, http_channel

ZALO = """\
apiVersion: flowctl/v1
kind: Channel
metadata: {name: zalo}
spec:
  type: zalo_zns
  app_id: "${ZALO_APP_ID}"
  secret_key: "${ZALO_SECRET_KEY}"
  refresh_token: "${ZALO_REFRESH_TOKEN}"
  url: "${ZALO_URL}/message/template"
  token_url: "${ZALO_URL}/v4/oa/access_token"
  timeout: 5s
  fallback: {channel: sms, template: sms-welcome}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: zns-welcome}
spec:
  channel: zalo
  template_id: "231564"
  template_data: {customer_name: "{{ record.title }}", code: "D{{ record.id }}"}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: sms-welcome}
spec: {channel: sms, text: "Chao {{ record.title | unaccent }}, ma D{{ record.id }}"}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: welcome}
spec:
  object: deal
  trigger: {on: created}
  start: zns
  nodes:
    zns: {type: send_sms, channel: zalo, template: zns-welcome, to: "{{ record.phone }}"}
"""


@pytest.fixture
def server() -> Iterator[ZaloServer]:
    with zalo_server() as state:
        yield state


def outbox(database: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("select key, channel, status from outbox order by id").fetchall()


def test_a_rotated_refresh_token_survives_a_restart_and_a_phone_without_zalo_gets_the_sms(
    tmp_path: Path, server: ZaloServer, http_sink: HttpSink
) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    text = deal_config("    phone: phone\n", then=http_channel("sms", f"{http_sink.url}/sms") + "---\n" + ZALO)
    (folder / "flowctl.yaml").write_text(text)
    database = tmp_path / "z.db"
    env = {
        "ZALO_APP_ID": APP_ID,
        "ZALO_SECRET_KEY": SECRET_KEY,
        "ZALO_REFRESH_TOKEN": FIRST_REFRESH,  # spent at the first refresh; stays in the environment
        "ZALO_URL": server.url,
    }
    daemon = Daemon(folder, f"sqlite:///{database}", env=env)
    with daemon:
        assert daemon.put("deal", "1", {"title": "Lan", "phone": "0912 345 678"}).status_code == 202
        wait_for(lambda: len(server.sent) == 1, what="the ZNS message", detail=daemon.output)
        assert server.sent[0]["phone"] == "84912345678"
        assert server.sent[0]["template_data"] == {"customer_name": "Lan", "code": "D1"}

        server.no_zalo.add("84987654321")
        assert daemon.put("deal", "2", {"title": "Minh", "phone": "0987654321"}).status_code == 202
        wait_for(lambda: len(http_sink.hits) == 1, what="the SMS fallback", detail=lambda: outbox(database))
        assert http_sink.hits[0].json() == {"to": "0987654321", "text": "Chao Minh, ma D2"}
        wait_for(lambda: [s for _, c, s in outbox(database) if c == "zalo"] == ["sent", "dead"], what="ZNS dead")
        assert daemon.terminate() == 0

    assert server.refreshes == [FIRST_REFRESH]
    server.expire()  # the access token the store holds no longer works: the restart must refresh
    with daemon.start():
        assert daemon.put("deal", "3", {"title": "Hoa", "phone": "+84 912 000 111"}).status_code == 202
        wait_for(lambda: len(server.sent) == 2, what="the ZNS message after the restart", detail=daemon.output)
        assert daemon.terminate() == 0
    # the restarted daemon presented the rotated token from the store, not the spent one from its env
    assert server.refreshes == [FIRST_REFRESH, "rt-1-refresh"] and server.refused == []
    assert len(http_sink.hits) == 1  # the fallback was sent once
    keys = [key for key, channel, _ in outbox(database) if channel == "sms"]
    assert len(keys) == 1 and keys[0].endswith(":fallback")
