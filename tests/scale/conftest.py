"""Databases for the scale tests: a fresh PostgreSQL schema per test (the flowctl store, or a
polled "CRM" database of its own), skipped without ``FLOWCTL_TEST_DATABASE_URL``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_ENV = "FLOWCTL_TEST_DATABASE_URL"


def _schema_url(base: str, database: str | None = None) -> Iterator[str]:
    url = sa.make_url(base)
    if database:
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).first():
                conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        url = url.set(database=database)
    schema = f"flowctl_scale_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        engine.dispose()


@pytest.fixture
def pg_store_url() -> Iterator[str]:
    """An empty PostgreSQL schema for a flowctl store (replicas share it)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"set {PG_ENV} to run PostgreSQL tests")
    yield from _schema_url(base)


@pytest.fixture
def pg_source_url() -> Iterator[str]:
    """An empty schema in a second PostgreSQL database (``flowctl_src``): the CRM a source polls."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"set {PG_ENV} to run PostgreSQL tests")
    yield from _schema_url(base, "flowctl_src")
