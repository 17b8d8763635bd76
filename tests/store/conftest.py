"""Store backends for the contract suite: memory, SQLite in a temp file, PostgreSQL when configured.

PostgreSQL tests need ``FLOWCTL_TEST_DATABASE_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets a schema of its own,
dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowctl.ports import Store
from flowctl.store import open_store
from flowctl.store.sql import SqlStore

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


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


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[SqlStore]:
    """A SQL store on an empty PostgreSQL schema (the PostgreSQL-only tests)."""
    opened = open_store(pg_url)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()
