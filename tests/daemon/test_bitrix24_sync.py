"""examples/bitrix24-sync in a running daemon against a local portal: the portal's form post for a
new deal makes flowctl fetch the whole deal, run the stage's rules and write their field change,
task and note back once each; the portal's echoing ONCRMDEALUPDATE (whose crm.deal.get now returns
the written values) runs nothing: no second SMS, no second task."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from flowctl.testing import Daemon, wait_for
from tests.channels.bitrix24_server import Bitrix24Server, bitrix24_server
from tests.conftest import HttpSink

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bitrix24-sync"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"


def event(name: str, deal_id: str, ts: str) -> bytes:
    """A deal event as Bitrix24 posts it to an outbound webhook's handler (urlencoded, PHP keys)."""
    pairs = [
        ("event", name),
        ("event_handler_id", "17"),
        ("data[FIELDS][ID]", deal_id),
        ("ts", ts),
        ("auth[domain]", "noithat.bitrix24.vn"),
        ("auth[client_endpoint]", "https://noithat.bitrix24.vn/rest/"),
        ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
        ("auth[member_id]", "a223c6b3710f85df22e9377d6c4f7553"),
        ("auth[application_token]", APP_TOKEN),
    ]
    return urlencode(pairs).encode()


@pytest.fixture
def portal() -> Iterator[Bitrix24Server]:
    with bitrix24_server() as state:
        for deal_id, title, phone in (("759", "Sofa góc chữ L", "0912345678"), ("760", "Bàn ăn", "0987000111")):
            state.deals[deal_id] = {
                "TITLE": title,
                "OPPORTUNITY": "20000000.00",
                "CURRENCY_ID": "VND",
                "STAGE_ID": "NEW",
                "UF_CRM_PHONE": phone,
                "COMMENTS": "",
            }
        yield state


def post(daemon: Daemon, body: bytes) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return httpx.post(f"{daemon.url}/hooks/bitrix24", content=body, headers=headers, timeout=30).status_code


def outbox(database: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("select action, channel, status from outbox order by id").fetchall()


def echo_processed(database: Path) -> bool:
    """Whether the change the echo (``ts`` 1736405812) became has been worked through."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "select processed_at from changes where record_id = '759' and idempotency_key like '%1736405812%'"
        ).fetchall()
    return bool(rows) and all(processed is not None for (processed,) in rows)


def writes_for(portal: Bitrix24Server, deal_id: str) -> list[str]:
    """The write-back methods called about ``deal_id``, sorted."""

    def about(params: dict[str, Any]) -> str:
        fields = params.get("fields", {})
        task = "".join(fields.get("UF_CRM_TASK", [])).removeprefix("D_")
        return str(params.get("id") or fields.get("ENTITY_ID") or task)

    return sorted(method for method, params in list(portal.calls) if about(params) == deal_id)


def test_a_portal_deal_runs_the_rules_writes_back_once_and_its_echo_runs_nothing(
    tmp_path: Path, portal: Bitrix24Server, http_sink: HttpSink
) -> None:
    database = tmp_path / "sync.db"
    env = {
        "B24_WEBHOOK_URL": portal.webhook,
        "B24_APP_TOKEN": APP_TOKEN,
        "SMS_URL": f"{http_sink.url}/sms",
        "SMS_TOKEN": "sms-token",
    }
    folder = tmp_path / "bitrix24-sync"  # a copy: the daemon's log goes next to its directory
    shutil.copytree(EXAMPLE, folder)
    daemon = Daemon(folder, f"sqlite:///{database}", env=env)
    written = ["crm.deal.update", "crm.timeline.comment.add", "tasks.task.add"]
    with daemon:
        assert post(daemon, event("ONCRMDEALADD", "759", "1736405807")) == 202
        wait_for(lambda: writes_for(portal, "759") == written, what="the write-backs", detail=lambda: outbox(database))
        wait_for(lambda: len(http_sink.hits) == 1, what="the callback SMS", detail=daemon.output)
        stored = daemon.get("/v1/records/deal/759").json()
        assert stored["stage"] == "new"
        assert stored["fields"]["title"] == "Sofa góc chữ L" and stored["fields"]["phone"] == "0912345678"
        calls = dict(portal.calls)
        assert calls["crm.deal.update"] == {"id": "759", "fields": {"COMMENTS": "Đã hẹn gọi lại trong 30 phút"}}
        assert calls["tasks.task.add"]["fields"]["TITLE"] == "Gọi lại khách: Sofa góc chữ L"
        assert calls["tasks.task.add"]["fields"]["RESPONSIBLE_ID"] == "1"
        note = calls["crm.timeline.comment.add"]["fields"]
        assert note["COMMENT"] == "flowctl: đã gửi SMS hẹn gọi lại tới 0912345678"
        assert portal.deals["759"]["COMMENTS"] == "Đã hẹn gọi lại trong 30 phút"

        # the portal's echo of the write, then a new deal as a marker behind it
        assert post(daemon, event("ONCRMDEALUPDATE", "759", "1736405812")) == 202
        assert post(daemon, event("ONCRMDEALADD", "760", "1736405815")) == 202
        wait_for(lambda: echo_processed(database), what="the echo worked through", detail=lambda: outbox(database))
        wait_for(lambda: writes_for(portal, "760") == written, what="the marker's write-backs", detail=daemon.output)
        wait_for(lambda: len(http_sink.hits) == 2, what="the marker's SMS", detail=daemon.output)
        assert portal.reads.count("759") == 2  # the echo was fetched, and ran nothing
        assert daemon.get("/v1/records/deal/759").json()["fields"] == stored["fields"]
        assert daemon.terminate() == 0

    assert writes_for(portal, "759") == written  # once each
    texts = [hit.json()["text"] for hit in http_sink.hits]
    assert texts == [
        "Noi That Viet da nhan yeu cau Sofa góc chữ L. Chung toi se goi lai trong 30 phut.",
        "Noi That Viet da nhan yeu cau Bàn ăn. Chung toi se goi lai trong 30 phut.",
    ]
    assert all(status == "sent" for _, _, status in outbox(database))
