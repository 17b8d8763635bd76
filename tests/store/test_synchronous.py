"""SQLite: what each write transaction commits with. An acknowledged change, a batch's results and
a message recorded sent commit ``synchronous=FULL`` (they survive a power cut); claims, which only
lease work, commit ``NORMAL`` (no fsync of their own: a lost claim is work taken again). And the
statements run on the sqlite3 connection itself fail as SQLAlchemy's would."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from flowctl.engine.core import Engine
from flowctl.ports import NewChange
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.spec.config import load_bundle
from flowctl.store import open_store
from flowctl.store.engines import driver_sql
from flowctl.store.errors import unavailable
from flowctl.testing import FrozenClock, write_config
from tests.daemon.configs import deal_config

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
CONFIG = deal_config(
    "    phone: {type: phone}\n",
    then="""\
apiVersion: flowctl/v1
kind: Template
metadata: {name: docs-sms}
spec: {channel: sms, text: "Xin chao {{ record.title }}"}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - {id: new}
    - id: docs
      rules:
        - {name: sms, action: send_sms, template: docs-sms, to: "{{ record.phone }}"}
""",
)


@pytest.mark.parametrize("kept", [False, True], ids=["pooled", "kept-connection"])
def test_claims_commit_normal_and_everything_else_full(tmp_path: Path, kept: bool) -> None:
    # kept: one connection for every transaction (the daemon's threads), so each sets its own level
    loaded = load_bundle(write_config(tmp_path / "config", {"flowctl.yaml": CONFIG}))
    assert loaded.bundle is not None
    store = open_store(f"sqlite:///{tmp_path / 'flowctl.db'}")
    seen: list[int] = []
    holding = store.kept_connection() if kept else contextlib.nullcontext()

    def at_commit(conn: Any) -> None:  # inside the transaction, just before its COMMIT
        seen.append(conn.exec_driver_sql("PRAGMA synchronous").scalar())

    event.listen(store.engine, "commit", at_commit)  # type: ignore[attr-defined]
    try:
        with holding:
            worker = Worker(store, Engines(Engine(loaded.bundle, "v1")), FrozenClock(T0), owner="w")

            def committed(action: Any) -> list[int]:
                seen.clear()
                action()
                return list(seen)

            fields = {"title": "A", "phone": "0901234567"}
            change = NewChange(
                object="deal", record_id="1", op="put", idempotency_key="k1", fields=fields, stage="docs"
            )
            assert committed(lambda: store.append_changes([change])) == [2]  # the 202 waits for a FULL commit
            assert committed(worker.process_changes) == [1, 2]  # the claim NORMAL, the batch's results FULL
            assert committed(worker.process_changes) == []  # nothing to claim: no write transaction at all
            claimed: list[Any] = []
            assert committed(lambda: claimed.extend(store.claim_outbox(T0, 10, "w", 60))) == [1]
            assert len(claimed) == 1
            assert committed(lambda: store.mark_sent_many([claimed[0].id], T0, owner="w")) == [2]  # sent: FULL
    finally:
        store.close()


def test_a_driver_error_on_the_direct_path_is_raised_as_sqlalchemy_raises_it(tmp_path: Path) -> None:
    # the write path runs some statements on the sqlite3 connection itself (store/engines.py,
    # driver_sql): its errors must still be SQLAlchemy's, or an outage would be logged as a bug
    store = open_store(f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            with pytest.raises(sa.exc.OperationalError, match="no such table: nowhere") as raised:
                driver_sql(conn, "SELECT * FROM nowhere")
            assert not unavailable(raised.value)  # a statement SQLite cannot run is a bug, not an outage
            with pytest.raises(sa.exc.IntegrityError):
                driver_sql(conn, "CREATE TEMP TABLE t (k TEXT PRIMARY KEY)")
                driver_sql(conn, "INSERT INTO t VALUES (?)", [("a",), ("a",)], many=True)
    finally:
        store.close()
