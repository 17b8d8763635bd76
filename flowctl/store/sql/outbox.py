"""``Outbox`` on SQL: claiming effects to send and recording how each send went.

A claim leases rows (``sending``); the outcome (sent, retry, dead, held by a sending policy, handed
back untried) is written only while the sender still holds the row when it names an ``owner``, so
a row another sender took over after a pause is left to it. PostgreSQL claimers run side by side
(``FOR UPDATE SKIP LOCKED``); on SQLite a claim that would find nothing never takes the write lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from flowctl.engine.state import Effect
from flowctl.ports import OutboxRow
from flowctl.store import rows
from flowctl.store.engines import driver_sql
from flowctl.store.sql.base import CLAIMABLE_OUTBOX, SqlBase, chunks
from flowctl.store.tables import outbox


def due_ids_per_status(skip_channels: Sequence[str] = ()) -> sa.Select[tuple[int]]:
    """The first ``:limit`` due outbox ids, as one ordered, limited scan per status, merged.

    The single ``WHERE status = 'pending' OR …  ORDER BY id LIMIT n`` that PostgreSQL runs makes
    SQLite collect every due row and sort them (a multi-index OR, then a temporary B-tree): a
    claim then costs the whole backlog (50 ms at 64,000 pending messages in a 200/s soak), so a
    sender that falls behind falls further behind. Each branch here walks ``(status, id)`` and
    stops after ``:limit`` rows; the result is the same ids. A status is compared by ``=``, not
    ``IN``, so that without ``skip_channels`` the statement has no expanding parameter and
    :meth:`~flowctl.store.sql.base.SqlBase._rows` runs it on the driver, compiled once.
    """
    o = outbox.c
    now: sa.BindParameter[datetime] = sa.bindparam("now")
    skip = [o.channel.not_in(list(skip_channels))] if skip_channels else []
    waiting = [  # tried, or held by a sending policy: due at next_attempt_at
        sa.and_(o.status == status, sa.or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now))
        for status in CLAIMABLE_OUTBOX
        if status != "pending"
    ]
    branches = [
        o.status == "pending",  # never tried: due whatever the clock says (it may have gone back)
        *waiting,
        sa.and_(o.status == "sending", o.lease_until <= now),
    ]
    limited = [
        sa.select(o.id).where(branch, *skip).order_by(o.id).limit(sa.bindparam("limit", type_=sa.Integer())).subquery()
        for branch in branches
    ]
    merged = sa.union_all(*(sa.select(each.c.id) for each in limited)).subquery()
    return sa.select(merged.c.id).order_by(merged.c.id).limit(sa.bindparam("limit", type_=sa.Integer()))


_DUE_IDS = due_ids_per_status()

# SQLite's claim and sent mark, built once and run on the driver (``SqlBase._rows``/``_prepare``):
# through SQLAlchemy each cost more than SQLite's own work, about 100 us of a delivery round's
# CPU per message, and the round holds the write lock (and the one core) that requests wait for
_CLAIM_DUE = (
    sa.update(outbox)
    .where(outbox.c.id.in_(_DUE_IDS.scalar_subquery()))
    .values(
        status="sending",
        lease_owner=sa.bindparam("b_owner"),
        lease_until=sa.bindparam("b_until"),
        attempts=outbox.c.attempts + 1,
    )
    .returning(*outbox.c)
)
_MARK_SENT = (
    sa.update(outbox)
    .where(outbox.c.id == sa.bindparam("b_id"))
    .values(status="sent", sent_at=sa.bindparam("b_now"), lease_owner=None, lease_until=None)
)
_MARK_SENT_HELD = _MARK_SENT.where(outbox.c.status == "sending", outbox.c.lease_owner == sa.bindparam("b_owner"))
_OUTBOX_COLUMNS = [column.key for column in outbox.c]


class SqlOutbox(SqlBase):
    """Effects to send: claims and their outcomes."""

    def claim_outbox(
        self, now: datetime, limit: int, owner: str, lease_seconds: float, skip_channels: Sequence[str] = ()
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` rows that are due (pending or retry, ``next_attempt_at`` passed)
        or whose send was cut off (``sending`` with its lease run out), none of ``skip_channels``
        (still busy sending); status becomes ``sending`` and ``attempts`` grows by one."""
        if limit <= 0:
            return []
        if not self._postgres and not skip_channels:
            return self._claim_due(now, limit, owner, lease_seconds)
        if self._postgres:
            claimable = self._claimable_outbox
            if skip_channels:
                claimable = claimable.where(outbox.c.channel.not_in(list(skip_channels)))
        else:
            claimable = due_ids_per_status(skip_channels)
        # kept=False: the statement has an expanding IN (the channels), which only SQLAlchemy renders
        if not self._postgres and not self._any(claimable, {"now": now, "limit": 1}, kept=False):
            return []  # nothing due: no write transaction, no turn at the write lock
        until = now + timedelta(seconds=lease_seconds)
        due = claimable.params(now=now, limit=limit).scalar_subquery()
        stmt = (
            sa.update(outbox)
            .where(outbox.c.id.in_(due))
            .values(status="sending", lease_owner=owner, lease_until=until, attempts=outbox.c.attempts + 1)
            .returning(*outbox.c)
        )
        with self._write_lock, self._lease_writer.begin() as conn:
            claimed = [rows.outbox_from(row._mapping) for row in conn.execute(stmt)]
        return sorted(claimed, key=lambda row: row.id)

    def _claim_due(self, now: datetime, limit: int, owner: str, lease_seconds: float) -> list[OutboxRow]:
        """:meth:`claim_outbox` on SQLite for every channel: the statements run on the driver."""
        if not self._any(_DUE_IDS, {"now": now, "limit": 1}):
            return []  # nothing due: no write transaction, no turn at the write lock
        params = {"now": now, "limit": limit, "b_owner": owner, "b_until": now + timedelta(seconds=lease_seconds)}
        with self._write_lock, self._lease_writer.begin() as conn:
            found = self._rows(conn, _CLAIM_DUE, params)
        claimed = [rows.outbox_from(dict(zip(_OUTBOX_COLUMNS, row, strict=True))) for row in found]
        return sorted(claimed, key=lambda row: row.id)

    def release_outbox(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> None:
        """Hand claimed rows back, due now: they were not tried (their claim ran out of time before
        their turn), so the claim's attempt is undone and the next claim takes them at once. With
        ``owner``, rows another sender took over meanwhile stay with it."""
        if not row_ids:
            return
        o = outbox.c
        with self._write_lock, self._writer.begin() as conn:
            for chunk in chunks(list(row_ids)):
                conn.execute(
                    sa.update(outbox)
                    .where(o.id.in_(chunk), o.status == "sending", self._held_by(owner))
                    .values(
                        status=sa.case((o.attempts > 1, "retry"), else_="pending"),
                        attempts=sa.case((o.attempts > 0, o.attempts - 1), else_=0),
                        next_attempt_at=now,
                        lease_owner=None,
                        lease_until=None,
                    )
                )

    def mark_sent(self, row_id: int, now: datetime) -> None:
        self.mark_sent_many([row_id], now)

    @staticmethod
    def _held_by(owner: str | None) -> sa.ColumnElement[bool]:
        """Rows ``owner`` still holds (``sending``, its lease); any row without an owner to check."""
        o = outbox.c
        return sa.true() if owner is None else sa.and_(o.status == "sending", o.lease_owner == owner)

    def mark_sent_many(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> list[int]:
        """Mark several rows sent in one transaction (one commit for a round of deliveries). With
        ``owner``, rows another sender took over are left to it; their ids are returned."""
        if not row_ids:
            return []
        if not self._postgres:  # one kept statement per row on the driver: its count says whether it was held
            stmt = _MARK_SENT if owner is None else _MARK_SENT_HELD
            held = {} if owner is None else {"b_owner": owner}
            prepared = self._prepare(stmt, [{"b_id": row_id, "b_now": now, **held} for row_id in row_ids])
            assert prepared is not None and isinstance(prepared[0], str)
            sql, binds = prepared
            with self._write_lock, self._writer.begin() as conn:
                counts = [driver_sql(conn, sql, bound).rowcount for bound in binds]
            return [row_id for row_id, count in zip(row_ids, counts, strict=True) if count == 0]
        o = outbox.c
        marked: set[int] = set()
        with self._write_lock, self._writer.begin() as conn:
            for chunk in chunks(list(row_ids)):
                stmt = (
                    sa.update(outbox)
                    .where(o.id.in_(chunk), self._held_by(owner))
                    .values(status="sent", sent_at=now, lease_owner=None, lease_until=None)
                    .returning(o.id)
                )
                marked.update(conn.execute(stmt).scalars())
        return [row_id for row_id in row_ids if row_id not in marked]

    def mark_failed(
        self, row_id: int, error: str, next_attempt_at: datetime | None, now: datetime, *, owner: str | None = None
    ) -> bool:
        """Retry at ``next_attempt_at``; without one the row is dead (an operator may retry it).
        With ``owner``, False (nothing written) when another sender took the row over."""
        status = "dead" if next_attempt_at is None else "retry"
        stmt = (
            sa.update(outbox)
            .where(outbox.c.id == row_id, self._held_by(owner))
            .values(
                status=status, last_error=error, next_attempt_at=next_attempt_at, lease_owner=None, lease_until=None
            )
        )
        with self._write_lock, self._writer.begin() as conn:
            done = conn.execute(stmt).rowcount == 1
        return done or owner is None

    def retry_outbox(self, row_id: int, now: datetime) -> bool:
        """Send a dead, waiting-to-retry or held row again now, with a fresh attempt budget."""
        stmt = (
            sa.update(outbox)
            .where(outbox.c.id == row_id, outbox.c.status.in_(rows.RETRYABLE))
            .values(status="pending", attempts=0, next_attempt_at=now, lease_owner=None, lease_until=None)
        )
        with self._write_lock, self._writer.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def cancel_outbox(self, row_id: int, now: datetime) -> bool:
        """A row no sender holds is never sent: ``cancelled``, which no claim takes."""
        stmt = (
            sa.update(outbox)
            .where(outbox.c.id == row_id, outbox.c.status.in_(rows.CANCELLABLE))
            .values(status="cancelled", next_attempt_at=None, lease_owner=None, lease_until=None)
        )
        with self._write_lock, self._writer.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def hold_outbox_many(
        self, holds: Sequence[tuple[int, datetime, str]], now: datetime, *, owner: str | None = None
    ) -> list[int]:
        """Hold claimed rows until a time a sending policy allows: status ``held``, ``next_attempt_at``
        that time, ``last_error`` the reason. A hold is not an attempt: the claim's count is undone.
        With ``owner``, rows another sender took over are left to it; their ids are returned."""
        if not holds:
            return []
        o = outbox.c
        stmt = (
            sa.update(outbox)
            .where(o.id == sa.bindparam("b_id"))
            .values(
                status="held",
                next_attempt_at=sa.bindparam("b_until"),
                last_error=sa.bindparam("b_why"),
                attempts=sa.case((o.attempts > 0, o.attempts - 1), else_=0),
                lease_owner=None,
                lease_until=None,
            )
        )
        lost: set[int] = set()
        with self._write_lock, self._writer.begin() as conn:
            if owner is not None:
                for part in chunks([row_id for row_id, _, _ in holds]):
                    query = sa.select(o.id).where(o.id.in_(part), self._held_by(owner))
                    mine = set(conn.execute(query.with_for_update() if self._postgres else query).scalars())
                    lost.update(row_id for row_id in part if row_id not in mine)
            kept = [{"b_id": i, "b_until": until, "b_why": why} for i, until, why in holds if i not in lost]
            if kept:
                conn.execute(stmt, kept)
        return sorted(lost)

    def release_held(self, channels: Sequence[str], reason_prefix: str, now: datetime) -> int:
        """Held rows of ``channels`` whose reason starts with ``reason_prefix`` fall due now: what
        held them was fixed. Returns how many."""
        if not channels:
            return 0
        o = outbox.c
        stmt = (
            sa.update(outbox)
            .where(
                o.status == "held",
                o.channel.in_(list(channels)),
                o.last_error.startswith(reason_prefix, autoescape=True),
            )
            .values(next_attempt_at=now)
        )
        with self._write_lock, self._writer.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def clamp_retries(self, longest: float, now: datetime) -> int:
        """Retries due later than ``longest`` seconds from now (longer than any backoff: the
        clock went back since they were stored) fall due now. Returns how many."""
        o = outbox.c
        stmt = (
            sa.update(outbox)
            .where(o.status == "retry", o.next_attempt_at > now + timedelta(seconds=longest))
            .values(next_attempt_at=now)
        )
        with self._write_lock, self._writer.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def shift_outbox(self, seconds: float, now: datetime) -> int:
        """The wall clock went back ``seconds``: rows waiting (retry, held) until a time of the
        old clock fall due that much earlier, never before ``now``. Returns how many moved."""
        o = outbox.c
        step = timedelta(seconds=seconds)
        find = sa.select(o.id, o.next_attempt_at).where(o.status.in_(("retry", "held")), o.next_attempt_at > now)
        move = sa.update(outbox).where(o.id == sa.bindparam("b_id")).values(next_attempt_at=sa.bindparam("b_at"))
        with self._write_lock, self._writer.begin() as conn:
            found = [{"b_id": row.id, "b_at": max(now, row.next_attempt_at - step)} for row in conn.execute(find)]
            if found:
                conn.execute(move, found)
        return len(found)

    def sent_counts(self, channel: str, since: datetime, recipients: Sequence[str] = ()) -> tuple[int, dict[str, int]]:
        """Rows of ``channel`` sent at or after ``since``: in all, and per recipient among
        ``recipients``. Reads the (channel, sent_at) and (channel, recipient, sent_at) indexes."""
        o = outbox.c
        count = sa.func.count()
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(count).select_from(outbox).where(o.channel == channel, o.sent_at >= since)
            ).scalar_one()
            per: dict[str, int] = {}
            for part in chunks(sorted(set(recipients))):
                stmt = (
                    sa.select(o.recipient, count)
                    .where(o.channel == channel, o.recipient.in_(part), o.sent_at >= since)
                    .group_by(o.recipient)
                )
                per.update({str(r): int(n) for r, n in conn.execute(stmt)})
        return int(total), per

    def queue_outbox(self, effects: Sequence[Effect], now: datetime) -> list[str]:
        """Insert each effect's row unless its key is stored (RETURNING says which went in)."""
        insert = self._insert_for(outbox).on_conflict_do_nothing(index_elements=["key"]).returning(outbox.c.key)
        queued: list[str] = []
        with self._write_lock, self._writer.begin() as conn:
            for effect in effects:
                if conn.execute(insert, rows.outbox_row(effect, now)).first() is not None:
                    queued.append(effect.key)
        return queued
