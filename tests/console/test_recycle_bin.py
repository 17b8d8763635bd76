"""The recycle bin page lists an object type's deleted records with when each was deleted and
when it will be forgotten; an operator restores one there (the worker runs the restore as for the
API), a viewer only looks."""

from __future__ import annotations

import re

from .conftest import MakeConsole, Served
from .support import OPERATOR, TOKEN, VIEWER


def delete(console: Served, id: str) -> None:
    answer = console.client.delete(f"/v1/records/deal/{id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 202, answer.text
    console.svc.process()


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)">', html)


def test_the_recycle_bin_lists_deleted_records_and_an_operator_restores_one(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    for id, title in (("1", "Bộ sofa"), ("2", "Bàn ăn"), ("3", "Tủ áo")):
        console.put(id, {"title": title, "amount": 100}, stage="proposal")
    delete(console, "1")
    delete(console, "2")
    console.sign_in(OPERATOR)
    page = console.client.get("/ui/recycle-bin?object=deal").text
    assert rows(page) == ["1", "2"]  # not the live record 3
    assert "Bộ sofa" in page and "2026-" in page  # its title and when it was deleted
    assert "stay here for 30 days" in page  # the Config's retention (the default)

    csrf = console.csrf("/ui/recycle-bin?object=deal")
    answer = console.client.post("/ui/recycle-bin/deal/1/restore", data={"csrf": csrf})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/recycle-bin?object=deal&done=restored%3A1"
    again = console.client.post("/ui/recycle-bin/deal/1/restore", data={"csrf": csrf})  # a double click
    assert again.status_code == 409 and "is not deleted" in again.text  # the first restore is queued
    console.svc.process()
    record = console.svc.store.record("deal", "1")
    assert record is not None and not record.deleted
    assert (record.stage, record.fields["title"], record.version) == ("proposal", "Bộ sofa", 3)  # restored once
    after = console.client.get(answer.headers["location"]).text
    assert "deal/1 is restored" in after and rows(after) == ["2"]
    deleted = console.client.get("/ui/records/deal/2")  # the bin links each record to its page
    assert deleted.status_code == 200 and "Bàn ăn" in deleted.text and 'id="deleted"' in deleted.text

    late = console.client.post("/ui/recycle-bin/deal/1/restore", data={"csrf": csrf})
    assert late.status_code == 409 and "is not deleted" in late.text


def test_a_viewer_sees_the_recycle_bin_but_may_not_restore(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    console.put("1", {"title": "Bộ sofa"}, stage="new")
    delete(console, "1")
    console.sign_in(VIEWER)
    page = console.client.get("/ui/recycle-bin").text  # the first object type by name: deal
    assert rows(page) == ["1"] and "/restore" not in page
    refused = console.client.post("/ui/recycle-bin/deal/1/restore", data={"csrf": console.csrf("/ui/boards")})
    assert refused.status_code == 403 and "operator" in refused.text
    forged = console.client.post("/ui/recycle-bin/deal/1/restore", data={"csrf": "forged"})
    assert forged.status_code == 403
    record = console.svc.store.record("deal", "1")
    assert record is not None and record.deleted
