"""Links and create_record against a running daemon: the linked record an automation reads is
loaded before the engine runs, a link to a record that is not there is refused with a 422, and
the invoice a won deal creates appears once, also after a kill, a restart and a resent request."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowctl.testing import Daemon, wait_for, write_config
from tests.links.support import AUTOMATIONS, OBJECTS

CONFIG = """
apiVersion: flowctl/v1
kind: Config
metadata: {name: d}
spec:
  timezone: UTC
  users:
    lan: {full_name: Lan, email: lan@example.com}
    hoa: {full_name: Hoa, email: hoa@example.com}
"""

NOTE = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: note the customer}
spec:
  object: deal
  trigger: {on: created}
  start: n
  nodes:
    n: {type: add_note, text: "for {{ linked.customer.full_name }}"}
"""


def notes(daemon: Daemon, object: str, id: str) -> list[str]:
    return [n["text"] for n in daemon.get(f"/v1/records/{object}/{id}/timeline").json()["notes"]]


def invoices(daemon: Daemon) -> list[dict]:
    return daemon.get("/v1/records/invoice").json()["items"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_links_are_loaded_checked_and_a_created_record_appears_once(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    database = f"sqlite:///{tmp_path / 'flowctl.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    files = {"flowctl.yaml": CONFIG, "objects.yaml": OBJECTS, "automations.yaml": AUTOMATIONS, "note.yaml": NOTE}
    config = write_config(tmp_path / "config", files)
    with Daemon(config, database) as daemon:
        assert daemon.put("customer", "c1", {"full_name": "Trần Thị Mai", "phone": "0912345678"}).status_code == 202
        refused = daemon.put("deal", "d0", {"title": "Bàn", "customer": "c404"})
        assert refused.status_code == 422
        assert "field 'customer' links to customer c404" in refused.json()["error"]["message"]
        fields = {"title": "Sofa", "amount": 100, "customer": "c1", "owner": "lan"}
        assert daemon.put("deal", "d1", fields, stage="new").status_code == 202
        wait_for(lambda: notes(daemon, "deal", "d1") == ["for Trần Thị Mai"], what="the note with the linked name")

        key = {"Idempotency-Key": "won-d1"}
        assert daemon.post("/v1/records/deal/d1/stage", {"stage": "won"}).status_code == 202
        wait_for(lambda: len(invoices(daemon)) == 1, what="the invoice")
        (invoice,) = invoices(daemon)
        assert invoice["fields"]["deal"] == "d1" and invoice["stage"] == "draft"
        wait_for(lambda: any(invoice["id"] in n for n in notes(daemon, "deal", "d1")), what="the invoice note")
        customer = daemon.get("/v1/records/customer/c1").json()
        assert customer["fields"]["last_purchase"] == "Sofa"
        daemon.kill()
        daemon.start(timeout=60)
        # the same move again, and with a key twice: the deal is already won, nothing is created
        for _ in range(2):
            assert daemon._write("POST", "deal", "d1/stage", {"stage": "won"}, key).status_code in (200, 202)
        wait_for(lambda: daemon.get("/v1/records/deal/d1").json().get("pending") is False, what="the moves done")
        assert [i["id"] for i in invoices(daemon)] == [invoice["id"]]
