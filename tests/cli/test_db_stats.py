"""``flowctl db stats`` and ``flowctl db vacuum`` on a real SQLite file and PostgreSQL: rows per
kind and status, sizes, what the next purge would remove under DIR's retention, and an old file
switched to incremental auto-vacuum."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowctl.engine.state import Step
from flowctl.ports import Processed, Store
from flowctl.store import open_store
from flowctl.testing import write_config
from tests.cli.conftest import invoke
from tests.daemon.configs import deal_config
from tests.store.contract import change, done, effect, run

OLD = datetime(2020, 1, 1, tzinfo=UTC)  # long before any retention: the next purge removes it


def seed(store: Store) -> None:
    """Two records with two old processed changes each, two old finished runs and one waiting,
    an old sent message and a held one."""
    store.append_changes([change(r, f"{r}-{n}") for r in ("1", "2") for n in (1, 2)])
    runs = {r.id: r for r in (run("a", "done"), run("b", "failed"), run("w", "waiting"))}
    step = Step(runs=runs, effects=[effect("e1"), effect("e2")])
    store.commit_batch([*done(*store.claim_changes(10, "w", OLD, 30)), Processed(step=step)], OLD)
    e1, e2 = store.claim_outbox(OLD, 10, "d", 60)
    store.mark_sent(e1.id, OLD)
    store.hold_outbox_many([(e2.id, OLD + timedelta(days=9999), "held: quiet hours")], OLD)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_stats_show_rows_sizes_and_what_the_next_purge_removes(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'flowctl.db'}" if backend == "sqlite" else str(request.getfixturevalue("pg_url"))
    store = open_store(url)
    seed(store)
    store.close()
    config = write_config(tmp_path / "config", {"flowctl.yaml": deal_config(spec="{retention: {finished_runs: 90d}}")})

    found = json.loads(invoke("db", "stats", config, "--db", url, "--format", "json").output)
    kinds = found["kinds"]
    assert kinds["changes"]["by"] == {"done": 4}
    assert kinds["changes"]["purge"]["rows"] == 2  # the newest change of each record stays
    assert kinds["runs"]["by"] == {"done": 1, "failed": 1, "waiting": 1} and kinds["runs"]["purge"]["rows"] == 2
    assert kinds["runs"]["purge"]["retention"] == "90d" and kinds["changes"]["purge"]["retention"] == "7d"
    assert kinds["messages"]["by"] == {"sent": 1, "held": 1} and kinds["messages"]["purge"]["rows"] == 1
    assert kinds["timers"]["rows"] == 0 and "purge" not in kinds["timers"]
    assert all(k["bytes"] and k["bytes"] > 0 for k in (kinds["changes"], kinds["runs"], kinds["messages"]))
    if backend == "sqlite":
        assert found["files"]["file"] > 0 and found["auto_vacuum"] == "incremental"

    text = invoke("db", "stats", config, "--db", url).output
    assert "changes" in text and "done 4" in text and "retention: changes 7d, runs 90d" in text


def test_vacuum_switches_an_old_file_to_incremental_auto_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a file made before flowctl set auto_vacuum
        conn.execute("CREATE TABLE leftover (x)")
    store = open_store(f"sqlite:///{path}")
    seed(store)
    store.close()
    before = json.loads(invoke("db", "stats", tmp_path, "--db", f"sqlite:///{path}", "--format", "json").output)
    assert before["auto_vacuum"] == "none"
    assert "run 'flowctl db vacuum' once" in invoke("db", "stats", tmp_path, "--db", f"sqlite:///{path}").output

    result = invoke("db", "vacuum", tmp_path, "--db", f"sqlite:///{path}")
    assert result.exit_code == 0 and "auto_vacuum=incremental" in result.output
    after = json.loads(invoke("db", "stats", tmp_path, "--db", f"sqlite:///{path}", "--format", "json").output)
    assert after["auto_vacuum"] == "incremental" and after["kinds"]["changes"]["rows"] == 4  # nothing lost
