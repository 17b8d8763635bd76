"""Two replicas on PostgreSQL: an engine process frozen (SIGSTOP) while it holds a claimed batch,
past its lease, must not write that batch over what the other replica did meanwhile when it
wakes (SIGCONT). The last acknowledged write wins; the stale batch is refused and logged."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowctl.runtime.daemon.service import owner_of
from flowctl.testing import Daemon, children, wait_for
from tests.daemon.configs import deal_config

LEASE = 5  # seconds: FLOWCTL_LEASE_SECONDS of both replicas
RECORDS = [f"d{i}" for i in range(11)]

CONFIG = deal_config("    note: string\n")


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[tuple[Daemon, Daemon]]:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "flowctl.yaml").write_text(CONFIG)
    # every change through the queue: the engine processes claim them (a quiet daemon's write
    # would otherwise run in its HTTP process, daemon/inline.py, and no engine would hold it)
    env = {"FLOWCTL_LEASE_SECONDS": str(LEASE), "FLOWCTL_INLINE": "0"}
    a, b = Daemon(folder, pg_url, env=env), Daemon(folder, pg_url, env=env)
    try:
        a.start(timeout=120)  # the first migrates the schema
        b.start(timeout=120)
        yield a, b
    finally:
        for daemon in (a, b):
            if daemon.proc is not None:  # a stopped child would outlive its killed parent stopped
                for pid in children(daemon.proc.pid):
                    os.kill(pid, signal.SIGCONT)
            daemon.stop_quietly()


def _patch(daemon: Daemon, record_id: str, note: str) -> None:
    response = daemon.patch("deal", record_id, {"note": note})
    assert response.status_code in (200, 202), response.text


def _notes(db: sa.Engine) -> dict[str, str]:
    with db.connect() as conn:
        found = conn.execute(sa.text("SELECT id, fields FROM records WHERE object = 'deal'")).all()
    return {id_: fields.get("note", "") for id_, fields in found}


def _open_changes(db: sa.Engine, owner: str | None = None) -> int:
    query = "SELECT count(*) FROM changes WHERE status IN ('pending', 'claimed')"
    with db.connect() as conn:
        if owner is None:
            return int(conn.execute(sa.text(query)).scalar_one())
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM changes WHERE status = 'claimed' AND lease_owner = :o"), {"o": owner}
            ).scalar_one()
        )


def _waiting_on_runs(db: sa.Engine) -> bool:
    with db.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'runs'::regclass")
            ).scalar_one()
        )


@pytest.mark.postgres
def test_a_replica_frozen_past_its_lease_does_not_write_its_old_batch_over_newer_writes(
    replicas: tuple[Daemon, Daemon], pg_url: str, figures: Callable[..., None]
) -> None:
    a, b = replicas
    db = sa.create_engine(pg_url)
    try:
        for record_id in RECORDS:
            assert a.put("deal", record_id, {"title": record_id, "note": "v0"}).status_code in (200, 202)
        wait_for(lambda: _open_changes(db) == 0 and len(_notes(db)) == len(RECORDS), 60, "the records to be stored")
        a_engine, b_engine = a.engine_pid(), b.engine_pid()

        # only A's engine works: B's is frozen while idle (it holds nothing)
        os.kill(b_engine, signal.SIGSTOP)
        # A claims the v14 batch whole, then stops in its first read of runs (the test holds the
        # table): A is past its claim and before its commit, with its records read (v0)
        os.kill(a_engine, signal.SIGSTOP)
        for record_id in RECORDS:
            _patch(a, record_id, "v14")
        blocker = db.connect()
        try:
            with blocker.begin():
                blocker.execute(sa.text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
                os.kill(a_engine, signal.SIGCONT)
                wait_for(lambda: _open_changes(db, owner_of(a_engine)) == len(RECORDS), 60, "A to claim the batch")
                wait_for(lambda: _waiting_on_runs(db), 60, "A to read runs")
                os.kill(a_engine, signal.SIGSTOP)  # frozen holding the claimed batch
        finally:
            blocker.close()

        # B wakes, takes the batch over once A's lease ran out, then later writes (v90) go through it
        os.kill(b_engine, signal.SIGCONT)
        wait_for(lambda: _open_changes(db) == 0, LEASE * 12, "B to take over and finish the batch")
        assert set(_notes(db).values()) == {"v14"}
        for record_id in RECORDS:
            _patch(b, record_id, "v90")
        wait_for(lambda: _open_changes(db) == 0 and set(_notes(db).values()) == {"v90"}, 60, "the v90 writes")

        mark = len(a.output())
        os.kill(a_engine, signal.SIGCONT)  # A wakes and goes on with its old batch
        wait_for(
            lambda: "v14" in _notes(db).values() or "not committed" in a.output()[mark:],
            60,
            "A to finish its old batch",
        )
        assert _notes(db) == dict.fromkeys(RECORDS, "v90"), "a stale batch overwrote newer writes"
        refused = [line for line in a.output()[mark:].splitlines() if "not committed" in line]
        assert len(refused) == 1 and "WARNING" in refused[0], a.output()[mark:]
        assert f"lost the lease of {len(RECORDS)}" in refused[0] and owner_of(a_engine) in refused[0]
        figures(stale_batch=len(RECORDS), lease_seconds=LEASE, overwritten=0, refused_log=refused[0].strip())

        # A goes on working: its next batch commits
        os.kill(b_engine, signal.SIGSTOP)
        try:
            _patch(a, RECORDS[0], "v91")
            wait_for(lambda: _notes(db)[RECORDS[0]] == "v91", 60, "A to process a later write")
        finally:
            os.kill(b_engine, signal.SIGCONT)
        assert a.get(f"/v1/records/deal/{RECORDS[1]}").json()["fields"]["note"] == "v90"
    finally:
        db.dispose()
