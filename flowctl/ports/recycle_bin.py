"""The recycle bin's role: deleted records are kept (soft delete) until their retention ends.

Listing deleted records is a read (``Inspection.list_records(deleted=True)``) and restoring one is
a change like any write (``ChangeOp`` ``restore``, through the queue, so its automations run);
what only the recycle bin does is forget them for good.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from flowctl.engine.state import Record


class RecycleBin(Protocol):
    def deleted_records(
        self, object: str, after: str = "", limit: int = 100, stage: str = ""
    ) -> list[tuple[Record, datetime | None]]:
        """The deleted records of ``object`` (in ``stage``) by id from just after ``after``, each with
        when it was deleted (its last write; None for a record written before the store kept the time)."""
        ...

    def purge_deleted(self, before: datetime, limit: int = 1000) -> int:
        """Remove for good up to ``limit`` records deleted before ``before`` (their last write was
        the delete), with their notes, stage history and date index, in one transaction; returns
        how many went. Their runs and messages stay (what happened is kept). A record deleted,
        then written again is live and stays."""
        ...
