"""The recycle bin's role: deleted records are kept (soft delete) until their retention ends.

Listing deleted records is a read (``Inspection.list_records(deleted=True)``) and restoring one is
a change like any write (``ChangeOp`` ``restore``, through the queue, so its automations run);
what only the recycle bin does is forget them for good.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class RecycleBin(Protocol):
    def purge_deleted(self, before: datetime, limit: int = 1000) -> int:
        """Remove for good up to ``limit`` records deleted before ``before`` (their last write was
        the delete), with their notes, stage history and date index, in one transaction; returns
        how many went. Their runs and messages stay (what happened is kept). A record deleted,
        then written again is live and stays."""
        ...
