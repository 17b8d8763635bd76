"""The ``Store`` adapters: ``SqlStore`` (SQLite, PostgreSQL) and ``MemoryStore``; ``open_store`` picks one.

Each adapter is a package with one module per role of ``flowctl.ports`` over a base module
(``sql/``, ``memory/``). Beside them: ``errors`` (what counts as the database being unavailable,
so the runtime need not know SQLAlchemy), ``delegate`` (a typed pass-through for wrappers of a store), and the schema
(``tables``, ``migrate``), row shapes (``rows``), date index (``dates``) and SQLite write lock.
"""

from __future__ import annotations

from flowctl.ports import Store
from flowctl.store.memory import MemoryStore

__all__ = ["MemoryStore", "open_store"]


def open_store(url: str) -> Store:
    """``memory://`` → a fresh ``MemoryStore``; any SQLAlchemy URL → a ``SqlStore`` on a schema at
    this release's head. An empty database is created at head; any other revision raises
    ``revisions.SchemaBehind`` (``flowctl db upgrade`` migrates it) or ``revisions.SchemaAhead``."""
    if url == "memory://":
        return MemoryStore()
    from flowctl.store.revisions import ensure_current  # lazy: start-up time (alembic, for memory:// and the CLI)
    from flowctl.store.sql import SqlStore  # lazy: start-up time (SQLAlchemy, for memory:// and the CLI)

    store = SqlStore(url)
    try:
        ensure_current(store.engine)
    except BaseException:
        store.close()
        raise
    return store
