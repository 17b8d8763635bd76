"""The migrations build exactly the schema of ``flowctl.store.tables``, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from flowctl.store import migrate
from flowctl.store.engines import make_engine
from flowctl.store.tables import metadata


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'flowctl.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def diffs(engine: Engine, target: sa.MetaData = metadata) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), target))


def tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrading_an_empty_database_gives_the_schema_of_the_tables_module(engine: Engine) -> None:
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine, "0001")  # the first migration, then the rest
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert diffs(engine) == []
    assert tables(engine) == {*metadata.tables, "alembic_version"}


def test_the_comparison_sees_a_difference(engine: Engine) -> None:
    migrate.upgrade(engine)
    changed = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    sa.Table("extra", changed, sa.Column("id", sa.Integer, primary_key=True))
    sa.Index("ix_timers_kind", changed.tables["timers"].c.kind)
    kinds = {diff[0] for diff in diffs(engine, changed) if isinstance(diff, tuple)}
    assert kinds == {"add_table", "add_index"}


def test_upgrade_twice_changes_nothing_and_downgrade_removes_everything(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert tables(engine) <= {"alembic_version", "sqlite_sequence"}
    migrate.upgrade(engine)
    assert diffs(engine) == []


def test_upgrade_takes_a_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'by-url.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_0007_moves_the_keys_the_api_stored_into_its_own_namespace(engine: Engine) -> None:
    """A client retrying across the upgrade still finds its Idempotency-Key (now ``api/<key>``);
    webhook keys and the API's own made-up keys stay as they were."""
    migrate.upgrade(engine, "0006")
    row = {
        "object": "deal",
        "record_id": "1",
        "op": "patch",
        "fields": "{}",
        "stage": "",
        "pipeline": "",
        "event": "",
        "data": "{}",
        "status": "done",
        "attempts": 1,
        "error": "",
    }
    with engine.begin() as conn:
        for key, source in (("order-7", "api"), ("auto-1f-0", "api"), ("crm:evt-9", "crm")):
            conn.execute(
                sa.text(
                    "INSERT INTO changes (idempotency_key, object, record_id, op, fields, stage, "
                    "pipeline, event, data, source, status, attempts, error) VALUES (:key, :object, "
                    ":record_id, :op, :fields, :stage, :pipeline, :event, :data, :source, :status, "
                    ":attempts, :error)"
                ),
                {**row, "key": key, "source": source},
            )
    migrate.upgrade(engine, "0007")
    with engine.connect() as conn:
        keys = {k for (k,) in conn.execute(sa.text("SELECT idempotency_key FROM changes"))}
    assert keys == {"api/order-7", "auto-1f-0", "crm:evt-9"}
    migrate.downgrade(engine, "0006")
    with engine.connect() as conn:
        keys = {k for (k,) in conn.execute(sa.text("SELECT idempotency_key FROM changes"))}
    assert keys == {"order-7", "auto-1f-0", "crm:evt-9"}
