"""``flowctl db backup`` and ``flowctl db restore`` on real SQLite files (the daemon's side is in
tests/reliability/test_backup_restore.py): what is refused and why, what is kept, and that a
stepped copy under a steady writer ends, as one snapshot."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from flowctl.store import open_store
from flowctl.store.backup import backup
from tests.cli.conftest import invoke


def database(path: Path, deals: int = 0) -> str:
    """A migrated flowctl database at ``path`` with ``deals`` records; its URL."""
    url = f"sqlite:///{path}"
    open_store(url).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.executemany(
        "INSERT INTO records (object, id, fields, stage, pipeline, owner, version, deleted, updated_at)"
        " VALUES ('deal', ?, '{}', 'new', 'sales', '', 1, 0, NULL)",
        [(f"d{i}",) for i in range(deals)],
    )
    db.close()
    return url


def deals(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])
    finally:
        db.close()


def test_a_backup_is_checked_reported_and_never_overwritten_unasked(tmp_path: Path) -> None:
    url = database(tmp_path / "flowctl.db", deals=30)
    made = invoke("db", "backup", tmp_path / "copy.db", "--db", url, "--format", "json")
    assert made.exit_code == 0, made.output
    report = json.loads(made.output)
    assert report["integrity"] == "ok" and report["revision"] and report["pages"] > 0
    assert report["bytes"] == (tmp_path / "copy.db").stat().st_size
    assert deals(tmp_path / "copy.db") == 30
    assert sorted(p.name for p in tmp_path.glob("copy.db*")) == ["copy.db"]  # no .partial, no WAL

    again = invoke("db", "backup", tmp_path / "copy.db", "--db", url)
    assert again.exit_code == 1 and "copy.db exists: choose another name, or --force" in again.output
    forced = invoke("db", "backup", tmp_path / "copy.db", "--db", url, "--force")
    assert forced.exit_code == 0 and "integrity ok" in forced.output, forced.output
    quick = invoke("db", "backup", tmp_path / "quick.db", "--db", url, "--check", "quick", "--format", "json")
    assert json.loads(quick.output)["check"] == "quick" and json.loads(quick.output)["integrity"] == "ok"


def test_postgresql_and_missing_files_are_refused_with_what_to_do(tmp_path: Path) -> None:
    pg = invoke("db", "backup", tmp_path / "x.db", "--db", "postgresql+psycopg://flowctl:secret@db/crm")
    assert pg.exit_code == 1
    assert "pg_dump" in pg.output and "Backup and restore" in pg.output and "secret" not in pg.output
    missing = invoke("db", "backup", tmp_path / "x.db", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.exit_code == 1 and "no database at" in missing.output
    url = database(tmp_path / "flowctl.db")
    nowhere = invoke("db", "backup", tmp_path / "nowhere" / "x.db", "--db", url)
    assert nowhere.exit_code == 1 and "no directory" in nowhere.output and "create it first" in nowhere.output
    (tmp_path / "notes.db").write_text("not a database " * 100)
    foreign = invoke("db", "restore", tmp_path / "notes.db", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    assert foreign.exit_code == 1 and "notes.db" in foreign.output
    assert not (tmp_path / "new.db").exists()


def test_a_restore_keeps_what_was_there_and_drops_its_wal(tmp_path: Path) -> None:
    url = database(tmp_path / "flowctl.db", deals=5)
    assert invoke("db", "backup", tmp_path / "yesterday.db", "--db", url).exit_code == 0
    # a record written after the backup, its commit still in the WAL, as a killed daemon leaves it
    db = sqlite3.connect(tmp_path / "flowctl.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("INSERT INTO records VALUES ('deal', 'today', '{}', 'new', 'sales', '', 1, 0, NULL)")
    wal = (tmp_path / "flowctl.db-wal").read_bytes()
    db.close()  # (the last connection checkpoints and removes the WAL: put it back)
    (tmp_path / "flowctl.db-wal").write_bytes(wal)

    refused = invoke("db", "restore", tmp_path / "yesterday.db", "--db", url)
    assert refused.exit_code == 1 and "flowctl.db exists: restore into a new database" in refused.output
    done = invoke("db", "restore", tmp_path / "yesterday.db", "--db", url, "--force", "--format", "json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["integrity"] == "ok" and len(report["kept"]) == 2
    assert set(report["resumes"]) == {"timers", "waiting_runs", "messages_to_send", "changes_to_process"}
    assert not (tmp_path / "flowctl.db-wal").exists()
    assert deals(tmp_path / "flowctl.db") == 5
    old = Path(report["kept"][0])
    assert old.name.startswith("flowctl.db.before-restore-") and deals(old) == 6  # the old file and its WAL


def test_a_stepped_copy_under_a_steady_writer_ends_as_one_snapshot(tmp_path: Path) -> None:
    source = tmp_path / "flowctl.db"
    database(source, deals=2000)
    stop = threading.Event()
    written = [2000]

    def write() -> None:
        db = sqlite3.connect(source, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        i = 0
        while not stop.is_set():
            db.execute("INSERT INTO records VALUES ('deal', ?, '{}', 'new', 'sales', '', 1, 0, NULL)", (f"w{i}",))
            written[0] += 1
            i += 1
        db.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while written[0] < 2100:
            threading.Event().wait(0.01)
        low = written[0]
        # one page a step: a copy that started again on every commit in between would never end
        made = backup(source, tmp_path / "copy.db", step_pages=1, pause_share=0)
        high = written[0]
    finally:
        stop.set()
        writer.join()
    assert made.checked.integrity == "ok"
    assert low <= deals(tmp_path / "copy.db") <= high + 1
    assert high > low, "the writer did not write during the copy: nothing was shown"
