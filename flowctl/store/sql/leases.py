"""``Leases`` on SQL: the heartbeat's extension, the end of a dead holder's leases, giving up on work.

A change or timer whose every claimer died (its lease ran out ``max_attempts`` times) is failed
rather than handed out again, taking turns with change claimers on PostgreSQL and skipping rows a
commit is finishing, so no change ends both done and failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import sqlalchemy as sa

from flowctl.engine.state import ACTIVE, Timer
from flowctl.ports import StoredChange
from flowctl.store import rows
from flowctl.store.sql.base import PG_CLAIM_LOCK, SqlBase, chunks
from flowctl.store.tables import changes, outbox, runs, timers


class SqlLeases(SqlBase):
    """Leases across replicas: extend, end, give up."""

    def extend_leases(
        self,
        owner: str,
        until: datetime,
        *,
        change_seqs: Sequence[int] = (),
        timer_ids: Sequence[str] = (),
        outbox_ids: Sequence[int] = (),
    ) -> int:
        """The heartbeat: push ``lease_until`` of work ``owner`` still holds to ``until``. Rows another
        claimer took over (our lease ran out first) are left alone. Returns how many were extended."""
        c, t, o = changes.c, timers.c, outbox.c
        extended = 0
        with self._write_lock, self._writer.begin() as conn:
            for part in chunks(list(change_seqs)):
                extended += conn.execute(
                    sa.update(changes)
                    .where(c.seq.in_(part), c.status == "claimed", c.lease_owner == owner)
                    .values(lease_until=until)
                ).rowcount
            for part in chunks(list(timer_ids)):
                extended += conn.execute(
                    sa.update(timers).where(t.id.in_(part), t.lease_owner == owner).values(lease_until=until)
                ).rowcount
            for part in chunks(list(outbox_ids)):
                extended += conn.execute(
                    sa.update(outbox)
                    .where(o.id.in_(part), o.status == "sending", o.lease_owner == owner)
                    .values(lease_until=until)
                ).rowcount
        return extended

    def expire_leases(self, now: datetime, owner: str | None = None) -> int:
        """End every lease at ``now`` (or every lease of ``owner``): for a daemon that knows their
        holders are dead (the SQLite lock; an engine process that exited), so the work a killed
        process held is taken again at once, not after its lease. Attempts stay counted. Returns
        how many leases ended."""
        ended = 0
        with self._write_lock, self._writer.begin() as conn:
            for table in (changes, timers, outbox):
                held = table.c.lease_until > now
                if owner is not None:
                    held = sa.and_(held, table.c.lease_owner == owner)
                ended += conn.execute(sa.update(table).where(held).values(lease_until=now)).rowcount
        return ended

    def fail_exhausted_changes(self, now: datetime, max_attempts: int) -> list[StoredChange]:
        """Fail the changes whose lease ran out after ``max_attempts`` claims (each worker that took
        them died or hung) instead of handing them out again; their error says so."""
        c = changes.c
        dead = sa.and_(c.status == "claimed", c.lease_until <= now, c.attempts >= max_attempts)
        with self._write_lock, self._writer.begin() as conn:
            if self._postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_CLAIM_LOCK)))
            # locked, skipping rows a worker's commit is finishing now (it still holds them): a commit
            # that comes after this one is refused (fencing), so no change ends both done and failed
            query = changes.select().where(dead)
            found = [
                rows.change_from(row._mapping)
                for row in conn.execute(query.with_for_update(skip_locked=True) if self._postgres else query)
            ]
            failed = [
                replace(
                    ch,
                    status="failed",
                    error=f"gave up after {ch.attempts} attempts: the lease of every "
                    f"worker that claimed it ran out (it died or hung)",
                )
                for ch in found
            ]
            params = [{"b_seq": ch.seq, "b_status": ch.status, "b_now": now, "b_error": ch.error} for ch in failed]
            self._many(conn, self._finish_changes, params)
        return failed  # as they now stand (the reaper logs their error), as MemoryStore returns them

    def fail_exhausted_timers(self, now: datetime, max_attempts: int) -> list[Timer]:
        """Remove the timers claimed ``max_attempts`` times whose last lease ran out too, and fail
        their runs: a timer whose firing kills every worker must not go round forever."""
        t = timers.c
        dead = sa.and_(t.lease_until.is_not(None), t.lease_until <= now, t.attempts >= max_attempts)
        with self._write_lock, self._writer.begin() as conn:
            found = [
                rows.timer_from(row._mapping)
                for row in conn.execute(
                    timers.select().where(dead).with_for_update(skip_locked=True)
                    if self._postgres
                    else timers.select().where(dead)
                )
            ]
            for part in chunks([timer.id for timer in found]):
                conn.execute(sa.delete(timers).where(t.id.in_(part)))
            for part in chunks(sorted({timer.run_id for timer in found})):
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.id.in_(part), runs.c.status.in_(ACTIVE))
                    .values(status="failed", updated_at=now.isoformat())
                )
        return found
