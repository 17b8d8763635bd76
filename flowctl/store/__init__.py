"""The ``Store`` adapters: ``SqlStore`` (SQLite, PostgreSQL) and ``MemoryStore``; ``open_store`` picks one."""

from __future__ import annotations

from flowctl.ports import Store
from flowctl.store.memory import MemoryStore

__all__ = ["MemoryStore", "open_store"]


def open_store(url: str) -> Store:
    """``memory://`` → a fresh ``MemoryStore``; any SQLAlchemy URL → a ``SqlStore`` on a schema
    migrated to the newest revision first."""
    if url == "memory://":
        return MemoryStore()
    from flowctl.store.migrate import upgrade
    from flowctl.store.sql import SqlStore

    store = SqlStore(url)
    upgrade(store.engine)
    return store
