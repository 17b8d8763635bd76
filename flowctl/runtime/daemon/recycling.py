"""Emptying the recycle bin: records deleted longer ago than Config ``retention.deleted_records``
(default 30 days) are forgotten for good, with their notes and stage history.

Until then a deleted record is listed (``?deleted=true``) and can be restored. The purge runs from
the daemon's housekeeping about once an hour, a bounded batch at a time so one transaction never
holds the writer long; replicas may both run it (a record goes once, whoever deletes it). Its runs
and messages stay: what happened to a record is kept after the record is gone.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from flowctl.ports import Clock, RecycleBin

log = logging.getLogger("flowctl.recycle_bin")

#: Seconds between purges; the first runs at the first housekeeping round after start.
EVERY_SECONDS = 3600.0
#: Records purged per transaction; a purge takes batches until fewer than this were due.
BATCH = 500


class RecycleBinPurge:
    def __init__(self, store: RecycleBin, clock: Clock, every_seconds: float = EVERY_SECONDS) -> None:
        self.store = store
        self.clock = clock
        self.every_seconds = every_seconds
        self._next = 0.0  # monotonic: the next purge is due at this moment

    def tick(self, retention: timedelta) -> int:
        """Purge if one is due: the records deleted more than ``retention`` ago. Returns how many went."""
        now = time.monotonic()
        if now < self._next:
            return 0
        self._next = now + self.every_seconds
        return self.purge(retention)

    def purge(self, retention: timedelta) -> int:
        before = self.clock.now() - retention
        total = 0
        while True:
            gone = self.store.purge_deleted(before, BATCH)
            total += gone
            if gone < BATCH:
                break
        if total:
            log.info("recycle bin: forgot %d record(s) deleted before %s", total, before.isoformat())
        return total
