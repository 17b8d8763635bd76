"""A webhook Source that fetches the full record, in a running daemon against a local portal that
follows Bitrix24's REST contract: an event carrying only the deal's id becomes the full record; a
fetch that fails and then succeeds stores it once; a fetch that keeps failing answers 503 and
stores nothing (never a half-empty record), and the re-sent event then stores it; a deal the
portal does not have is refused (422) and logged without the webhook's token."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowctl.testing import Daemon, wait_for
from tests.channels.b24_rest_server import TOKEN, Portal, b24_portal
from tests.daemon.configs import deal_config

SOURCE = """\
apiVersion: flowctl/v1
kind: Source
metadata: {name: bitrix24-deals}
spec:
  type: webhook
  path: /hooks/bitrix24
  auth: none
  fetch:
    url: "${B24_WEBHOOK_URL}crm.deal.get.json"
    params: {id: "{{ payload.data.FIELDS.ID }}"}
    timeout: 2s
    retries: 3
  map:
    object: deal
    id: "{{ fetched.result.ID }}"
    event_id: "{{ payload.event }}-{{ payload.data.FIELDS.ID }}-{{ payload.ts }}"
    fields:
      title: "{{ fetched.result.TITLE }}"
      amount: "{{ fetched.result.OPPORTUNITY | float }}"
      stage_code: "{{ fetched.result.STAGE_ID }}"
"""


def deal(title: str, amount: str) -> dict[str, Any]:
    return {"TITLE": title, "OPPORTUNITY": amount, "CURRENCY_ID": "VND", "STAGE_ID": "NEW", "COMMENTS": ""}


def event(deal_id: str, ts: str = "1733300000") -> dict[str, Any]:
    """What Bitrix24 says about a deal: its id and nothing else (here as JSON)."""
    return {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": deal_id}}, "ts": ts}


@pytest.fixture
def portal() -> Iterator[Portal]:
    with b24_portal() as state:
        state.slow_seconds = 4.0
        yield state


def changes_of(database: Path, record_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as db:
        rows = db.execute("select op, fields from changes where record_id = ? order by seq", (record_id,))
        return [(op, fields) for op, fields in rows.fetchall()]


def test_an_event_with_only_the_id_becomes_the_full_record_and_a_failed_fetch_never_a_half_one(
    tmp_path: Path, portal: Portal
) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    fields = "    amount: money\n    stage_code: string\n"
    (folder / "flowctl.yaml").write_text(deal_config(fields, then=SOURCE))
    database = tmp_path / "b24.db"
    daemon = Daemon(folder, f"sqlite:///{database}", env={"B24_WEBHOOK_URL": portal.webhook})
    hook = f"{daemon.url}/hooks/bitrix24"

    def send(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(hook, json=body, timeout=60)

    def record(deal_id: str) -> dict[str, Any] | None:
        answer = daemon.get(f"/v1/records/deal/{deal_id}")
        return answer.json()["fields"] if answer.status_code == 200 else None

    with daemon:
        portal.deals["42"] = deal("Sofa for Lan", "15000000.00")
        assert send(event("42")).status_code == 202
        wait_for(lambda: record("42") is not None, what="deal 42", detail=daemon.output)
        assert record("42") == {"title": "Sofa for Lan", "amount": 15000000, "stage_code": "NEW"}

        # rate limited, then too slow, then the answer: stored once, whole
        portal.deals["43"] = deal("Bed for Minh", "9000000.00")
        portal.trouble = ["limit", "slow"]
        calls = len(portal.calls)
        assert send(event("43")).status_code == 202
        assert len(portal.calls) - calls == 3
        wait_for(lambda: record("43") is not None, what="deal 43", detail=daemon.output)
        assert record("43") == {"title": "Bed for Minh", "amount": 9000000, "stage_code": "NEW"}
        assert len(changes_of(database, "43")) == 1

        # every attempt fails: 503, nothing stored; the re-sent event stores the full record once
        portal.deals["44"] = deal("Wardrobe for Hoa", "21000000.00")
        portal.trouble = ["limit", "down", "limit", "limit"]
        busy = send(event("44"))
        assert busy.status_code == 503 and busy.headers["Retry-After"]
        assert "QUERY_LIMIT_EXCEEDED" in busy.json()["error"]["message"]
        assert record("44") is None and changes_of(database, "44") == []
        assert send(event("44")).status_code == 202
        assert send(event("44")).status_code == 202  # Bitrix24 sending it once more changes nothing
        wait_for(lambda: record("44") is not None, what="deal 44", detail=daemon.output)
        assert record("44") == {"title": "Wardrobe for Hoa", "amount": 21000000, "stage_code": "NEW"}
        assert len(changes_of(database, "44")) == 1
        assert json.loads(changes_of(database, "44")[0][1])["title"] == "Wardrobe for Hoa"

        # a deal the portal does not have: refused for good, nothing stored, logged
        gone = send(event("45"))
        assert gone.status_code == 422 and "Not found" in gone.json()["error"]["message"]
        assert record("45") is None and changes_of(database, "45") == []
        assert daemon.terminate() == 0

    log = daemon.output()
    assert "fetching params {'id': '45'} failed for good" in log
    assert TOKEN not in log
