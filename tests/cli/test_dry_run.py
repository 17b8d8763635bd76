"""``flowctl dry-run``: the trace as a tree, or JSON; nothing is sent."""

from __future__ import annotations

import json

from tests.cli.conftest import ROOT, invoke
from tests.engine.conftest import make_bundle
from tests.engine.design_example import FILES as DESIGN

FURNITURE = ROOT / "examples" / "furniture-store"
EVENT = """
now: "2026-04-06T09:00:00+07:00"
records: [{object: deal, id: "7", stage: documents, fields: {title: Sofa, client_name: Mai, email: mai@example.com,
           amount: 20000000, paid_amount: 0, owner: lan, contract_no: HD-7, delivery_address: "45 Nguyễn Huệ"}}]
steps:
  - update: {object: deal, id: "7", fields: {paid_amount: 12000000}}
"""


def test_text_shows_the_runs_as_trees_and_the_effects(tmp_path) -> None:
    event = tmp_path / "paid.yaml"
    event.write_text(EVENT, encoding="utf-8")
    result = invoke("dry-run", FURNITURE, "--event", event)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "dry run from 2026-04-06T09:00:00+07:00 to 2026-04-06T09:00:00+07:00: nothing is sent"
    assert lines[1].startswith("rule:furniture-sales/prepayment/warehouse prepares the order on deal 7 [done]")
    assert lines[2] == "  ├─ 2026-04-06 09:00:00 → warehouse prepares the order: enter entered stage prepayment"
    assert "effects (1):" in lines
    assert any(line.startswith("  create_task via log for deal 7: ") for line in lines)


CREATE = """
now: "2026-04-06T09:00:00+07:00"
create: {object: deal, id: "8", stage: documents, fields: {title: Sofa, client_name: Mai, amount: 100,
         email: mai@example.com,
         owner: lan, contract_no: HD-8, delivery_address: "45 Nguyễn Huệ"}}
"""


def test_json_for_machines_with_advance(tmp_path) -> None:
    event = tmp_path / "create.yaml"
    event.write_text(CREATE, encoding="utf-8")
    result = invoke("dry-run", FURNITURE, "--event", event, "--format", "json", "--advance", "1d1h")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["now"] == "2026-04-07T10:00:00+07:00"
    assert [e["action"] for e in data["effects"]] == ["create_document", "send_email", "notify"]
    assert data["effects"][2]["to"] == "hoa"  # the documents stage's nudge, a day later
    assert data["effects"][1]["attachments"][0]["filename"] == "invoice.pdf"
    assert data["problems"] == [] and data["errors"] == []
    assert {r["status"] for r in data["runs"]} == {"done"}
    assert all({"at", "node", "kind"} <= set(entry) for r in data["runs"] for entry in r["trace"])


def test_a_single_step_file_and_now_option(tmp_path) -> None:
    make_bundle(tmp_path / "cfg", DESIGN, base=False)
    event = tmp_path / "e.json"
    event.write_text(json.dumps({"create": {"object": "user", "id": "1", "fields": {"email": "a@example.com"}}}))
    result = invoke(
        "dry-run", tmp_path / "cfg", "--event", event, "--now", "2026-05-01T08:00:00+07:00", "--format", "json"
    )
    assert result.exit_code == 0
    assert json.loads(result.output)["now"] == "2026-05-01T08:00:00+07:00"


def test_a_refused_step_is_reported(tmp_path) -> None:
    event = tmp_path / "move.yaml"
    event.write_text(
        EVENT.replace(
            'update: {object: deal, id: "7", fields: {paid_amount: 12000000}}',
            'move: {object: deal, id: "7", stage: lost}',
        ),
        encoding="utf-8",
    )
    result = invoke("dry-run", FURNITURE, "--event", event)
    assert result.exit_code == 1  # a refused event is a failed dry run (CI can tell)
    assert "move refused: cannot move deal 7 into stage 'lost': required field lost_reason is empty" in result.output
    as_json = invoke("dry-run", FURNITURE, "--event", event, "--format", "json")
    assert as_json.exit_code == 1
    assert "required field lost_reason is empty" in json.loads(as_json.output)["errors"][0]


def test_a_bad_event_file_exits_1(tmp_path) -> None:
    event = tmp_path / "bad.yaml"
    event.write_text("steps:\n  - explode: {}\n", encoding="utf-8")
    result = invoke("dry-run", FURNITURE, "--event", event)
    assert result.exit_code == 1
    assert "bad.yaml:" in result.output


def test_a_bad_now_is_a_usage_error(tmp_path) -> None:
    event = tmp_path / "paid.yaml"
    event.write_text(EVENT, encoding="utf-8")
    result = invoke("dry-run", FURNITURE, "--event", event, "--now", "yesterday")
    assert result.exit_code == 2
