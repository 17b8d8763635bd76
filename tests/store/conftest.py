"""Store backends for the contract suite: memory, SQLite in a temp file, PostgreSQL when configured.

PostgreSQL tests need ``FLOWCTL_TEST_DATABASE_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets a schema of its own,
dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowctl.ports import Store
from flowctl.store import open_store

PG_ENV = "FLOWCTL_TEST_DATABASE_URL"

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose connections live in a fresh, empty schema."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"set {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run PostgreSQL tests")
    schema = f"flowctl_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database for ``request.param`` (memory, sqlite or postgres)."""
    backend = request.param
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'flowctl.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def open_more(db_url: str) -> Iterator[Callable[[], Store]]:
    """Open the backend again, as another replica would (the memory store is simply shared)."""
    opened: list[Store] = []
    shared: Store | None = None

    def more() -> Store:
        nonlocal shared
        if db_url == "memory://":
            shared = shared or open_store(db_url)
            return shared
        opened.append(open_store(db_url))
        return opened[-1]

    yield more
    for store in opened:
        store.close()


@pytest.fixture
def store(open_more: Callable[[], Store]) -> Store:
    return open_more()
