"""Idempotency keys against the real daemon: a webhook event id names one change however often it
comes (in one delivery or in several), and the keys of the API and of webhooks never meet.

Issue 20 found an ``Idempotency-Key`` reused with a different body refused (409) only while the
key was in the process's memory: after a restart it answered 202 ``duplicate`` and dropped the new
body. The store now keeps each keyed change's fingerprint, and the answer comes from it.

Issue 20 also found a Source with ``event_id: "{{ payload.delivery }}"`` storing ``[P, P]`` then ``P``
as three changes (three SMS), and an API write with ``Idempotency-Key: crm:evt-9`` swallowing
the later webhook event ``evt-9``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowctl.testing import Daemon as Process
from flowctl.testing import FrozenClock, write_config
from tests.reliability.conftest import Daemon, MakeDaemon

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
SECRET = "webhook-secret-7f3a"
FILES = {
    "flowctl.yaml": """
        apiVersion: flowctl/v1
        kind: Config
        metadata: {name: keys}
        spec: {timezone: UTC}
    """,
    "deal.yaml": """
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: deal}
        spec:
          fields:
            title: {type: string, required: true}
            amount: {type: money}
    """,
    "sources.yaml": """
        apiVersion: flowctl/v1
        kind: Source
        metadata: {name: pay}
        spec:
          type: webhook
          path: /hooks/pay
          secret: "${HOOK_SECRET}"
          map: {object: deal, id: "{{ payload.id }}", fields: "{{ payload.data }}",
                event_id: "{{ payload.delivery }}"}
        ---
        apiVersion: flowctl/v1
        kind: Source
        metadata: {name: batch}
        spec:
          type: webhook
          path: /hooks/batch
          secret: "${HOOK_SECRET}"
          map: {object: deal, id: "{{ payload.id }}", fields: "{{ payload.data }}",
                event_id: "{{ headers['x-delivery'] }}"}
    """,
}


def start(make_daemon: MakeDaemon, **kwargs: Any) -> Daemon:
    return make_daemon(FILES, env={"HOOK_SECRET": SECRET}, clock=FrozenClock(T0), **kwargs)


def deliver(daemon: Daemon, path: str, payload: Any, **headers: str) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = daemon.client.post(
        path, content=body, headers={"Content-Type": "application/json", "X-Signature": signature, **headers}
    )
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def keys(daemon: Daemon) -> list[str]:
    return [change.idempotency_key for change in daemon.store.changes_after(0, limit=1000)]


def item(delivery: str, id: int = 1, title: str = "Sofa") -> dict[str, Any]:
    return {"id": id, "delivery": delivery, "data": {"title": title, "amount": 1500}}


def test_an_event_repeated_inside_one_delivery_and_then_alone_is_stored_once(make_daemon: MakeDaemon) -> None:
    daemon = start(make_daemon)
    paid = item("evt-1")

    first = deliver(daemon, "/hooks/pay", [paid, paid])
    again = deliver(daemon, "/hooks/pay", paid)

    assert keys(daemon) == ["pay:evt-1"]
    assert len(first["changes"]) == 1 and not first["duplicate"]
    assert again["duplicate"] is True
    assert again["changes"][0]["seq"] == first["changes"][0]["seq"]


def test_a_repeat_inside_a_delivery_does_not_rekey_the_other_items(make_daemon: MakeDaemon) -> None:
    daemon = start(make_daemon)
    b, a = item("evt-b", id=2, title="Bed"), item("evt-a", id=1)

    deliver(daemon, "/hooks/pay", [b, a, a])
    later = deliver(daemon, "/hooks/pay", b)

    assert sorted(keys(daemon)) == ["pay:evt-a", "pay:evt-b"]
    assert later["duplicate"] is True


def test_different_items_under_one_delivery_id_are_all_stored_and_a_redelivery_stores_nothing(
    make_daemon: MakeDaemon,
) -> None:
    """An event id from a header names the whole delivery: its distinct items are told apart by
    their order, so the same delivery sent again is still a repeat; an identical item is dropped."""
    daemon = start(make_daemon)
    a, b = item("", id=1), item("", id=2, title="Bed")

    deliver(daemon, "/hooks/batch", [a, b, a], **{"X-Delivery": "D-1"})
    again = deliver(daemon, "/hooks/batch", [a, b], **{"X-Delivery": "D-1"})

    assert keys(daemon) == ["batch:D-1:0", "batch:D-1:1"]
    assert again["duplicate"] is True


def test_an_api_idempotency_key_does_not_swallow_a_webhook_event(make_daemon: MakeDaemon) -> None:
    daemon = start(make_daemon)
    api = daemon.client.put(
        "/v1/records/deal/9", json={"fields": {"title": "Desk"}}, headers={"Idempotency-Key": "pay:evt-9"}
    )
    assert api.status_code == 202, api.text

    hook = deliver(daemon, "/hooks/pay", item("evt-9", id=9))

    assert hook["duplicate"] is False
    assert len(keys(daemon)) == 2
    repeat = daemon.client.put(
        "/v1/records/deal/9", json={"fields": {"title": "Desk"}}, headers={"Idempotency-Key": "pay:evt-9"}
    )
    assert repeat.json() == {**api.json(), "duplicate": True}


# --------------------------------------------------------------------------------------------
# an Idempotency-Key reused with a different body, across a restart of the real daemon


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def process(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Process]:
    folder = write_config(tmp_path / "config", {name: FILES[name] for name in ("flowctl.yaml", "deal.yaml")})
    url = f"sqlite:///{tmp_path / 'flowctl.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    daemon = Process(folder, url)
    try:
        yield daemon.start()
    finally:
        daemon.stop_quietly()


def put(daemon: Process, title: str, key: str = "order-7") -> httpx.Response:
    return daemon.put("deal", "7", {"title": title}, headers={"Idempotency-Key": key})


def test_a_key_reused_with_another_body_is_refused_after_a_restart(process: Process) -> None:
    first = put(process, "Sofa")
    assert first.status_code == 202, first.text
    assert process.terminate() == 0
    process.start()

    other = put(process, "Bed")
    same = put(process, "Sofa")

    assert other.status_code == 409, other.text
    assert "order-7" in other.json()["error"]["message"]
    assert same.status_code == 202 and same.json() == {**first.json(), "duplicate": True}
    record = httpx.get(f"{process.url}/v1/records/deal/7", timeout=30).json()
    assert record["fields"]["title"] == "Sofa"
