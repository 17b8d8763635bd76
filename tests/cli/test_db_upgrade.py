"""``flowctl db upgrade`` is the one way an older schema moves; every other command refuses it.

A database at the previous head is made by today's store at head, downgraded one revision (the
newest migration's ``downgrade``): the test always upgrades from head - 1, whatever head is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from flowctl.cli.main import cli
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.runtime.daemon.leases import lock_sqlite
from flowctl.store import migrate, open_store, revisions
from flowctl.store.engines import make_engine
from flowctl.store.revisions import SchemaAhead, SchemaBehind
from tests.store.contract import change

HEAD = revisions.head()
OLD = revisions.previous_head()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flowctl.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    yield engine
    engine.dispose()


def at_previous_head(url: str, engine: Engine) -> None:
    assert OLD is not None, "there is only one revision: nothing to upgrade from"
    open_store(url).close()
    migrate.downgrade(engine, OLD)


def stamp(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_an_empty_database_is_created_at_head_by_whoever_opens_it(url: str, engine: Engine) -> None:
    open_store(url).close()
    assert revisions.revisions(engine).current == HEAD


def test_an_older_schema_is_refused_by_every_command_but_db_upgrade(url: str, engine: Engine) -> None:
    at_previous_head(url, engine)
    with pytest.raises(SchemaBehind) as refused:
        open_store(url)
    expected = (
        f"the database is at revision {OLD}, this flowctl needs {HEAD}: "
        "stop the old replicas and run `flowctl db upgrade`"
    )
    assert str(refused.value) == expected
    result = run("outbox", "list", "--db", url)
    assert result.exit_code == 1 and expected in result.output
    assert revisions.revisions(engine).current == OLD  # nothing moved it

    check = run("db", "upgrade", "--check", "--db", url)
    assert check.exit_code == 1, check.output
    assert f"at revision {OLD}, this flowctl needs {HEAD}" in check.output

    upgraded = run("db", "upgrade", "--db", url, "--format", "json")
    assert upgraded.exit_code == 0, upgraded.output
    report = json.loads(upgraded.output)
    assert (report["from"], report["current"], report["upgraded"]) == (OLD, HEAD, True)

    assert run("db", "upgrade", "--check", "--db", url).exit_code == 0
    assert run("outbox", "list", "--db", url).exit_code == 0
    again = run("db", "upgrade", "--db", url)
    assert again.exit_code == 0 and f"at revision {HEAD}: nothing to do" in again.output


def test_a_newer_schema_is_refused_with_both_versions(url: str, engine: Engine) -> None:
    open_store(url).close()
    stamp(engine, "9999")
    with pytest.raises(SchemaAhead) as refused:
        open_store(url)
    assert f"at revision 9999, newer than this flowctl knows (its newest is {HEAD})" in str(refused.value)
    upgrade = run("db", "upgrade", "--db", url)
    assert upgrade.exit_code == 1 and "9999" in upgrade.output and HEAD in upgrade.output
    check = run("db", "upgrade", "--check", "--db", url, "--format", "json")
    assert check.exit_code == 2
    assert json.loads(check.output)["state"] == "ahead"
    assert revisions.revisions(engine).current == "9999"


def test_upgrade_refuses_while_another_replica_holds_a_lease_unless_forced(url: str, engine: Engine) -> None:
    store = open_store(url)
    try:
        store.append_changes([change("7", "k1")])
        now = SystemClock().now()
        assert store.claim_changes(10, "old-host:4242", now, lease_seconds=300)
    finally:
        store.close()
    migrate.downgrade(engine, str(OLD))

    refused = run("db", "upgrade", "--db", url)
    assert refused.exit_code == 1
    assert "old-host:4242" in refused.output and f"from revision {OLD} to {HEAD}" in refused.output
    assert "--force" in refused.output
    assert revisions.revisions(engine).current == OLD

    forced = run("db", "upgrade", "--db", url, "--force", "--format", "json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.output)["replicas"] == ["old-host:4242"]
    assert revisions.revisions(engine).current == HEAD
    # a lease that ran out names no replica
    assert revisions.lease_holders(engine, SystemClock().now() + timedelta(seconds=301)) == []


def test_upgrade_refuses_while_a_daemon_holds_the_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flowctl.db'}"
    engine = make_engine(url)
    try:
        at_previous_head(url, engine)
        lock = lock_sqlite(url)  # what a running daemon holds
        assert lock is not None
        try:
            refused = run("db", "upgrade", "--db", url)
            assert refused.exit_code == 1
            assert "another flowctl run is using" in refused.output and f"to {HEAD}" in refused.output
        finally:
            lock.close()
        assert run("db", "upgrade", "--db", url).exit_code == 0
        assert revisions.revisions(engine).current == HEAD
    finally:
        engine.dispose()


def test_check_on_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    result = run("db", "upgrade", "--check", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.output)["state"] == "empty"
    assert not (tmp_path / "none.db").exists()
