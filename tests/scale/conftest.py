"""Databases for the scale tests: a fresh PostgreSQL schema per test (the flowctl store, or a
polled "CRM" database of its own), skipped without ``FLOWCTL_TEST_DATABASE_URL``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import fresh_schema, pg_base


@pytest.fixture
def pg_store_url(pg_url: str) -> str:
    """An empty PostgreSQL schema for a flowctl store (replicas share it)."""
    return pg_url


@pytest.fixture
def pg_source_url() -> Iterator[str]:
    """An empty schema in a second PostgreSQL database (``flowctl_src``): the CRM a source polls."""
    yield from fresh_schema(pg_base(), "flowctl_src")
