"""PostgreSQL: a batch's row writes go in one round trip (psycopg's pipeline mode,
``SqlBase._run_all``); they land in order, and one that fails fails the batch as SQLAlchemy
would say it, with nothing of the batch left behind."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from flowctl.store.sql import SqlStore
from flowctl.store.tables import notes

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(pg_store: SqlStore) -> SqlStore:
    return pg_store


def note(key: str, text: str | None = "hello") -> dict[str, object]:
    return {"key": key, "object": "deal", "record_id": "d1", "run_id": "r1", "text": text, "at": T0}


def keys(store: SqlStore) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(notes.c.key)).scalars())


def test_the_writes_land_in_order(store: SqlStore) -> None:
    later = sa.update(notes).where(notes.c.key == sa.bindparam("b_key")).values(text=sa.bindparam("b_text"))
    with store._writer.begin() as conn:
        store._run_all(
            conn,
            [
                store._prepare(store._insert_notes, [note("n1"), note("n2")]),
                None,  # nothing to write of that kind
                store._prepare(later, [{"b_key": "n1", "b_text": "changed"}]),
            ],
        )
    with store.engine.connect() as conn:
        assert dict(conn.execute(sa.select(notes.c.key, notes.c.text)).all()) == {"n1": "changed", "n2": "hello"}


def test_a_write_that_fails_fails_the_batch_and_leaves_nothing(store: SqlStore) -> None:
    with pytest.raises(sa.exc.IntegrityError, match="text"), store._writer.begin() as conn:
        store._run_all(
            conn,
            [
                store._prepare(store._insert_notes, [note("n1")]),
                store._prepare(store._insert_notes, [note("n2", text=None)]),  # NOT NULL
            ],
        )
    assert keys(store) == []
    with store._writer.begin() as conn:  # the pool's connection is fine afterwards
        store._run_all(conn, [store._prepare(store._insert_notes, [note(k)]) for k in ("n3", "n4")])
    assert keys(store) == ["n3", "n4"]
