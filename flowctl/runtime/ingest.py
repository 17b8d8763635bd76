"""Group commit for accepted writes: many requests, one transaction, every answer after commit.

HTTP handlers hand a ``NewChange`` to ``Ingest.submit`` and await the future; one writer thread
drains whatever is queued, appends it in one transaction and resolves the futures. When nothing
else is queued the batch is that one change, so latency at low load stays one commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from flowctl.ports import AppendResult, NewChange, Store

log = logging.getLogger("flowctl.ingest")


class StoreUnavailable(Exception):
    """The database could not commit the write; the client should retry (HTTP 503)."""


class Ingest:
    def __init__(self, store: Store, *, max_batch: int = 500, on_commit: object = None) -> None:
        self.store = store
        self.max_batch = max_batch
        self.queue: queue.Queue[tuple[NewChange, Future[AppendResult]] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="flowctl-ingest", daemon=True)
        self.on_commit = on_commit  # called with the number of new changes after each commit
        self.accepted = 0
        self.duplicates = 0

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)

    def submit(self, change: NewChange) -> Future[AppendResult]:
        future: Future[AppendResult] = Future()
        self.queue.put((change, future))
        return future

    def submit_many(self, changes: Sequence[NewChange]) -> list[Future[AppendResult]]:
        return [self.submit(c) for c in changes]

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            item = self.queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[tuple[NewChange, Future[AppendResult]]]) -> None:
        try:
            results = self.store.append_changes([change for change, _ in batch])
        except Exception as exc:  # noqa: BLE001 - any database error means "not stored": answer 503
            log.warning("could not store %d changes: %s", len(batch), exc)
            for _, future in batch:
                future.set_exception(StoreUnavailable(str(exc)))
            return
        fresh = 0
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
            fresh += 0 if result.duplicate else 1
        self.accepted += fresh
        self.duplicates += len(batch) - fresh
        if fresh and callable(self.on_commit):
            self.on_commit(fresh)
