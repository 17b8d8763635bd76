"""The retention role: what grows with every change is removed once it is old enough.

What a purge may remove, per kind, and what it never removes (the guarantees that need a row):

* ``changes``: processed (done or failed) changes processed before the cut-off. Never one that is
  pending or claimed (it is work), nor the newest change of its record (a record's timeline and
  its last write stay readable however old). A change's row is its idempotency key: a key is a
  duplicate for as long as its change is kept (Config ``retention.processed_changes``).
* ``runs``: finished (done, failed, cancelled) runs whose last step is before the cut-off, with
  their traces. Never an open run (running, waiting, queued): its timers and waits need it.
* ``messages``: sent outbox rows sent before the cut-off, and cancelled ones queued before it.
  Never a row that may still go (pending, sending, retry, held) nor a dead one: dead waits for
  someone to retry or cancel it.
* ``care``: care occurrences that ran (``done_at`` before the cut-off) and the day pins
  (``care_days``) of days before it. Never a claimed occurrence. The caller keeps the cut-off
  behind every process's catch-up window, so the ledger still says "ran" for any occurrence a
  tick could look at again (once per occurrence).

Timers are never purged (a timer is deleted when it fires). Notes, stage history, record dates
and source rows belong to a record or a source, not to a change: they go with their record (the
recycle bin) or stay, bounded by the data. Config versions stay for rollback.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

PurgeKind = Literal["changes", "runs", "messages", "care"]
PURGE_KINDS: tuple[PurgeKind, ...] = ("changes", "runs", "messages", "care")


class Purging(Protocol):
    def purge(self, kind: PurgeKind, before: datetime, limit: int = 1000) -> int:
        """Remove up to ``limit`` rows of ``kind`` that are old enough (see the module) in one
        short transaction, oldest first; returns how many went (fewer than ``limit``: caught up)."""
        ...

    def purgeable(self, kind: PurgeKind, before: datetime) -> int:
        """How many rows :meth:`purge` would remove with this cut-off, all batches together."""
        ...

    def reclaim_space(self, pages: int = 2048) -> int:
        """Give up to ``pages`` free pages back to the file system (SQLite with
        ``auto_vacuum=INCREMENTAL``); returns the free pages left. PostgreSQL's autovacuum makes
        the space reusable on its own: 0 there, and in memory."""
        ...
