"""The recycle bin against a running daemon: a deleted record is listed apart, restored with its
fields and stage by the API or the CLI (running ``on: restored``, not ``on: created``), and
forgotten once its retention ended, at the next start."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flowctl.testing import Daemon, wait_for, write_config

CONFIG = {
    "objects/deal.yaml": """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string}
""",
    "pipelines/sales.yaml": """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: documents
    - {id: won, final: success}
""",
    "flows/created.yaml": """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: hello}
spec:
  object: deal
  trigger: {on: created}
  start: n
  nodes:
    n: {type: add_note, text: "created"}
""",
    "flows/restored.yaml": """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: welcome-back}
spec:
  object: deal
  trigger: {on: restored}
  start: n
  nodes:
    n: {type: add_note, text: "restored {{ record.title }} in {{ record.stage }}"}
""",
}


def config_with(tmp_path: Path, retention: str) -> Path:
    base = "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: d}\n"
    spec = f"spec: {{timezone: UTC, retention: {{deleted_records: {retention}}}}}\n"
    return write_config(tmp_path / "config", {**CONFIG, "flowctl.yaml": base + spec})


def flowctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowctl", *args], capture_output=True, text=True, check=False)


def notes(daemon: Daemon, id: str) -> list[str]:
    return [n["text"] for n in daemon.get(f"/v1/records/deal/{id}/timeline").json()["notes"]]


def ids(daemon: Daemon, query: str = "") -> list[str]:
    return [r["id"] for r in daemon.get(f"/v1/records/deal{query}").json()["items"]]


def test_a_deleted_record_is_listed_apart_and_restored_by_the_api_or_the_cli(tmp_path: Path) -> None:
    config = config_with(tmp_path, "30d")
    with Daemon(config, f"sqlite:///{tmp_path / 'flowctl.db'}") as daemon:
        for id in ("1", "2", "3"):
            assert daemon.put("deal", id, {"title": f"Deal {id}"}, stage="documents").status_code == 202
        wait_for(lambda: all(notes(daemon, id) == ["created"] for id in "123"), what="three created notes")
        for id in ("1", "2"):
            assert daemon.delete("deal", id).status_code == 202
        wait_for(lambda: ids(daemon, "?deleted=true") == ["1", "2"], what="two records in the recycle bin")
        assert ids(daemon) == ["3"]
        binned = daemon.get("/v1/records/deal?deleted=true").json()["items"][0]
        deleted_at = datetime.fromisoformat(binned["deleted_at"])
        assert abs(datetime.now(UTC) - deleted_at) < timedelta(minutes=5)
        assert datetime.fromisoformat(binned["purge_after"]) - deleted_at == timedelta(days=30)
        listed = flowctl("records", "list", "deal", str(config), "--db", daemon.database, "--deleted")
        assert listed.stdout.splitlines()[:3] == [
            "RECORD  STAGE      VERSION  FIELDS",
            'deal/1  documents  2        {"title": "Deal 1"}',
            'deal/2  documents  2        {"title": "Deal 2"}',
        ]

        restored = daemon.post("/v1/records/deal/1/restore")
        assert restored.status_code == 202, restored.text
        by_cli = flowctl("records", "restore", "deal", "2", str(config), "--db", daemon.database)
        assert by_cli.returncode == 0 and "restore deal/2" in by_cli.stdout, by_cli.stderr
        wait_for(lambda: ids(daemon) == ["1", "2", "3"], what="both restored")
        wait_for(lambda: notes(daemon, "2") == ["restored Deal 2 in documents", "created"], what="on: restored ran")
        assert notes(daemon, "1") == ["restored Deal 1 in documents", "created"]  # not a second "created"
        record = daemon.get("/v1/records/deal/1").json()
        assert (record["stage"], record["fields"]) == ("documents", {"title": "Deal 1"})

        live = daemon.post("/v1/records/deal/3/restore")
        assert live.status_code == 409 and "is not deleted" in live.json()["error"]["message"]
        missing = daemon.post("/v1/records/deal/9/restore")
        assert missing.status_code == 404 and "does not exist" in missing.json()["error"]["message"]
        bad = daemon.get("/v1/records/deal?deleted=yes")
        assert bad.status_code == 400 and "deleted must be true or false" in bad.json()["error"]["message"]
        again = flowctl("records", "restore", "deal", "3", str(config), "--db", daemon.database)
        assert again.returncode == 1 and "is not deleted" in again.stderr


def test_a_record_deleted_longer_ago_than_the_retention_is_forgotten_at_the_next_start(tmp_path: Path) -> None:
    config = config_with(tmp_path, "2s")
    daemon = Daemon(config, f"sqlite:///{tmp_path / 'flowctl.db'}")
    with daemon:
        for id in ("old", "kept"):
            assert daemon.put("deal", id, {"title": id}, stage="new").status_code == 202
        assert daemon.delete("deal", "old").status_code == 202
        wait_for(lambda: ids(daemon, "?deleted=true") == ["old"], what="old in the recycle bin")
    time.sleep(2.5)  # the retention passes while the daemon is stopped
    with daemon:
        wait_for(lambda: ids(daemon, "?deleted=true") == [], what="the purge at start")
        assert ids(daemon) == ["kept"]
        gone = daemon.post("/v1/records/deal/old/restore")
        assert gone.status_code == 404 and "purged" in gone.json()["error"]["message"]
    shown = flowctl("records", "list", "deal", str(config), "--db", daemon.database, "--deleted", "--format", "json")
    assert json.loads(shown.stdout) == []
