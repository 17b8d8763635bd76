"""``ChangeQueue`` on SQL: appending accepted writes, claiming changes and timers, committing a batch.

Claims are leases (``lease_owner``/``lease_until``, ``attempts + 1``); a lease that ran out makes
the row claimable again. A record's changes go one at a time in seq order: a change is handed out
only with every earlier open change of its record. ``commit_batch`` writes records, runs, timers,
outbox rows, stage entries and notes and finishes the inputs in one transaction; with ``owner`` it is fenced, so a
worker paused past its lease cannot write over the new holder's work (:class:`LeaseLost`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowctl.engine.state import Timer
from flowctl.ports import AppendResult, InlineRun, LeaseLost, NewChange, Processed, StoredChange
from flowctl.store import rows
from flowctl.store.dates import date_rows
from flowctl.store.engines import driver_sql
from flowctl.store.sql.base import PG_APPEND_LOCK, PG_CLAIM_LOCK, SCAN_MIN, SqlBase, by_object, chunks
from flowctl.store.tables import changes, timers

log = logging.getLogger("flowctl.store")

_CHANGE_COLUMNS = [column.key for column in changes.c]


class _ChangesLost(Exception):
    """Inside a fenced commit: a change of the batch is no longer held (rolls the transaction back)."""


class _InlineFailed(Exception):
    """Running changes inside their append failed (args: how many, the error): store them again
    without it, and the worker meets the failure as it would have anyway."""


class SqlChangeQueue(SqlBase):
    """Append, claim and commit the work of the worker loop."""

    def append_changes(self, changes_: Sequence[NewChange], inline: InlineRun | None = None) -> list[AppendResult]:
        """Store new changes in one transaction. A key seen before (stored, or earlier in this
        batch) is not stored again: its result carries the first change's seq, ``duplicate=True``.
        With ``inline``, the new changes no worker could hold back run in the same transaction
        (:meth:`_run_inline`; on PostgreSQL only when no other replica is appending); if that run
        or its writes fail, the transaction is rolled back and the changes are stored again
        without it, for the worker."""
        if not changes_:
            return []
        try:
            return self._append(changes_, inline)
        except _InlineFailed as failed:
            log.warning("%d changes left to the worker: running them as they were stored failed: %s", *failed.args)
            return self._append(changes_, None)

    def _append(self, changes_: Sequence[NewChange], inline: InlineRun | None) -> list[AppendResult]:
        fresh: dict[str, dict[str, Any]] = {}
        for change in changes_:
            fresh.setdefault(change.idempotency_key, rows.change_row(change))
        # SQLite: a plain executemany, then the new seqs read back (the write transaction is
        # exclusive, so every row above the old maximum is this batch's); a third of the time
        # SQLAlchemy's INSERT … RETURNING takes, all of it under the write lock. One change is
        # one INSERT: its seq is the rowid.
        prepared = None if self._postgres else self._prepare(self._insert_changes_plain, fresh.values())
        processed: list[Processed] = []  # run inline
        with self._write_lock, self._writer.begin() as conn:
            inserted: dict[str, int]
            before: int  # every change stored before this batch has a seq up to this one
            if prepared is not None and len(fresh) == 1:
                (key,), (row,) = fresh, prepared[1]
                cursor = driver_sql(conn, prepared[0], row)
                inserted = {key: cursor.lastrowid} if cursor.rowcount == 1 else {}
                before = cursor.lastrowid - 1 if inserted else 0
            elif prepared is not None:
                before = driver_sql(conn, "SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
                self._run(conn, prepared)
                inserted = dict(driver_sql(conn, "SELECT idempotency_key, seq FROM changes WHERE seq > ?", (before,)))
            else:
                if not conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(PG_APPEND_LOCK))).scalar():
                    # another replica is appending: holding the turn for a run would make the next
                    # ones wait too (under load that cost more than it saved); the queue takes these
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_APPEND_LOCK)))
                    inline = None
                inserted = dict(conn.execute(self._insert_changes, list(fresh.values())).all())
                before = min(inserted.values(), default=1) - 1  # the append lock: every earlier seq is committed
            if inline is not None and inserted:
                processed = self._run_inline(conn, fresh, inserted, before, inline)
            existing = [key for key in fresh if key not in inserted]
            seqs = dict(inserted)
            prints = {key: fresh[key]["fingerprint"] or "" for key in inserted}
            for part in chunks(existing):
                stmt = sa.select(changes.c.idempotency_key, changes.c.seq, changes.c.fingerprint).where(
                    changes.c.idempotency_key.in_(part)
                )
                for key, seq, stored in conn.execute(stmt).all():
                    seqs[key], prints[key] = seq, stored or ""
        done = {item.change.seq for item in processed if item.change is not None}
        results = []
        for change in changes_:
            key = change.idempotency_key
            new = key in inserted
            if new:
                inserted.pop(key)  # a second change with this key in the batch is a duplicate
            seq = seqs[key]
            results.append(AppendResult(seq=seq, duplicate=not new, fingerprint=prints[key], processed=seq in done))
        if processed and inline is not None:
            inline.committed(processed)
        return results

    def _run_inline(
        self,
        conn: Connection,
        fresh: Mapping[str, Mapping[str, Any]],
        inserted: Mapping[str, int],
        before: int,
        inline: InlineRun,
    ) -> list[Processed]:
        """Inside the append's write transaction: run the new changes of records that no worker
        could be holding back, and write what they decided with them, done.

        A record with an open change stored before this batch (``before``: every such change is
        committed, under SQLite's write lock or PostgreSQL's append lock), or a due timer under a
        live lease, is left to the queue, and with it every change of that record in the batch;
        the others have nothing before them, and no worker can take anything of theirs until the
        commit: on SQLite no claim starts before it, on PostgreSQL claims only find records with
        open changes, and :meth:`_held_back` keeps the record's timers from other replicas. If
        the run or its writes fail, :class:`_InlineFailed` rolls the transaction back (a
        savepoint would spare the second try, but SQLite journals a savepoint's writes in a
        temporary file: 400 us of system time on every commit)."""
        now = inline.now()
        records = {(row["object"], row["record_id"]) for row in fresh.values()}
        if self._postgres:
            busy = self._held_back(conn, records, before, now)
        else:
            held = self._held_back_record
            some = [(key, {"object": key[0], "id": key[1], "before": before, "now": now}) for key in records]
            busy = {key for key, params in some if self._rows(conn, held, params)[0][0]}
        stored = sorted((seq, fresh[key]) for key, seq in inserted.items())  # the rows as inserted, in seq order
        taken = [
            rows.change_from({**row, "seq": seq})
            for seq, row in stored
            if (row["object"], row["record_id"]) not in busy
        ]
        if not taken:
            return []
        self._bound.conn = conn  # the engine's reads see this transaction (SqlBase._reading)
        try:
            items = inline.run(taken, now)
            plan = rows.plan_batch(items, now)
            self._write_plan(conn, plan, self._plan_writes(plan))
            self._run(conn, self._prepare(self._finish_changes, [{**row, "b_now": now} for row in plan.changes]))
        except Exception as exc:  # rolled back; append_changes stores them again without it
            raise _InlineFailed(len(taken), exc) from exc
        finally:
            self._bound.conn = None
        return items

    def _held_back(
        self, conn: Connection, records: set[tuple[str, str]], before: int, now: datetime
    ) -> set[tuple[str, str]]:
        """PostgreSQL: which of ``records`` a worker may hold back (a change up to ``before`` still
        pending or claimed, a timer under a live lease), read on the records' indexes, not other
        replicas' backlog; and every timer of ``records`` locked until the commit.

        Another replica's timer claim (``FOR UPDATE SKIP LOCKED``) passes over the locked rows, so
        no timer of a record runs beside its inline change; a claim in progress is waited for, and
        its lease is then read here. Timers are found on their own record index (0013)."""
        busy: set[tuple[str, str]] = set()
        for object_, ids in by_object(records):
            some = {"object": object_, "ids": list(ids)}
            busy.update((object_, rid) for (rid,) in conn.execute(self._open_changes_of, {**some, "before": before}))
            timers_ = conn.execute(self._timers_of_records, some)
            busy.update((object_, rid) for rid, until in timers_ if until is not None and until > now)
        return busy

    def claim_changes(self, limit: int, owner: str, now: datetime, lease_seconds: float) -> list[StoredChange]:
        """Lease up to ``limit`` changes, in seq order, that can run now.

        A record's change is handed out only with every earlier open change of that record:
        never while an earlier one waits unclaimed outside this batch or is leased to a worker.
        A change whose lease ran out is claimable again. Each claim adds one to ``attempts``.
        """
        if limit <= 0:
            return []
        if not self._postgres and not self._any(self._claimable_change_exists, {"now": now}):
            return []  # nothing to claim (the worker's round after each batch): no write transaction
        until = now + timedelta(seconds=lease_seconds)
        with self._write_lock, self._lease_writer.begin() as conn:
            if self._postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_CLAIM_LOCK)))
            wanted = self._plan_claim(conn, limit, now)
            if self._postgres and wanted:
                wanted = self._lock_prefixes(conn, wanted, now)
            if not wanted:
                return []
            claimed: list[StoredChange] = []
            lease = {"now": now, "owner": owner, "until": until}
            seqs = [seq for seq, _ in wanted]
            if self._postgres:
                for part in chunks(seqs):
                    found = conn.execute(self._claim_changes, {"seqs": list(part), **lease})
                    claimed.extend(rows.change_from(row._mapping) for row in found)
            else:
                listed = self._rows(conn, self._claim_listed_changes, {"seqs_json": json.dumps(seqs), **lease})
                claimed.extend(rows.change_from(dict(zip(_CHANGE_COLUMNS, row, strict=True))) for row in listed)
        return sorted(claimed, key=lambda change: change.seq)

    def _plan_claim(self, conn: Connection, limit: int, now: datetime) -> list[tuple[int, tuple[str, str]]]:
        leased: dict[tuple[str, str], int] = {}  # record -> its lowest seq under a live lease
        expired: list[tuple[int, tuple[str, str]]] = []
        for seq, object_, record_id, _, lease_until in self._rows(conn, self._claimed_changes, {}):
            key = (object_, record_id)
            if lease_until is not None and lease_until > now:
                leased[key] = min(seq, leased.get(key, seq))
            else:
                expired.append((seq, key))
        expired.sort()
        wanted: list[tuple[int, tuple[str, str]]] = []
        held_back: set[tuple[str, str]] = set()  # records with an open change left behind
        scan = max(SCAN_MIN, 2 * limit)
        after = 0
        while True:
            page = [
                (seq, (obj, rid))
                for seq, obj, rid, *_ in self._rows(conn, self._pending_changes, {"after": after, "scan": scan})
            ]
            last = page[-1][0] if len(page) == scan else None  # None: nothing pending beyond this page
            merged = [e for e in expired if last is None or e[0] <= last]
            expired = expired[len(merged) :]
            for seq, key in sorted(page + merged):
                if key in held_back or leased.get(key, seq) < seq:
                    held_back.add(key)
                    continue
                wanted.append((seq, key))
                if len(wanted) == limit:
                    return wanted
            if last is None:
                return wanted
            after = last

    def _lock_prefixes(
        self, conn: Connection, wanted: list[tuple[int, tuple[str, str]]], now: datetime
    ) -> list[tuple[int, tuple[str, str]]]:
        """Lock what the plan wants, skipping rows a worker is finishing at this moment; a record
        whose change is skipped keeps its later changes back as well."""
        got: set[int] = set()
        for part in chunks([seq for seq, _ in wanted]):
            stmt = (
                sa.select(changes.c.seq)
                .where(changes.c.seq.in_(part), self._claimable_change(now))
                .with_for_update(skip_locked=True)
            )
            got.update(conn.execute(stmt).scalars())
        kept, lost = [], set()
        for seq, key in wanted:
            if key in lost or seq not in got:
                lost.add(key)
            else:
                kept.append((seq, key))
        return kept

    @staticmethod
    def _claimable_change(now: datetime) -> sa.ColumnElement[bool]:
        c = changes.c
        return sa.or_(c.status == "pending", sa.and_(c.status == "claimed", c.lease_until <= now))

    def claim_due_timers(self, now: datetime, limit: int, owner: str, lease_seconds: float) -> list[Timer]:
        """Lease up to ``limit`` timers due at ``now``, earliest first. Reads the ``due`` index
        from its start, so the cost follows what is due, not how many timers wait."""
        if limit <= 0:
            return []
        if not self._postgres and not self._any(self._due_timers, {"now": now, "limit": 1}):
            return []  # nothing due: no write transaction, no turn at the write lock
        until = now + timedelta(seconds=lease_seconds)
        due = self._due_timers.params(now=now, limit=limit).scalar_subquery()
        stmt = (
            sa.update(timers)
            .where(timers.c.id.in_(due))
            .values(lease_owner=owner, lease_until=until, attempts=timers.c.attempts + 1)
            .returning(*timers.c)
        )
        with self._write_lock, self._lease_writer.begin() as conn:
            claimed = [rows.timer_from(row._mapping) for row in conn.execute(stmt)]
        return sorted(claimed, key=lambda timer: (timer.due, timer.id))

    def commit_batch(self, items: Sequence[Processed], now: datetime, *, owner: str | None = None) -> None:
        """Write everything the batch decided, and finish its changes, in one transaction.

        With ``owner`` the commit is fenced: it writes nothing and raises :class:`LeaseLost` unless
        ``owner`` still holds every change (``claimed``, the claim's ``attempts``) and timer of the
        batch, so a worker paused past its lease does not write over the new owner's work. The
        changes are finished first, by an UPDATE that matches only rows still held and locks
        them to the commit (no extra round trip: its row count tells); fired timers are checked
        by one ``SELECT … FOR UPDATE`` (PostgreSQL; SQLite's write lock serves the same end)."""
        plan = rows.plan_batch(items, now)
        attempts = {i.change.seq: i.change.attempts for i in items if i.change is not None}
        finish = self._finish_changes
        finished = [{**row, "b_now": now} for row in plan.changes]
        if owner is not None:
            finish = self._finish_held_changes
            finished = [{**row, "b_owner": owner, "b_attempts": attempts[row["b_seq"]]} for row in finished]
        writes = self._plan_writes(plan)  # before the write lock: it is held for SQLite's work only
        finishing = self._prepare(finish, finished)
        try:
            self._commit_plan(plan, writes, finishing, len(finished), items, owner)
        except _ChangesLost:  # rolled back; who holds them now is read afterwards, for the log only
            assert owner is not None
            with self.engine.connect() as conn:
                raise LeaseLost("change", owner, len(finished), self._change_holders(conn, attempts, owner)) from None

    def _plan_writes(self, plan: rows.BatchPlan) -> list[Any]:
        """The batch's row writes, every value processed (records first: see :meth:`_write_plan`)."""
        return [
            self._prepare(self._upsert_records, plan.records.values()),
            self._prepare(self._upsert_runs, plan.runs.values()),
            self._prepare(self._upsert_timers, plan.timer_upserts),
            self._prepare(self._insert_outbox, plan.outbox.values()),  # a key stored before is kept
            self._prepare(self._upsert_allocations, plan.allocations.values()),
            self._prepare(self._insert_stage_entries, plan.stage_entries),
            self._prepare(self._insert_notes, plan.notes.values()),
        ]

    def _write_plan(self, conn: Connection, plan: rows.BatchPlan, writes: list[Any]) -> None:
        """Write what :meth:`_plan_writes` prepared, and the date index of the records written."""
        for part in chunks(plan.timer_deletes):
            conn.execute(self._delete_timers, {"ids": list(part)})
        written = list(plan.records.values())
        self._unindex_dates(conn, written)
        self._run_all(conn, [writes[0], self._prepare(self._insert_dates, date_rows(written)), *writes[1:]])

    def _commit_plan(
        self,
        plan: rows.BatchPlan,
        writes: list[Any],
        finishing: Any,
        finished: int,
        items: Sequence[Processed],
        owner: str | None,
    ) -> None:
        with self._write_lock, self._writer.begin() as conn:
            if owner is not None:
                if finishing is not None and self._run(conn, finishing) != finished:
                    raise _ChangesLost
                self._fence_timers(conn, [i.timer.id for i in items if i.timer is not None], owner)
            self._write_plan(conn, plan, writes)
            if owner is None:
                self._run(conn, finishing)

    def _change_holders(self, conn: Connection, attempts: Mapping[int, int], owner: str) -> dict[str, int]:
        """Who holds the changes of a refused batch that ``owner`` lost (``nobody``: finished or
        given back); read after a fenced commit was refused, for its log line."""
        c = changes.c
        found: dict[int, tuple[str, str | None, int]] = {}
        for part in chunks(sorted(attempts)):
            query = sa.select(c.seq, c.status, c.lease_owner, c.attempts).where(c.seq.in_(part))
            found.update((seq, (status, holder, n)) for seq, status, holder, n in conn.execute(query))
        holders: dict[str, int] = {}
        for seq, wanted in attempts.items():
            status, holder, now_attempts = found.get(seq, ("gone", None, 0))
            if (status, holder, now_attempts) != ("claimed", owner, wanted):
                who = holder if status == "claimed" and holder else "nobody"
                holders[who] = holders.get(who, 0) + 1
        return holders

    def _fence_timers(self, conn: Connection, fired: Sequence[str], owner: str) -> None:
        """Raise :class:`LeaseLost` unless ``owner`` holds the lease of every timer in ``fired``;
        on PostgreSQL their rows stay locked to this transaction, so no claim takes them now."""
        if not fired:
            return
        t = timers.c
        held: dict[str, str | None] = {}
        for part in chunks(sorted(set(fired))):
            query = sa.select(t.id, t.lease_owner).where(t.id.in_(part))
            held.update(
                (timer_id, holder)
                for timer_id, holder in conn.execute(query.with_for_update() if self._postgres else query)
            )
        holders: dict[str, int] = {}
        for timer_id in set(fired):
            holder = held.get(timer_id)
            if holder != owner:
                holders[holder or "nobody"] = holders.get(holder or "nobody", 0) + 1
        if holders:
            raise LeaseLost("timer", owner, len(set(fired)), holders)

    def change(self, seq: int) -> StoredChange | None:
        with self.engine.connect() as conn:
            row = conn.execute(changes.select().where(changes.c.seq == seq)).first()
        return rows.change_from(row._mapping) if row else None

    def open_changes(self, object: str, id: str) -> list[StoredChange]:
        """The changes of one record not processed yet (pending or claimed), in seq order: what a
        read answers as pending. Reads the (object, record_id, seq) index."""
        c = changes.c
        stmt = (
            changes.select()
            .where(c.object == object, c.record_id == id, c.status.in_(("pending", "claimed")))
            .order_by(c.seq)
        )
        with self.engine.connect() as conn:
            return [rows.change_from(row._mapping) for row in conn.execute(stmt)]
