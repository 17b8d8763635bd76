"""``MemoryStore``: the ``Store`` in memory, for unit tests."""

from flowctl.store.memory.base import MemoryStore

__all__ = ["MemoryStore"]
