"""Webhook sources as the real senders post: a running daemon receives Bitrix24's urlencoded event
(PHP-style keys, the application token in the body) and Zalo OA's signed JSON event.

The bodies follow the vendors' documented requests: Bitrix24's ONCRMDEALUPDATE handler gets
``event``, ``event_handler_id``, ``data[FIELDS][ID]``, ``ts`` and ``auth[...]`` (with
``application_token``) as a form post; Zalo OA signs ``X-ZEvent-Signature: mac=<sha256 hex of
app_id + body + timestamp + OA secret key>`` with the body's ``timestamp`` in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from flowctl.testing import Daemon, wait_for
from tests.daemon.configs import deal_config

B24_TOKEN = "51856fefc120afa4b628cc82d3935cce"
ZALO_APP_ID = "360846524940903967"
ZALO_SECRET = "oa-secret-key-for-tests"

SOURCES = """\
apiVersion: flowctl/v1
kind: Source
metadata: {name: bitrix24}
spec:
  path: /hooks/bitrix24
  auth: {type: body_token, field: auth.application_token, secret: "${B24_APP_TOKEN}"}
  map:
    object: deal
    id: "b24-{{ payload.data.FIELDS.ID }}"
    event_id: "{{ payload.event }}-{{ payload.data.FIELDS.ID }}-{{ payload.ts }}"
    fields:
      title: "Bitrix24 deal {{ payload.data.FIELDS.ID }}"
      portal: "{{ payload.auth.domain }}"
      last_event: "{{ payload.event }}"
---
apiVersion: flowctl/v1
kind: Source
metadata: {name: zalo-oa}
spec:
  path: /hooks/zalo-oa
  auth: {type: zalo_oa, app_id: "${ZALO_APP_ID}", secret: "${ZALO_OA_SECRET}"}
  map:
    object: deal
    id: "zalo-{{ payload.sender.id }}"
    event_id: "{{ payload.message.msg_id }}"
    fields: {title: "{{ payload.message.text }}", last_event: "{{ payload.event_name }}"}
"""


def bitrix24_form(deal_id: str, token: str = B24_TOKEN) -> bytes:
    """ONCRMDEALUPDATE as Bitrix24 posts it to an event handler (urlencoded, PHP-style keys)."""
    pairs = [
        ("event", "ONCRMDEALUPDATE"),
        ("event_handler_id", "201"),
        ("data[FIELDS][ID]", deal_id),
        ("ts", "1736405807"),
        ("auth[access_token]", "s6p6eclrvim6da22ft9ch94ekreb52lv"),
        ("auth[expires_in]", "3600"),
        ("auth[scope]", "crm"),
        ("auth[domain]", "noithat.bitrix24.vn"),
        ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
        ("auth[status]", "L"),
        ("auth[client_endpoint]", "https://noithat.bitrix24.vn/rest/"),
        ("auth[member_id]", "a223c6b3710f85df22e9377d6c4f7553"),
        ("auth[application_token]", token),
    ]
    return urlencode(pairs).encode()


def zalo_event(sender: str, text: str, msg_id: str, stamp_ms: int) -> bytes:
    """A ``user_send_text`` event as Zalo OA posts it (JSON, timestamp in milliseconds as text)."""
    event = {
        "app_id": ZALO_APP_ID,
        "sender": {"id": sender},
        "user_id_by_app": "552177279717587730",
        "recipient": {"id": "388613280878808645"},
        "event_name": "user_send_text",
        "message": {"text": text, "msg_id": msg_id},
        "timestamp": str(stamp_ms),
    }
    return json.dumps(event, ensure_ascii=False).encode()


def zalo_mac(body: bytes, stamp_ms: int, secret: str = ZALO_SECRET) -> str:
    return "mac=" + hashlib.sha256(ZALO_APP_ID.encode() + body + str(stamp_ms).encode() + secret.encode()).hexdigest()


def stored(database: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("select source, record_id from changes order by seq").fetchall()


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    folder = tmp_path / "config"
    folder.mkdir()
    fields = "    portal: string\n    last_event: string\n"
    (folder / "flowctl.yaml").write_text(deal_config(fields, then=SOURCES))
    env = {"B24_APP_TOKEN": B24_TOKEN, "ZALO_APP_ID": ZALO_APP_ID, "ZALO_OA_SECRET": ZALO_SECRET}
    return Daemon(folder, f"sqlite:///{tmp_path / 'hooks.db'}", env=env)


def database(daemon: Daemon) -> Path:
    return Path(daemon.database.removeprefix("sqlite:///"))


def test_a_bitrix24_form_post_becomes_a_record_and_a_wrong_token_stores_nothing(daemon: Daemon) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with daemon:
        answer = httpx.post(f"{daemon.url}/hooks/bitrix24", content=bitrix24_form("759"), headers=form, timeout=10)
        assert answer.status_code == 202, answer.text

        def record() -> dict[str, object] | None:
            got = daemon.get("/v1/records/deal/b24-759")
            return got.json() if got.status_code == 200 and not got.json().get("pending") else None

        wait_for(lambda: record() is not None, what="the Bitrix24 deal", detail=daemon.output)
        fields = (record() or {})["fields"]
        expected = {"title": "Bitrix24 deal 759", "portal": "noithat.bitrix24.vn", "last_event": "ONCRMDEALUPDATE"}
        assert fields == expected

        forged = bitrix24_form("760", token="0" * 32)
        refused = httpx.post(f"{daemon.url}/hooks/bitrix24", content=forged, headers=form, timeout=10)
        assert refused.status_code == 401
        message = refused.json()["error"]["message"]
        assert "auth.application_token" in message and B24_TOKEN not in message and "0" * 32 not in message
        missing = httpx.post(f"{daemon.url}/hooks/bitrix24", content=b"event=X&data[FIELDS][ID]=761", headers=form)
        assert missing.status_code == 401

        again = httpx.post(f"{daemon.url}/hooks/bitrix24", content=bitrix24_form("759"), headers=form, timeout=10)
        assert again.status_code == 202 and again.json()["duplicate"] is True  # Bitrix24 redelivers
        assert daemon.terminate() == 0
    assert stored(database(daemon)) == [("bitrix24", "b24-759")]


def test_a_zalo_oa_event_with_a_valid_mac_is_accepted_a_forged_or_stale_one_refused(daemon: Daemon) -> None:
    def post(body: bytes, signature: str) -> httpx.Response:
        headers = {"Content-Type": "application/json", "X-ZEvent-Signature": signature}
        return httpx.post(f"{daemon.url}/hooks/zalo-oa", content=body, headers=headers, timeout=10)

    with daemon:
        now_ms = int(time.time() * 1000)
        body = zalo_event("246845883529197922", "Tôi muốn đặt sofa", "m-1", now_ms)
        accepted = post(body, zalo_mac(body, now_ms))
        assert accepted.status_code == 202, accepted.text

        forged = zalo_event("246845883529197922", "Hủy đơn", "m-2", now_ms)
        assert post(forged, zalo_mac(forged, now_ms, secret="guessed")).status_code == 401
        assert post(forged, zalo_mac(body, now_ms)).status_code == 401  # a mac of another body
        assert post(forged, "").status_code == 401

        stale_ms = now_ms - 10 * 60 * 1000  # signed correctly, ten minutes old: a replay
        stale = zalo_event("246845883529197922", "Hủy đơn", "m-3", stale_ms)
        refused = post(stale, zalo_mac(stale, stale_ms))
        assert refused.status_code == 401 and "5 minutes" in refused.json()["error"]["message"]
        assert ZALO_SECRET not in refused.text

        wait_for(
            lambda: daemon.get("/v1/records/deal/zalo-246845883529197922").status_code == 200,
            what="the Zalo OA record",
            detail=daemon.output,
        )
        record = daemon.get("/v1/records/deal/zalo-246845883529197922").json()
        assert record["fields"]["title"] == "Tôi muốn đặt sofa"
        assert daemon.terminate() == 0
    assert stored(database(daemon)) == [("zalo-oa", "zalo-246845883529197922")]
