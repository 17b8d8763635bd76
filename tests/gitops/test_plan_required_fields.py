"""Edits to an occupied stage (issue 13, item 15): a stage that holds records and gains a required
field (its ``fields:``), or an object field that becomes ``required``, is refused by plan and
apply while records lack the field (how many, and the first ids); ``--force`` deploys anyway."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.gitops.conftest import BASE, NOW, Live, invoke, write

PlanJson = Callable[..., tuple[int, dict[str, Any]]]

DOCUMENTS_NEEDS_PHONE = BASE["pipelines/sales.yaml"].replace(
    "    - id: documents\n", "    - id: documents\n      fields: [phone]\n"
)


def apply(config: Path, live: Live, *extra: Any) -> Any:
    return invoke("apply", config, "--db", live.url, "--now", NOW.isoformat(), *extra)


def refusals(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in plan["findings"] if f["severity"] == "refuse"]


def _occupied(config: Path, live: Live) -> None:
    assert apply(config, live).exit_code == 0
    for i in range(7):
        phone = {"phone": "0901234567"} if i in (2, 5) else {}
        live.put(f"c{i}", stage="new", full_name=f"Khach {i}", **phone)
        live.move(f"c{i}", "documents")
    live.put("c9", stage="new", full_name="Elsewhere")  # not in the stage: not counted


def test_a_required_field_added_to_an_occupied_stage_is_refused(config: Path, live: Live, plan_json: PlanJson) -> None:
    _occupied(config, live)
    before = live.store.current_version()
    write(config, {"pipelines/sales.yaml": DOCUMENTS_NEEDS_PHONE})

    code, plan = plan_json(config, "--db", live.url)

    assert code == 1 and plan["status"] == "refused"
    (finding,) = refusals(plan)
    assert finding["code"] == "required-field-missing"
    assert (finding["pipeline"], finding["stage"], finding["field"], finding["records"]) == (
        "sales",
        "documents",
        "phone",
        5,
    )
    assert finding["sample"] == ["c0", "c1", "c3", "c4", "c6"]
    assert "stage 'documents' of pipeline 'sales' now requires field 'phone'" in finding["message"]
    assert "5 contact records in it lack it (c0, c1, c3, c4, c6)" in finding["message"]
    text = invoke("plan", config, "--db", live.url, "--now", NOW.isoformat()).output
    assert "5 contact records in it lack it" in text and "--force" in text
    result = apply(config, live)
    assert result.exit_code == 1 and "REFUSED" in result.output
    assert live.store.current_version() == before  # nothing applied


def test_force_deploys_it_with_a_warning(config: Path, live: Live, plan_json: PlanJson) -> None:
    _occupied(config, live)
    write(config, {"pipelines/sales.yaml": DOCUMENTS_NEEDS_PHONE})
    code, plan = plan_json(config, "--db", live.url, "--force")
    assert code == 2
    (finding,) = [f for f in plan["findings"] if f["code"] == "required-field-missing"]
    assert finding["severity"] == "warn" and finding["records"] == 5
    assert apply(config, live, "--force").exit_code == 0


def test_no_finding_when_every_record_has_it_or_the_stage_is_empty(
    config: Path, live: Live, plan_json: PlanJson
) -> None:
    assert apply(config, live).exit_code == 0
    live.put("c1", stage="new", full_name="Lan", phone="0901234567")
    live.move("c1", "documents")
    live.put("c2", stage="new", full_name="Minh")  # in 'new', which gains nothing
    write(config, {"pipelines/sales.yaml": DOCUMENTS_NEEDS_PHONE})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 2 and plan["findings"] == []


def test_an_object_field_that_becomes_required(config: Path, live: Live, plan_json: PlanJson) -> None:
    assert apply(config, live).exit_code == 0
    live.put("c1", full_name="Lan")
    live.put("c2", full_name="Minh", phone="0901234567")
    contact = BASE["objects/contact.yaml"].replace("phone: {type: phone}", "phone: {type: phone, required: true}")
    write(config, {"objects/contact.yaml": contact})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 1
    (finding,) = refusals(plan)
    assert (finding["code"], finding["object"], finding["field"], finding["records"], finding["sample"]) == (
        "required-field-missing",
        "contact",
        "phone",
        1,
        ["c1"],
    )
    assert "field 'phone' of 'contact' becomes required, but 1 contact record lacks it (c1)" in finding["message"]
