"""A webhook Source that fetches the full record, in a running daemon against a local portal that
follows Bitrix24's REST contract: an event carrying only the deal's id is accepted (202) and
becomes the full record; a fetch rate limited and timed out, then answered, stores it once; a
fetch that keeps failing stores nothing (never a half-empty record) and waits dead-lettered in the
outbox until an operator retries it; a deal the portal does not have is dead-lettered at once, and
nothing logged or stored names the webhook's token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

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


def query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).fetchall())
    finally:
        engine.dispose()


def changes_of(url: str, record_id: str) -> list[dict[str, Any]]:
    """The fields of each change stored for deal ``record_id``, in order."""
    rows = query(url, "select fields from changes where record_id = :id order by seq", id=record_id)
    return [json.loads(f) if isinstance(f, str) else f for (f,) in rows]


def fetches(url: str) -> dict[str, tuple[int, str, int, str]]:
    """The pending fetches in the outbox by record id: (row id, status, attempts, last error)."""
    rows = query(url, "select record_id, id, status, attempts, last_error from outbox where action = 'fetch'")
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'b24.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_an_event_with_only_the_id_becomes_the_full_record_and_a_failed_fetch_never_a_half_one(
    tmp_path: Path, portal: Portal, database: str
) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    fields = "    amount: money\n    stage_code: string\n"
    (folder / "flowctl.yaml").write_text(deal_config(fields, then=SOURCE))
    daemon = Daemon(folder, database, env={"B24_WEBHOOK_URL": portal.webhook})
    hook = f"{daemon.url}/hooks/bitrix24"

    def send(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(hook, json=body, timeout=30)

    def record(deal_id: str) -> dict[str, Any] | None:
        answer = daemon.get(f"/v1/records/deal/{deal_id}")
        return answer.json()["fields"] if answer.status_code == 200 else None

    def status(deal_id: str) -> str:
        return fetches(database).get(deal_id, (0, "", 0, ""))[1]

    with daemon:
        portal.deals["42"] = deal("Sofa for Lan", "15000000.00")
        accepted = send(event("42"))
        assert accepted.status_code == 202 and accepted.json()["fetches"][0]["duplicate"] is False
        wait_for(lambda: record("42") is not None, what="deal 42", detail=daemon.output)
        assert record("42") == {"title": "Sofa for Lan", "amount": 15000000, "stage_code": "NEW"}
        assert status("42") == "sent"

        # rate limited, then too slow, then the answer: stored once, whole
        portal.deals["43"] = deal("Bed for Minh", "9000000.00")
        portal.trouble = ["limit", "slow"]
        assert send(event("43")).status_code == 202
        wait_for(lambda: record("43") is not None, what="deal 43", detail=lambda: fetches(database))
        assert record("43") == {"title": "Bed for Minh", "amount": 9000000, "stage_code": "NEW"}
        assert len(changes_of(database, "43")) == 1 and fetches(database)["43"][1:3] == ("sent", 3)
        assert send(event("43")).json()["duplicate"] is True  # Bitrix24 sending it again fetches nothing

        # every attempt fails (retries: 3): dead-lettered, nothing stored; an operator's retry stores it
        portal.deals["44"] = deal("Wardrobe for Hoa", "21000000.00")
        portal.trouble = ["limit", "down", "limit", "limit"]
        assert send(event("44")).status_code == 202
        wait_for(lambda: status("44") == "dead", what="the fetch of 44 dead-lettered", detail=lambda: fetches(database))
        row_id, _, attempts, error = fetches(database)["44"]
        assert attempts == 4 and "QUERY_LIMIT_EXCEEDED" in error
        assert record("44") is None and changes_of(database, "44") == []
        assert daemon.post(f"/v1/outbox/{row_id}/retry").status_code == 200
        wait_for(lambda: record("44") is not None, what="deal 44 after the retry", detail=lambda: fetches(database))
        assert record("44") == {"title": "Wardrobe for Hoa", "amount": 21000000, "stage_code": "NEW"}
        assert len(changes_of(database, "44")) == 1
        assert changes_of(database, "44")[0]["title"] == "Wardrobe for Hoa"

        # a deal the portal does not have: dead at the first answer, nothing stored
        assert send(event("45")).status_code == 202
        wait_for(lambda: status("45") == "dead", what="the fetch of 45 dead-lettered", detail=lambda: fetches(database))
        assert fetches(database)["45"][2] == 1 and "Not found" in fetches(database)["45"][3]
        assert record("45") is None and changes_of(database, "45") == []
        assert daemon.terminate() == 0

    assert TOKEN not in daemon.output()
    assert all(TOKEN not in error for *_, error in fetches(database).values())


def test_events_wait_held_while_the_webhook_url_is_unset_and_are_fetched_after_a_restart_with_it(
    tmp_path: Path, portal: Portal
) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    fields = "    amount: money\n    stage_code: string\n"
    (folder / "flowctl.yaml").write_text(deal_config(fields, then=SOURCE))
    database = f"sqlite:///{tmp_path / 'held.db'}"
    portal.deals["50"] = deal("Table for An", "3000000.00")
    daemon = Daemon(folder, database, env={"B24_WEBHOOK_URL": ""})
    with daemon:
        assert httpx.post(f"{daemon.url}/hooks/bitrix24", json=event("50"), timeout=30).status_code == 202
        wait_for(lambda: fetches(database)["50"][1] == "held", what="the fetch held", detail=daemon.output)
        assert "B24_WEBHOOK_URL" in fetches(database)["50"][3] and portal.calls == []
        assert daemon.terminate() == 0
    daemon.env["B24_WEBHOOK_URL"] = portal.webhook
    with daemon.start():
        wait_for(lambda: fetches(database)["50"][1] == "sent", what="the held fetch sent", detail=daemon.output)
        answer = daemon.get("/v1/records/deal/50").json()
        assert answer["fields"] == {"title": "Table for An", "amount": 3000000, "stage_code": "NEW"}
        assert daemon.terminate() == 0
