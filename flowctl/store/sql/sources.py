"""``SourceCursors`` on SQL: a polling source's state under a lease, and a hash per copied row.

The state (cursor) lives in ``source_cursors`` with the lease's owner and end inside it; one
replica polls a source at a time. ``source_rows`` holds each copied key's hash (what changed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flowctl.store.sql.base import SqlBase, chunks
from flowctl.store.tables import source_cursors, source_rows


class SqlSourceCursors(SqlBase):
    """Polling sources: a cursor under a lease, row hashes."""

    def claim_source(self, source: str, owner: str, now: datetime, lease_seconds: float) -> dict[str, Any] | None:
        """Lease the poller of ``source`` to ``owner`` (one replica polls a source at a time) and
        return its saved state (``{}`` the first time); None while another owner's lease runs."""
        s = source_cursors.c
        until = (now + timedelta(seconds=lease_seconds)).isoformat()
        with self._write_lock, self._writer.begin() as conn:
            query = sa.select(s.cursor).where(s.source == source)
            if self._postgres:
                conn.execute(
                    self._insert_for(source_cursors).on_conflict_do_nothing(),
                    {"source": source, "cursor": {}, "updated_at": now},
                )
                query = query.with_for_update()
            state = conn.execute(query).scalar()
            state = dict(state or {})
            holder, held_until = state.get("owner"), state.get("lease_until")
            if holder and holder != owner and held_until and datetime.fromisoformat(held_until) > now:
                return None
            state.update(owner=owner, lease_until=until)
            conn.execute(self._upsert_for(source_cursors), {"source": source, "cursor": state, "updated_at": now})
        state.pop("owner", None)
        state.pop("lease_until", None)
        return state

    def save_source(
        self,
        source: str,
        state: Mapping[str, Any],
        hashes: Mapping[str, str | None],
        owner: str,
        now: datetime,
        lease_seconds: float,
    ) -> None:
        """Store a poll's result in one transaction: the row hashes (None: the row is gone) and the
        source's state (its cursor), renewing ``owner``'s lease."""
        r = source_rows.c
        until = (now + timedelta(seconds=lease_seconds)).isoformat()
        gone = [key for key, value in hashes.items() if value is None]
        kept = [{"source": source, "key": key, "hash": value} for key, value in hashes.items() if value is not None]
        with self._write_lock, self._writer.begin() as conn:
            for part in chunks(gone):
                conn.execute(sa.delete(source_rows).where(r.source == source, r.key.in_(part)))
            self._many(conn, self._upsert_source_rows, kept)
            conn.execute(
                self._upsert_for(source_cursors),
                {"source": source, "cursor": {**state, "owner": owner, "lease_until": until}, "updated_at": now},
            )

    def source_hashes(self, source: str, keys: Sequence[str]) -> dict[str, str]:
        """The stored hash of each of ``keys`` seen before (absent: never seen, or deleted)."""
        r = source_rows.c
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for part in chunks(sorted(set(keys))):
                out.update(conn.execute(sa.select(r.key, r.hash).where(r.source == source, r.key.in_(part))).all())
        return out

    def source_keys(self, source: str) -> set[str]:
        """Every key of ``source`` the store holds a copy of (the delete scan compares them)."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(source_rows.c.key).where(source_rows.c.source == source))
            return {str(key) for key in found.scalars()}
