"""The hot path: a change run by the engine in the very commit that stores it.

When a record has nothing open (no earlier change waiting, no due timer in a worker's hands),
the ingest's transaction runs its rules as well (``ChangeQueue.append_changes`` with an
``InlineRun``): one commit from the request to the outbox, instead of the append, the worker's
claim and the worker's commit, and no hand-over between threads or processes. Everything else
goes through the queue as before, and the store decides which is which under its write lock.

A second core is still worth a second process: the engine process runs beside the HTTP side.
So where the daemon may use more than one core and has an engine process, only commits of at
most ``BUSY`` changes go inline (the latency of a quiet daemon); a busy daemon's large commits
are left to the engine process. With one core, or ``--processes 1``, every commit may go inline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime

from flowctl.ports import Processed, StoredChange
from flowctl.runtime.daemon.worker import Worker

#: With a second core to use, the largest commit run inline; larger ones go to the engine process.
BUSY = 8


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: ``taskset`` or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def inline_limit(engine_process: bool, cores: int) -> int:
    """The largest commit whose changes run inline (see the module's docstring)."""
    return BUSY if engine_process and cores > 1 else 1_000_000


class InlineWorker:
    """The ``InlineRun`` of the ingest's commits: the daemon's worker, run by the ingest thread."""

    def __init__(self, worker: Worker, limit: int) -> None:
        self.worker = worker
        self.limit = limit  # the largest commit handed to it (Ingest reads it)
        self._started = 0.0
        self._due = False  # the last commit queued a timer already due: the worker loop should look

    def now(self) -> datetime:
        return self.worker.clock.now()

    def run(self, changes: Sequence[StoredChange], now: datetime) -> list[Processed]:
        self._started = time.monotonic()
        return self.worker.run_changes(changes, now)

    def committed(self, items: Sequence[Processed]) -> None:
        now = self.worker.clock.now()
        self._due = any(t.due <= now for item in items for t in item.step.timers)
        self.worker.changes_committed(items, self._started)

    def timer_due(self) -> bool:
        """Whether the last commit queued a timer already due (once: it is reset by asking)."""
        due, self._due = self._due, False
        return due
