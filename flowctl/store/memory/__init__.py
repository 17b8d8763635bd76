"""``MemoryStore``: the ``Store`` in memory, for unit tests; same contract as ``SqlStore``.

Rows are the ``dict``s of ``rows.py`` with JSON columns kept as JSON text, so a value that
could not be stored in a database fails here too (before anything is applied), and every read
hands out fresh objects. One lock makes each method atomic.

The class is composed of one mixin per role of ``flowctl.ports`` (a module each in this package)
over ``base.MemoryBase``, which holds the tables and the lock, as ``SqlStore`` is.
"""

from __future__ import annotations

from flowctl.store.memory.care import MemoryCareLedger
from flowctl.store.memory.changes import MemoryChangeQueue
from flowctl.store.memory.channel_tokens import MemoryChannelTokens
from flowctl.store.memory.deployments import MemoryDeployments
from flowctl.store.memory.inspection import MemoryInspection
from flowctl.store.memory.leases import MemoryLeases
from flowctl.store.memory.outbox import MemoryOutbox
from flowctl.store.memory.record_state import MemoryRecordState
from flowctl.store.memory.recycle_bin import MemoryRecycleBin
from flowctl.store.memory.retention import MemoryPurging
from flowctl.store.memory.sources import MemorySourceCursors

__all__ = ["MemoryStore"]


class MemoryStore(
    MemoryRecordState,
    MemoryChangeQueue,
    MemoryOutbox,
    MemoryCareLedger,
    MemoryDeployments,
    MemoryLeases,
    MemorySourceCursors,
    MemoryInspection,
    MemoryRecycleBin,
    MemoryPurging,
    MemoryChannelTokens,
):
    """Every role of the store, in memory."""
