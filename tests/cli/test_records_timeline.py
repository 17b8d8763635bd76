"""A record's notes and timeline as an operator reads them: ``add_note`` in a stage rule and a
flow, run by a real daemon, shown by ``GET /v1/records/…/timeline`` and ``flowctl records timeline``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flowctl.testing import Daemon, wait_for, write_config

CONFIG = {
    "flowctl.yaml": "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: d}\nspec: {timezone: UTC}\n",
    "objects/deal.yaml": """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string}
    amount: {type: number}
""",
    "pipelines/sales.yaml": """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: won
      final: success
      rules:
        - {name: log the win, action: add_note, text: "Thắng {{ record.title }}: {{ record.amount }} đ"}
""",
    "flows/welcome.yaml": """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: welcome}
spec:
  object: deal
  trigger: {on: created}
  start: note
  nodes:
    note: {type: add_note, text: "Khách mới {{ record.title }}"}
""",
}


def flowctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowctl", *args], capture_output=True, text=True, check=False)


def test_notes_written_by_a_rule_and_a_flow_show_on_the_timeline_in_the_api_and_the_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", CONFIG)
    with Daemon(config, f"sqlite:///{tmp_path / 'flowctl.db'}") as daemon:
        assert daemon.put("deal", "7", {"title": "Sofa", "amount": 15000000}, stage="new").status_code == 202
        wait_for(lambda: len(daemon.get("/v1/records/deal/7/timeline").json()["notes"]) == 1, what="the flow's note")
        assert daemon.post("/v1/records/deal/7/stage", {"stage": "won"}).status_code == 202
        wait_for(lambda: len(daemon.get("/v1/records/deal/7/timeline").json()["notes"]) == 2, what="the rule's note")
        timeline = daemon.get("/v1/records/deal/7/timeline").json()
        database = daemon.database
    assert [n["text"] for n in timeline["notes"]] == ["Thắng Sofa: 15000000 đ", "Khách mới Sofa"]  # newest first
    runs = {r["id"]: r["automation"] for r in timeline["runs"]}
    assert [runs[n["run_id"]] for n in timeline["notes"]] == ["rule:sales/won/log the win", "flow:welcome"]
    assert timeline["messages"] == []  # a note is not a message: nothing went to a channel

    shown = flowctl("records", "timeline", "deal", "7", str(config), "--db", database)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "deal/7 [won]"
    notes = lines[lines.index("notes:") + 1 : lines.index("runs:")]
    assert [line.split("  ")[2] for line in notes] == ["Thắng Sofa: 15000000 đ", "Khách mới Sofa"]
    stages = lines[lines.index("stages:") + 1 : lines.index("notes:")]
    assert [line.split("  ")[-1] for line in stages] == ["sales/new", "sales/won"]

    as_json = flowctl("records", "timeline", "deal", "7", str(config), "--db", database, "--format", "json")
    assert json.loads(as_json.stdout)["notes"] == timeline["notes"]

    missing = flowctl("records", "timeline", "deal", "8", str(config), "--db", database)
    assert missing.returncode == 1 and "deal 8 does not exist" in missing.stderr
