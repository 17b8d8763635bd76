"""``flowctl test`` scenarios with links: seeded linked records, created records in the effects,
the linked record changed, and a link to nothing refused like the API refuses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flowctl.spec.config import load_bundle
from flowctl.testing import write_config
from tests.engine.conftest import CONFIG
from tests.links.support import FILES

SCENARIO = """
apiVersion: flowctl/v1
kind: Test
metadata: {name: a won deal bills the linked customer}
spec:
  now: "2026-03-02T09:00:00+07:00"
  records:
    - {object: customer, id: c1, fields: {full_name: Trần Thị Mai, phone: "0912345678", vip: true}}
  steps:
    - create: {object: deal, id: d1, stage: new, fields: {title: Sofa, amount: 100, customer: c1, owner: lan}}
    - expect:
        effects:
          - {action: send_sms, to: "0912345678", text: Chao Tran Thi Mai}
    - move: {object: deal, id: d1, stage: won}
    - expect:
        effects:
          - {action: create_record, created_object: invoice, set: {deal: d1, amount: 100}}
          - {action: notify, to: hoa, text: "Invoice for deal d1: 100"}
          - {action: update_fields, target: customer, target_id: c1, set: {last_purchase: Sofa}}
          - {action: create_task, title: Call Trần Thị Mai about Sofa}
        record: {object: customer, id: c1, fields: {last_purchase: Sofa}}
---
apiVersion: flowctl/v1
kind: Test
metadata: {name: a link to nothing is refused}
spec:
  now: "2026-03-02T09:00:00+07:00"
  steps:
    - create: {object: deal, id: d2, stage: new, fields: {title: Sofa, customer: c404}}
    - expect: {refused: "field 'customer' links to customer c404"}
"""


def test_flowctl_test_plays_the_link_scenarios(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"flowctl.yaml": CONFIG, **FILES, "tests/links.yaml": SCENARIO})
    assert not load_bundle(config).errors
    done = subprocess.run(
        [sys.executable, "-m", "flowctl", "test", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout


EVENT = """
records: [{object: customer, id: c1, fields: {full_name: Mai, phone: "0912345678", vip: true}}]
steps:
  - create: {object: deal, id: d1, stage: new, fields: {title: Sofa, amount: 100, customer: c1}}
  - move: {object: deal, id: d1, stage: won}
"""


def test_dry_run_shows_the_linked_records_and_the_created_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", {"flowctl.yaml": CONFIG, **FILES})
    event = tmp_path / "event.yaml"
    event.write_text(EVENT, encoding="utf-8")
    command = [sys.executable, "-m", "flowctl", "dry-run", str(config), "--event", str(event)]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "condition linked.customer.vip [linked.customer.vip=true] → True" in text
    assert "linked records the automations read:" in text
    assert '  deal d1.customer → customer c1: {"full_name": "Mai"' in text
    assert 'effect create_record [created_object="invoice"' in text
    data = json.loads(subprocess.run([*command, "--format", "json"], capture_output=True, text=True).stdout)
    (link,) = data["linked"]
    assert (link["linked_object"], link["linked_id"], link["fields"]["last_purchase"]) == ("customer", "c1", "Sofa")
