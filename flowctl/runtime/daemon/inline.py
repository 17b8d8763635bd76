"""The hot path: a change run by the engine in the very commit that stores it.

When a record has nothing open (no earlier change waiting, no due timer in a worker's hands),
the ingest's transaction runs its rules as well (``ChangeQueue.append_changes`` with an
``InlineRun``): one commit from the request to the outbox, instead of the append, the worker's
claim and the worker's commit, and no hand-over between threads or processes. Everything else
goes through the queue as before, and the store decides which is which under its write lock
(SQLite) or its append lock (PostgreSQL, where the run also locks the record's timers).

Only a commit of one change goes this way (``LIMIT``): a quiet daemon's write, answered with its
messages already queued. A busy daemon's commits of several changes stay with the worker: run by
the ingest, the engine's Python holds the interpreter lock the event loop needs to read the next
requests, so the requests' batches shrank and each paid its reads and writes alone; at 8 clients
that cost more than the claim and commit it saved (1,046 changes/s against 1,205 through the
queue on one core, and 839 against 1,159 with ``--processes 1``).

While no worker loop runs beside it (``alone``: the engine process is starting, or restarting
after it exited), every commit of up to ``ALONE_LIMIT`` changes runs inline: nobody else would run
them, so they would pile up for the engine process to work off once it is up, beside the requests
arriving by then.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from flowctl.ports import Processed, StoredChange
from flowctl.runtime.daemon.worker import Worker, timer_due

#: The largest commit whose changes run inline; larger ones go to the worker (see above).
LIMIT = 1
#: The largest while no worker loop runs beside it: a commit holds the writer lock while it runs.
ALONE_LIMIT = 64


class InlineWorker:
    """The ``InlineRun`` of the ingest's commits: the daemon's worker, run by the ingest thread."""

    def __init__(self, worker: Worker, limit: int = LIMIT, *, alone: Callable[[], bool] = lambda: False) -> None:
        self.worker = worker
        self.limit = limit  # the largest commit handed to it while another worker runs
        self.alone = alone  # whether no worker loop runs beside it now
        self._started = 0.0
        self._due = False  # the last commit queued a timer already due: the worker loop should look

    def takes(self, size: int) -> bool:
        """Whether the ingest's commit of ``size`` changes runs here (see the module's docstring)."""
        return size <= self.limit or (size <= ALONE_LIMIT and self.alone())

    def now(self) -> datetime:
        return self.worker.clock.now()

    def run(self, changes: Sequence[StoredChange], now: datetime) -> list[Processed]:
        self._started = time.monotonic()
        return self.worker.run_changes(changes, now)

    def committed(self, items: Sequence[Processed]) -> None:
        self._due = timer_due(items, self.worker.clock.now())
        self.worker.changes_committed(items, self._started)

    def timer_due(self) -> bool:
        """Whether the last commit queued a timer already due (once: it is reset by asking)."""
        due, self._due = self._due, False
        return due
