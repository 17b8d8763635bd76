"""``SqlStore``: the ``Store`` on SQLAlchemy Core, for SQLite and PostgreSQL.

Every method is one transaction. Statements are built once and reused, so SQLAlchemy compiles
each shape once; batches go out as one ``executemany`` per table.

Claims are leases: a claimed change, timer or outbox row carries ``lease_owner``/``lease_until``;
a lease that ran out (the worker died) makes the row claimable again, with ``attempts + 1``. On
SQLite every write is a ``BEGIN IMMEDIATE`` transaction, so claimers queue. On PostgreSQL timer
and outbox claimers run side by side, ``FOR UPDATE SKIP LOCKED`` keeping them off each other's
rows; change claimers take turns (see ``_PG_CLAIM_LOCK``) and skip rows being finished.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from flowctl.engine.state import ACTIVE, Record, Run, Timer
from flowctl.ports import (
    AppendResult,
    CareOccurrence,
    CareSummary,
    ConfigVersion,
    LeaseLost,
    NewChange,
    OutboxRow,
    Processed,
    StoredChange,
)
from flowctl.store import rows
from flowctl.store.dates import date_rows
from flowctl.store.engines import make_engine, writer
from flowctl.store.tables import (
    allocations,
    care_days,
    care_occurrences,
    changes,
    config_versions,
    outbox,
    record_dates,
    records,
    runs,
    timers,
)
from flowctl.store.writelock import WriteLock

#: How many pending changes a claim reads at a time while looking for claimable ones.
SCAN_MIN = 256
#: Parameters per ``IN (...)`` list, well under SQLite's and PostgreSQL's limits.
CHUNK = 900
#: Appends from several replicas commit one at a time on PostgreSQL: a sequence hands out values
#: in call order but transactions commit in any order, and a claimer that saw seq 11 committed
#: before seq 10 would run one record's changes out of order.
_PG_APPEND_LOCK = 0x666C6F77_61707064  # "flowappd"
#: Change claims take turns on PostgreSQL too. Whether a change may go depends on rows other
#: claimers are changing (an earlier change of its record); a claimer reading a snapshot that
#: misses a concurrent claim would hand out the next change of that record beside it. A claim
#: is one short transaction, so taking turns costs little; SKIP LOCKED still keeps it from
#: waiting on a worker that is finishing a change.
_PG_CLAIM_LOCK = 0x666C6F77_636C6D63  # "flowclmc"
#: Deploys (``flowctl apply``/``rollback``) take turns: each checks the current version, then replaces it.
_PG_DEPLOY_LOCK = 0x666C6F77_64706C79  # "flowdply"

_CLAIMABLE_OUTBOX = ("pending", "retry", "held")  # held: until a sending policy allows


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _by_object(keys: Iterable[tuple[str, str]]) -> Iterator[tuple[str, Sequence[str]]]:
    """(object, ids) per object and chunk: ``object = ? AND id IN (...)`` reads the key index."""
    ids: dict[str, set[str]] = {}
    for object_, id_ in keys:
        ids.setdefault(object_, set()).add(id_)
    for object_, found in ids.items():
        for part in _chunks(sorted(found)):
            yield object_, part


class _ChangesLost(Exception):
    """Inside a fenced commit: a change of the batch is no longer held (rolls the transaction back)."""


class SqlStore:
    """The store on a database URL: ``sqlite:///path/flowctl.db`` or ``postgresql+psycopg://…``.

    The schema must be current (``flowctl.store.open_store`` migrates before opening).
    """

    def __init__(self, url: str | sa.URL) -> None:
        self.engine: Engine = make_engine(url)
        self._writer = writer(self.engine)
        self.dialect = self.engine.dialect.name
        self._compiled: dict[tuple[int, tuple[str, ...]], Any] = {}  # see _many
        self._compiled_keepalive: list[Any] = []
        # SQLite has one writer at a time: writers queue on a WriteLock (threads and processes)
        # instead of on SQLite's busy handler, which sleeps in growing steps.
        self._write_lock: Any = contextlib.nullcontext()
        if self.dialect == "sqlite":
            self._write_lock = WriteLock(str(self.engine.url.database))
        self._postgres = self.dialect == "postgresql"
        insert = postgresql.insert if self._postgres else sqlite.insert
        c, t, o = changes.c, timers.c, outbox.c

        def upsert(table: sa.Table) -> Any:
            stmt = insert(table)
            keys = [col.name for col in table.primary_key.columns]
            return stmt.on_conflict_do_update(
                index_elements=keys, set_={col.name: stmt.excluded[col.name] for col in table.c if col.name not in keys}
            )

        self._upsert_records = upsert(records)
        self._upsert_runs = upsert(runs)
        self._upsert_timers = upsert(timers)
        self._upsert_allocations = upsert(allocations)
        self._upsert_version = upsert(config_versions)
        self._insert_outbox = insert(outbox).on_conflict_do_nothing(index_elements=["key"])
        self._insert_changes_plain = insert(changes).on_conflict_do_nothing(index_elements=["idempotency_key"])
        self._insert_changes = self._insert_changes_plain.returning(c.idempotency_key, c.seq)
        # RETURNING tells whether the row went in (psycopg reports no rowcount for this INSERT)
        self._insert_occurrence = (
            insert(care_occurrences).on_conflict_do_nothing().returning(care_occurrences.c.process)
        )
        self._insert_ledger = care_occurrences.insert()  # care: see insert_care
        self._finish_changes = (
            sa.update(changes).where(c.seq == sa.bindparam("b_seq"))
            .values(status=sa.bindparam("b_status"), error=sa.bindparam("b_error"),
                    processed_at=sa.bindparam("b_now"), lease_owner=None, lease_until=None)
        )  # fmt: skip
        self._finish_held_changes = (  # fencing: only the changes this claim still holds
            sa.update(changes).where(c.seq == sa.bindparam("b_seq"), c.status == "claimed",
                                     c.lease_owner == sa.bindparam("b_owner"), c.attempts == sa.bindparam("b_attempts"))
            .values(status=sa.bindparam("b_status"), error=sa.bindparam("b_error"),
                    processed_at=sa.bindparam("b_now"), lease_owner=None, lease_until=None)
        )  # fmt: skip
        # the StateView reads, on every change the worker handles: built once, no expanding IN
        bind = sa.bindparam
        active = sa.or_(*(runs.c.status == sa.literal(status, sa.String()) for status in ACTIVE))
        self._get_record = records.select().where(records.c.object == bind("object"), records.c.id == bind("id"))
        self._get_active_runs = (
            runs.select().where(runs.c.object == bind("object"), runs.c.record_id == bind("id"), active)
            .order_by(runs.c.seq, runs.c.id)
        )  # fmt: skip
        self._get_run = runs.select().where(runs.c.id == bind("id"))
        self._get_timers = timers.select().where(t.run_id == bind("run_id")).order_by(t.due, t.id)
        self._get_allocation = sa.select(allocations.c.state).where(allocations.c.rule == bind("rule"))
        r = records.c  # least_loaded: on the (object, owner) index; final stages are left out below
        self._owned = (
            sa.select(r.owner, r.pipeline, r.stage, sa.func.count())
            .where(r.object == bind("object"), r.owner.in_(bind("users", expanding=True)), r.deleted.is_(False))
            .group_by(r.owner, r.pipeline, r.stage)
        )  # fmt: skip
        light = (c.seq, c.object, c.record_id, c.status, c.lease_until)
        self._claimed_changes = sa.select(*light).where(c.status == "claimed")
        self._pending_changes = (
            sa.select(*light).where(c.status == "pending", c.seq > sa.bindparam("after"))
            .order_by(c.seq).limit(sa.bindparam("scan"))
        )  # fmt: skip
        self._due_timers = (
            sa.select(t.id).where(t.due <= sa.bindparam("now"),
                                  sa.or_(t.lease_until.is_(None), t.lease_until <= sa.bindparam("now")))
            .order_by(t.due).limit(sa.bindparam("limit"))
        )  # fmt: skip
        self._claimable_outbox = (
            sa.select(o.id).where(sa.or_(
                o.status == "pending",  # never tried: due whatever the clock says (it may have gone back)
                sa.and_(o.status.in_(_CLAIMABLE_OUTBOX),
                        sa.or_(o.next_attempt_at.is_(None), o.next_attempt_at <= sa.bindparam("now"))),
                sa.and_(o.status == "sending", o.lease_until <= sa.bindparam("now")),
            ))
            .order_by(o.id).limit(sa.bindparam("limit"))
        )  # fmt: skip
        if self._postgres:
            self._due_timers = self._due_timers.with_for_update(skip_locked=True)
            self._claimable_outbox = self._claimable_outbox.with_for_update(skip_locked=True)

    def close(self) -> None:
        self.engine.dispose()
        if isinstance(self._write_lock, WriteLock):
            self._write_lock.close()

    # ------------------------------------------------------------------ engine state (StateView)

    def record(self, object: str, id: str) -> Record | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._get_record, {"object": object, "id": id}).first()
        return rows.record_from(row._mapping) if row else None

    def active_runs(self, object: str, id: str) -> list[Run]:
        with self.engine.connect() as conn:
            found = conn.execute(self._get_active_runs, {"object": object, "id": id})
            return [rows.run_from(row._mapping) for row in found]

    def run(self, run_id: str) -> Run | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._get_run, {"id": run_id}).first()
        return rows.run_from(row._mapping) if row else None

    def timers_of(self, run_id: str) -> list[Timer]:
        with self.engine.connect() as conn:
            return [rows.timer_from(row._mapping) for row in conn.execute(self._get_timers, {"run_id": run_id})]

    def allocation(self, rule: str) -> Mapping[str, Any]:
        with self.engine.connect() as conn:
            state = conn.execute(self._get_allocation, {"rule": rule}).scalar()
        return state if state is not None else {}

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> dict[str, int]:
        counts = dict.fromkeys(users, 0)
        if not counts:
            return counts
        with self.engine.connect() as conn:
            for owner, pipeline, stage, count in conn.execute(self._owned, {"object": object, "users": list(counts)}):
                if (pipeline, stage) not in final:
                    counts[owner] += count
        return counts

    def records_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        """The stored records among ``keys`` (missing ones are absent from the answer)."""
        out: dict[tuple[str, str], Record] = {}
        with self.engine.connect() as conn:
            for object_, ids in _by_object(keys):
                stmt = records.select().where(records.c.object == object_, records.c.id.in_(ids))
                for row in conn.execute(stmt):
                    record = rows.record_from(row._mapping)
                    out[record.key] = record
        return out

    def active_runs_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Run]]:
        """The active runs of every record in ``keys``, each list as ``active_runs`` orders it."""
        out: dict[tuple[str, str], list[Run]] = {key: [] for key in keys}
        r = runs.c
        with self.engine.connect() as conn:
            for object_, ids in _by_object(keys):
                stmt = (runs.select().where(r.object == object_, r.record_id.in_(ids), r.status.in_(ACTIVE))
                        .order_by(r.seq, r.id))  # fmt: skip
                for row in conn.execute(stmt):
                    run = rows.run_from(row._mapping)
                    out[(run.object, run.record_id)].append(run)
        return out

    # ------------------------------------------------------------------ ingest

    def append_changes(self, changes_: Sequence[NewChange]) -> list[AppendResult]:
        """Store new changes in one transaction. A key seen before (stored, or earlier in this
        batch) is not stored again: its result carries the first change's seq, ``duplicate=True``.
        """
        if not changes_:
            return []
        fresh: dict[str, dict[str, Any]] = {}
        for change in changes_:
            fresh.setdefault(change.idempotency_key, rows.change_row(change))
        # SQLite: a plain executemany, then the new seqs read back (the write transaction is
        # exclusive, so every row above the old maximum is this batch's); a third of the time
        # SQLAlchemy's INSERT … RETURNING takes, all of it under the write lock
        prepared = None if self._postgres else self._prepare(self._insert_changes_plain, fresh.values())
        with self._write_lock, self._writer.begin() as conn:
            inserted: dict[str, int]
            if prepared is not None:
                before = conn.exec_driver_sql("SELECT coalesce(max(seq), 0) FROM changes").scalar()
                self._run(conn, prepared)
                inserted = dict(conn.exec_driver_sql("SELECT idempotency_key, seq FROM changes WHERE seq > ?",
                                                     (before,)).all())  # fmt: skip
            else:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_APPEND_LOCK)))
                inserted = dict(conn.execute(self._insert_changes, list(fresh.values())).all())
            existing = [key for key in fresh if key not in inserted]
            seqs = dict(inserted)
            prints = {key: fresh[key]["fingerprint"] or "" for key in inserted}
            for part in _chunks(existing):
                stmt = (sa.select(changes.c.idempotency_key, changes.c.seq, changes.c.fingerprint)
                        .where(changes.c.idempotency_key.in_(part)))  # fmt: skip
                for key, seq, stored in conn.execute(stmt).all():
                    seqs[key], prints[key] = seq, stored or ""
        results = []
        for change in changes_:
            key = change.idempotency_key
            new = key in inserted
            if new:
                inserted.pop(key)  # a second change with this key in the batch is a duplicate
            results.append(AppendResult(seq=seqs[key], duplicate=not new, fingerprint=prints[key]))
        return results

    # ------------------------------------------------------------------ the worker loop

    def claim_changes(self, limit: int, owner: str, now: datetime, lease_seconds: float) -> list[StoredChange]:
        """Lease up to ``limit`` changes, in seq order, that can run now.

        A record's change is handed out only with every earlier open change of that record:
        never while an earlier one waits unclaimed outside this batch or is leased to a worker.
        A change whose lease ran out is claimable again. Each claim adds one to ``attempts``.
        """
        if limit <= 0:
            return []
        until = now + timedelta(seconds=lease_seconds)
        with self._write_lock, self._writer.begin() as conn:
            if self._postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_CLAIM_LOCK)))
            wanted = self._plan_claim(conn, limit, now)
            if self._postgres and wanted:
                wanted = self._lock_prefixes(conn, wanted, now)
            if not wanted:
                return []
            claimed: list[StoredChange] = []
            for part in _chunks([seq for seq, _ in wanted]):
                stmt = (sa.update(changes).where(changes.c.seq.in_(part), self._claimable_change(now))
                        .values(status="claimed", lease_owner=owner, lease_until=until,
                                attempts=changes.c.attempts + 1)
                        .returning(*changes.c))  # fmt: skip
                claimed.extend(rows.change_from(row._mapping) for row in conn.execute(stmt))
        return sorted(claimed, key=lambda change: change.seq)

    def _plan_claim(self, conn: Connection, limit: int, now: datetime) -> list[tuple[int, tuple[str, str]]]:
        leased: dict[tuple[str, str], int] = {}  # record -> its lowest seq under a live lease
        expired: list[tuple[int, tuple[str, str]]] = []
        for seq, object_, record_id, _, lease_until in conn.execute(self._claimed_changes):
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
            page = [(seq, (obj, rid)) for seq, obj, rid, *_ in
                    conn.execute(self._pending_changes, {"after": after, "scan": scan})]  # fmt: skip
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

    def _lock_prefixes(self, conn: Connection, wanted: list[tuple[int, tuple[str, str]]],
                       now: datetime) -> list[tuple[int, tuple[str, str]]]:  # fmt: skip
        """Lock what the plan wants, skipping rows a worker is finishing at this moment; a record
        whose change is skipped keeps its later changes back as well."""
        got: set[int] = set()
        for part in _chunks([seq for seq, _ in wanted]):
            stmt = (sa.select(changes.c.seq).where(changes.c.seq.in_(part), self._claimable_change(now))
                    .with_for_update(skip_locked=True))  # fmt: skip
            got.update(conn.execute(stmt).scalars())
        kept, lost = [], set()
        for seq, key in wanted:
            if key in lost or seq not in got:
                lost.add(key)
            else:
                kept.append((seq, key))
        return kept

    def _any(self, query: Any) -> bool:
        """Whether ``query`` finds a row, read outside any write transaction (SQLite: a claim
        that would find nothing need not queue for the write lock)."""
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    @staticmethod
    def _claimable_change(now: datetime) -> sa.ColumnElement[bool]:
        c = changes.c
        return sa.or_(c.status == "pending", sa.and_(c.status == "claimed", c.lease_until <= now))

    def claim_due_timers(self, now: datetime, limit: int, owner: str, lease_seconds: float) -> list[Timer]:
        """Lease up to ``limit`` timers due at ``now``, earliest first. Reads the ``due`` index
        from its start, so the cost follows what is due, not how many timers wait."""
        if limit <= 0:
            return []
        if not self._postgres and not self._any(self._due_timers.params(now=now, limit=1)):
            return []  # nothing due: no write transaction, no turn at the write lock
        until = now + timedelta(seconds=lease_seconds)
        due = self._due_timers.params(now=now, limit=limit).scalar_subquery()
        stmt = (sa.update(timers).where(timers.c.id.in_(due))
                .values(lease_owner=owner, lease_until=until, attempts=timers.c.attempts + 1)
                .returning(*timers.c))  # fmt: skip
        with self._write_lock, self._writer.begin() as conn:
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
        records_ = list(plan.records.values())
        attempts = {i.change.seq: i.change.attempts for i in items if i.change is not None}
        finish = self._finish_changes
        finished = [{**row, "b_now": now} for row in plan.changes]
        if owner is not None:
            finish = self._finish_held_changes
            finished = [{**row, "b_owner": owner, "b_attempts": attempts[row["b_seq"]]} for row in finished]
        # every row's values are processed before the write lock: it is held for SQLite's work only
        writes = [self._prepare(self._upsert_records, records_),
                  self._prepare(self._upsert_runs, plan.runs.values()),
                  self._prepare(self._upsert_timers, plan.timer_upserts),
                  self._prepare(self._insert_outbox, plan.outbox.values()),  # a key stored before is kept
                  self._prepare(self._upsert_allocations, plan.allocations.values())]  # fmt: skip
        finishing = self._prepare(finish, finished)
        try:
            self._commit_plan(plan, writes, finishing, len(finished), items, owner)
        except _ChangesLost:  # rolled back; who holds them now is read afterwards, for the log only
            assert owner is not None
            with self.engine.connect() as conn:
                raise LeaseLost("change", owner, len(finished), self._change_holders(conn, attempts, owner)) from None

    def _commit_plan(self, plan: rows.BatchPlan, writes: list[Any], finishing: Any, finished: int,
                     items: Sequence[Processed], owner: str | None) -> None:  # fmt: skip
        records_ = list(plan.records.values())
        with self._write_lock, self._writer.begin() as conn:
            if owner is not None:
                if finishing is not None and self._run(conn, finishing) != finished:
                    raise _ChangesLost
                self._fence_timers(conn, [i.timer.id for i in items if i.timer is not None], owner)
            for part in _chunks(plan.timer_deletes):
                conn.execute(sa.delete(timers).where(timers.c.id.in_(part)))
            self._run(conn, writes[0])
            self._write_dates(conn, records_)
            for prepared in writes[1:]:
                self._run(conn, prepared)
            if owner is None:
                self._run(conn, finishing)

    def _change_holders(self, conn: Connection, attempts: Mapping[int, int], owner: str) -> dict[str, int]:
        """Who holds the changes of a refused batch that ``owner`` lost (``nobody``: finished or
        given back); read after a fenced commit was refused, for its log line."""
        c = changes.c
        found: dict[int, tuple[str, str | None, int]] = {}
        for part in _chunks(sorted(attempts)):
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
        for part in _chunks(sorted(set(fired))):
            query = sa.select(t.id, t.lease_owner).where(t.id.in_(part))
            held.update((timer_id, holder) for timer_id, holder in
                        conn.execute(query.with_for_update() if self._postgres else query))  # fmt: skip
        holders: dict[str, int] = {}
        for timer_id in set(fired):
            holder = held.get(timer_id)
            if holder != owner:
                holders[holder or "nobody"] = holders.get(holder or "nobody", 0) + 1
        if holders:
            raise LeaseLost("timer", owner, len(set(fired)), holders)

    def _many(self, conn: Connection, stmt: Any, params: Iterable[Mapping[str, Any]]) -> None:
        """executemany through the driver, the statement compiled once per shape of row.

        SQLAlchemy's executemany rebuilds and type-processes every parameter set through several
        layers; for the batches the worker and the care tick write (thousands of rows) that cost
        more than the database itself. Here each value goes through its column type's bind
        processor (JSON, UTC timestamps) and straight to the DBAPI cursor.
        """
        self._run(conn, self._prepare(stmt, params))

    def _prepare(self, stmt: Any, params: Iterable[Mapping[str, Any]]) -> tuple[Any, list[Any]] | None:
        """What :meth:`_many` sends: (SQL text, processed rows), or (statement, rows) for
        SQLAlchemy when the rows differ in shape; None for no rows. Done before taking the write
        lock, so the lock is held for the database's work only."""
        batch = list(params)
        if not batch:
            return None
        keys = tuple(batch[0])
        if any(len(row) != len(keys) or tuple(row) != keys for row in batch):
            return stmt, batch  # rows of different shapes: let SQLAlchemy sort them out
        plan = self._compiled.get((id(stmt), keys))
        if plan is None:
            compiled = stmt.compile(dialect=self.engine.dialect, column_keys=list(keys))
            procs = compiled._bind_processors
            # per bind: take it from the row, or it is a constant of the statement (``values(x=None)``)
            binds = [(n, n in keys, compiled.binds[n].effective_value if n not in keys else None, procs.get(n))
                     for n in (compiled.positiontup or compiled.binds)]  # fmt: skip
            plan = (compiled, binds)
            self._compiled[(id(stmt), keys)] = plan
            self._compiled_keepalive.append(stmt)  # ids stay unique while the statement lives
        compiled, binds = plan
        values = [[(proc(row[n]) if proc else row[n]) if live else (proc(const) if proc else const)
                   for n, live, const, proc in binds] for row in batch]  # fmt: skip
        rows: list[Any]
        if compiled.positiontup is not None:
            rows = [tuple(v) for v in values]
        else:
            names = [n for n, *_ in binds]
            rows = [dict(zip(names, v, strict=True)) for v in values]
        return compiled.string, rows

    @staticmethod
    def _run(conn: Connection, prepared: tuple[Any, list[Any]] | None) -> int:
        """Send what :meth:`_prepare` made; the rows it changed (the sum over an executemany)."""
        if prepared is None:
            return 0
        statement, rows = prepared
        if isinstance(statement, str):
            return int(conn.exec_driver_sql(statement, rows).rowcount)
        return int(conn.execute(statement, rows).rowcount)

    # ------------------------------------------------------------------ delivery

    def claim_outbox(self, now: datetime, limit: int, owner: str, lease_seconds: float,
                     skip_channels: Sequence[str] = ()) -> list[OutboxRow]:  # fmt: skip
        """Lease up to ``limit`` rows that are due (pending or retry, ``next_attempt_at`` passed)
        or whose send was cut off (``sending`` with its lease run out), none of ``skip_channels``
        (still busy sending); status becomes ``sending`` and ``attempts`` grows by one."""
        if limit <= 0:
            return []
        claimable = self._claimable_outbox
        if skip_channels:
            claimable = claimable.where(outbox.c.channel.not_in(list(skip_channels)))
        if not self._postgres and not self._any(claimable.params(now=now, limit=1)):
            return []  # nothing due: no write transaction, no turn at the write lock
        until = now + timedelta(seconds=lease_seconds)
        due = claimable.params(now=now, limit=limit).scalar_subquery()
        stmt = (sa.update(outbox).where(outbox.c.id.in_(due))
                .values(status="sending", lease_owner=owner, lease_until=until, attempts=outbox.c.attempts + 1)
                .returning(*outbox.c))  # fmt: skip
        with self._write_lock, self._writer.begin() as conn:
            claimed = [rows.outbox_from(row._mapping) for row in conn.execute(stmt)]
        return sorted(claimed, key=lambda row: row.id)

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
        o = outbox.c
        marked: set[int] = set()
        with self._write_lock, self._writer.begin() as conn:
            for chunk in _chunks(list(row_ids)):
                stmt = (sa.update(outbox).where(o.id.in_(chunk), self._held_by(owner))
                        .values(status="sent", sent_at=now, lease_owner=None, lease_until=None)
                        .returning(o.id))  # fmt: skip
                marked.update(conn.execute(stmt).scalars())
        return [row_id for row_id in row_ids if row_id not in marked]

    def mark_failed(self, row_id: int, error: str, next_attempt_at: datetime | None, now: datetime, *,
                    owner: str | None = None) -> bool:  # fmt: skip
        """Retry at ``next_attempt_at``; without one the row is dead (an operator may retry it).
        With ``owner``, False (nothing written) when another sender took the row over."""
        status = "dead" if next_attempt_at is None else "retry"
        stmt = (sa.update(outbox).where(outbox.c.id == row_id, self._held_by(owner))
                .values(status=status, last_error=error, next_attempt_at=next_attempt_at,
                        lease_owner=None, lease_until=None))  # fmt: skip
        with self._write_lock, self._writer.begin() as conn:
            done = conn.execute(stmt).rowcount == 1
        return done or owner is None

    def retry_outbox(self, row_id: int, now: datetime) -> bool:
        """Send a dead (or waiting-to-retry) row again now, with a fresh attempt budget."""
        stmt = (sa.update(outbox).where(outbox.c.id == row_id, outbox.c.status.in_(("dead", "retry")))
                .values(status="pending", attempts=0, next_attempt_at=now,
                        lease_owner=None, lease_until=None))  # fmt: skip
        with self._write_lock, self._writer.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    # ------------------------------------------------------------------ care

    def claim_occurrence(self, process: str, object: str, id: str, occurrence: str, now: datetime) -> bool:
        """True the first time (process, record, occurrence) is claimed, False ever after."""
        row = {"process": process, "object": object, "record_id": id, "occurrence": occurrence,
               "status": "claimed", "claimed_at": now, "done_at": None}  # fmt: skip
        with self._write_lock, self._writer.begin() as conn:
            return conn.execute(self._insert_occurrence, row).first() is not None

    # ------------------------------------------------------------------ inspection

    def change(self, seq: int) -> StoredChange | None:
        with self.engine.connect() as conn:
            row = conn.execute(changes.select().where(changes.c.seq == seq)).first()
        return rows.change_from(row._mapping) if row else None

    def open_changes(self, object: str, id: str) -> list[StoredChange]:
        """The changes of one record not processed yet (pending or claimed), in seq order: what a
        read answers as pending. Reads the (object, record_id, seq) index."""
        c = changes.c
        stmt = (changes.select().where(c.object == object, c.record_id == id, c.status.in_(("pending", "claimed")))
                .order_by(c.seq))  # fmt: skip
        with self.engine.connect() as conn:
            return [rows.change_from(row._mapping) for row in conn.execute(stmt)]

    def list_records(self, object: str, stage: str = "", limit: int = 100, after: str = "") -> list[Record]:
        """Live (not deleted) records of ``object`` by id, from just after ``after``."""
        r = records.c
        stmt = records.select().where(r.object == object, r.deleted.is_(False))
        if stage:
            stmt = stmt.where(r.stage == stage)
        if after:
            stmt = stmt.where(r.id > after)
        with self.engine.connect() as conn:
            return [rows.record_from(row._mapping) for row in conn.execute(stmt.order_by(r.id).limit(limit))]

    def list_runs(self, limit: int = 50, status: str = "", object: str = "", record_id: str = "") -> list[Run]:
        """Newest first."""
        stmt = runs.select()
        if status:
            stmt = stmt.where(runs.c.status == status)
        if object:
            stmt = stmt.where(runs.c.object == object)
        if record_id:
            stmt = stmt.where(runs.c.record_id == record_id)
        stmt = stmt.order_by(runs.c.seq.desc(), runs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [rows.run_from(row._mapping) for row in conn.execute(stmt)]

    def list_outbox(self, limit: int = 50, status: str = "") -> list[OutboxRow]:
        """Newest first."""
        stmt = outbox.select()
        if status:
            stmt = stmt.where(outbox.c.status == status)
        stmt = stmt.order_by(outbox.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [rows.outbox_from(row._mapping) for row in conn.execute(stmt)]

    def outbox_row(self, row_id: int) -> OutboxRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(outbox.select().where(outbox.c.id == row_id)).first()
        return rows.outbox_from(row._mapping) if row else None

    def counts(self) -> Mapping[str, int]:
        """Gauges for ``/metrics``: see ``rows.COUNTS`` for the names."""
        count = sa.func.count()
        with self.engine.connect() as conn:
            out = dict.fromkeys(rows.COUNTS, 0)
            out["records"] = conn.execute(sa.select(count).select_from(records)).scalar_one()
            out["timers"] = conn.execute(sa.select(count).select_from(timers)).scalar_one()
            for status in rows.CHANGE_GAUGES:
                stmt = sa.select(count).select_from(changes).where(changes.c.status == status)
                out[f"changes_{status}"] = conn.execute(stmt).scalar_one()
            for status in rows.OUTBOX_GAUGES:
                stmt = sa.select(count).select_from(outbox).where(outbox.c.status == status)
                out[f"outbox_{status}"] = conn.execute(stmt).scalar_one()
            by_status = sa.select(runs.c.status, count).where(runs.c.status.in_(ACTIVE)).group_by(runs.c.status)
            for status, n in conn.execute(by_status):
                out[f"runs_{status}"] = n
        return out

    # ------------------------------------------------------------------ config versions

    def save_version(self, version: ConfigVersion) -> None:
        """Store ``version`` and make it the current one."""
        with self._write_lock, self._writer.begin() as conn:
            conn.execute(sa.update(config_versions).where(config_versions.c.current.is_(True)).values(current=False))
            conn.execute(self._upsert_version, rows.version_row(version))

    def current_version(self) -> ConfigVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(config_versions.select().where(config_versions.c.current.is_(True))).first()
        return rows.version_from(row._mapping) if row else None

    # ------------------------------------------------------------------ deployments

    def versions(self, limit: int = 50) -> list[ConfigVersion]:
        """Stored versions, newest applied first (the current one first among equal times)."""
        v = config_versions.c
        stmt = config_versions.select().order_by(v.applied_at.desc(), v.current.desc(), v.id).limit(limit)
        with self.engine.connect() as conn:
            return [rows.version_from(row._mapping) for row in conn.execute(stmt)]

    def version(self, id: str) -> ConfigVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(config_versions.select().where(config_versions.c.id == id)).first()
        return rows.version_from(row._mapping) if row else None

    def deploy_version(self, version: ConfigVersion, expected_current: str | None,
                       cancel_runs: Sequence[str] = (), now: datetime | None = None) -> bool:  # fmt: skip
        """Make ``version`` current and cancel ``cancel_runs`` (and their timers), in one
        transaction, only if the current version is still ``expected_current`` (None: none yet).
        False, with nothing written, when another deploy got there first."""
        stamp = (now or version.applied_at).isoformat()
        v = config_versions.c
        with self._writer.begin() as conn:
            if self._postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_DEPLOY_LOCK)))
            current = conn.execute(sa.select(v.id).where(v.current.is_(True))).scalar()
            if current != expected_current:
                return False
            conn.execute(sa.update(config_versions).where(v.current.is_(True)).values(current=False))
            conn.execute(self._upsert_version, rows.version_row(version))
            for part in _chunks(list(cancel_runs)):
                conn.execute(sa.delete(timers).where(timers.c.run_id.in_(part)))
                conn.execute(sa.update(runs).where(runs.c.id.in_(part), runs.c.status.in_(ACTIVE))
                             .values(status="cancelled", waiting_for="", updated_at=stamp))  # fmt: skip
        return True

    def stage_counts(self) -> dict[tuple[str, str, str], int]:
        """Live records per (object, pipeline, stage)."""
        r = records.c
        stmt = (sa.select(r.object, r.pipeline, r.stage, sa.func.count()).where(r.deleted.is_(False))
                .group_by(r.object, r.pipeline, r.stage))  # fmt: skip
        with self.engine.connect() as conn:
            return {(o, p, s): n for o, p, s, n in conn.execute(stmt)}

    def pending_work(self) -> list[tuple[Run, int]]:
        """Every active run (without its trace) and how many timers it holds, oldest first."""
        r = runs.c
        columns = [col for col in runs.c if col.name != "trace"]
        stmt = sa.select(*columns).where(r.status.in_(ACTIVE)).order_by(r.seq, r.id)
        counts = sa.select(timers.c.run_id, sa.func.count()).group_by(timers.c.run_id)
        with self.engine.connect() as conn:
            held: dict[str, int] = dict(conn.execute(counts).all())
            return [(rows.run_from({**row._mapping, "trace": []}), held.get(row.id, 0)) for row in conn.execute(stmt)]

    def versions_in_use(self, since_day: str) -> set[str]:
        """Config versions of active runs and of care pins from ``since_day`` on (a reload keeps their
        engines). One DISTINCT over the active runs: a reload is rare, the runs table may be large."""
        r, d = runs.c, care_days.c
        with self.engine.connect() as conn:
            found = set(conn.execute(sa.select(r.config_version).where(r.status.in_(ACTIVE)).distinct()).scalars())
            found |= set(conn.execute(sa.select(d.config_version).where(d.day >= since_day).distinct()).scalars())
        return found

    def care_claims_since(self, since: datetime) -> dict[str, int]:
        """Care occurrences claimed at or after ``since``, per process."""
        o = care_occurrences.c
        stmt = sa.select(o.process, sa.func.count()).where(o.claimed_at >= since).group_by(o.process)
        with self.engine.connect() as conn:
            return dict(conn.execute(stmt).all())

    def changes_after(self, seq: int, limit: int = 1000) -> list[StoredChange]:
        """Up to ``limit`` recorded changes with a seq above ``seq``, in seq order."""
        stmt = changes.select().where(changes.c.seq > seq).order_by(changes.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [rows.change_from(row._mapping) for row in conn.execute(stmt)]

    def outbox_between(self, since: datetime, until: datetime) -> list[OutboxRow]:
        """Outbox rows created in ``[since, until)``, oldest first."""
        o = outbox.c
        stmt = outbox.select().where(o.created_at >= since, o.created_at < until).order_by(o.id)
        with self.engine.connect() as conn:
            return [rows.outbox_from(row._mapping) for row in conn.execute(stmt)]

    # ------------------------------------------------------------------ care schedules

    def _insert_for(self, table: sa.Table) -> Any:
        return (postgresql.insert if self._postgres else sqlite.insert)(table)

    def _write_dates(self, conn: Connection, written: Iterable[Mapping[str, Any]]) -> None:
        """Re-index the date fields of the records just written (``store/dates.py``)."""
        written = list(written)
        if not written:
            return
        d = record_dates.c
        for object_, ids in _by_object((row["object"], row["id"]) for row in written):
            conn.execute(sa.delete(record_dates).where(d.object == object_, d.record_id.in_(ids)))
        self._many(conn, record_dates.insert(), date_rows(written))

    def care_records(self, object: str, field: str, month_days: Sequence[int],
                     on_dates: Sequence[str] = ()) -> list[Record]:  # fmt: skip
        """Live records whose ``field`` falls on ``month_days``: one indexed join, rows as found."""
        if not month_days:
            return []
        d, r = record_dates.c, records.c
        stmt = (sa.select(records).join(record_dates, sa.and_(r.object == d.object, r.id == d.record_id))
                .where(d.object == object, d.field == field, d.month_day.in_(sorted(set(month_days))),
                       r.deleted.is_(False)))  # fmt: skip
        if on_dates:
            stmt = stmt.where(d.value.in_(sorted(set(on_dates))))
        with self.engine.connect() as conn:
            return [rows.record_from(row._mapping) for row in conn.execute(stmt)]

    def pin_care_day(self, process: str, day: str, version: str) -> str:
        stmt = self._insert_for(care_days).on_conflict_do_nothing()
        with self._writer.begin() as conn:
            conn.execute(stmt, {"process": process, "day": day, "config_version": version})
            d = care_days.c
            pinned = conn.execute(sa.select(d.config_version).where(d.process == process, d.day == day)).scalar_one()
        return str(pinned)

    def claim_occurrences(self, wanted: Sequence[CareOccurrence], owner: str, now: datetime) -> list[CareOccurrence]:
        """Insert a ``claimed`` row per occurrence; a row already there (claimed by anyone, ever)
        is left alone. RETURNING tells which went in: those are ours."""
        if not wanted:
            return []
        c = care_occurrences.c
        stmt = (self._insert_for(care_occurrences).on_conflict_do_nothing()
                .returning(c.process, c.object, c.record_id, c.occurrence))  # fmt: skip
        by_key = {o.key: o for o in wanted}
        won: set[tuple[str, str, str, str]] = set()
        with self._writer.begin() as conn:
            for part in _chunks(list(by_key.values()), 1000):
                params = [{"process": o.process, "object": o.object, "record_id": o.record_id,
                           "occurrence": o.occurrence, "status": "claimed", "claimed_at": now, "done_at": None,
                           "owner": owner, "config_version": o.config_version} for o in part]  # fmt: skip
                won.update(tuple(row) for row in conn.execute(stmt, params))
        return [o for key, o in by_key.items() if key in won]

    def reclaim_occurrences(self, owner: str, now: datetime, lease_seconds: float,
                            limit: int) -> list[CareOccurrence]:  # fmt: skip
        c = care_occurrences.c
        cutoff = now - timedelta(seconds=lease_seconds)
        expired = sa.and_(c.status == "claimed", c.claimed_at <= cutoff)
        key = sa.tuple_(c.process, c.object, c.record_id, c.occurrence)
        sub = sa.select(c.process, c.object, c.record_id, c.occurrence).where(expired).limit(limit)
        stmt = (sa.update(care_occurrences).where(key.in_(sub), expired)
                .values(owner=owner, claimed_at=now).returning(*care_occurrences.c))  # fmt: skip
        with self._writer.begin() as conn:
            found = [row._mapping for row in conn.execute(stmt)]
        return [CareOccurrence(process=r["process"], object=r["object"], record_id=r["record_id"],
                               occurrence=r["occurrence"], config_version=r["config_version"] or "")
                for r in found]  # fmt: skip

    def commit_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> int:
        if not items:
            return 0
        c = care_occurrences.c
        key = sa.tuple_(c.process, c.object, c.record_id, c.occurrence)
        groups: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {}
        for occurrence, _ in items:
            groups.setdefault((occurrence.status, occurrence.config_version), []).append(occurrence.key)
        kept: set[tuple[str, str, str, str]] = set()
        with self._writer.begin() as conn:
            for (status, version), keys in groups.items():
                for part in _chunks(keys, 200):
                    stmt = (sa.update(care_occurrences)
                            .where(key.in_(list(part)), c.status == "claimed", c.owner == owner)
                            .values(status=status, done_at=now, config_version=version)
                            .returning(c.process, c.object, c.record_id, c.occurrence))  # fmt: skip
                    kept.update(tuple(row) for row in conn.execute(stmt))
            plan = rows.plan_batch([p for o, p in items if o.key in kept], now)
            self._many(conn, self._upsert_records, plan.records.values())
            self._write_dates(conn, plan.records.values())
            self._many(conn, self._upsert_runs, plan.runs.values())
            self._many(conn, self._upsert_timers, plan.timer_upserts)
            self._many(conn, self._insert_outbox, plan.outbox.values())
            self._many(conn, self._upsert_allocations, plan.allocations.values())
        return len(kept)

    def care_done(self, keys: Sequence[tuple[str, str, str, str]]) -> set[tuple[str, str, str, str]]:
        """Which of these occurrences the ledger holds (in any status): primary-key lookups."""
        c = care_occurrences.c
        groups: dict[tuple[str, str, str], list[str]] = {}
        for process, object_, record_id, occurrence in keys:
            groups.setdefault((process, object_, occurrence), []).append(record_id)
        found: set[tuple[str, str, str, str]] = set()
        with self.engine.connect() as conn:
            for (process, object_, occurrence), ids in groups.items():
                for part in _chunks(sorted(set(ids))):
                    stmt = sa.select(c.record_id).where(c.process == process, c.object == object_,
                                                        c.record_id.in_(part), c.occurrence == occurrence)  # fmt: skip
                    found.update((process, object_, id_, occurrence) for id_ in conn.execute(stmt).scalars())
        return found

    def insert_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> bool:
        """Insert each occurrence with its outcome and write its step, in one transaction; False
        (and nothing written) if any occurrence is in the ledger already. A plain INSERT: the
        primary key refuses a second row, on PostgreSQL after waiting for the other replica's
        transaction to end, so exactly one of two racing ticks commits an occurrence.

        The runs of these occurrences and their outbox rows are new too (their ids derive from the
        occurrence, and were written only with its ledger row), so PostgreSQL takes them by COPY,
        several times faster than row-by-row statements; the rest of the step (runs a care action
        started or woke) goes through the usual upserts. Should a care run be there anyway (a
        ledger row deleted by hand), the transaction is written again the usual way."""
        if not items:
            return True
        ordered = sorted(items, key=lambda item: item[0].key)  # one lock order for every replica
        ledger = [{"process": o.process, "object": o.object, "record_id": o.record_id, "occurrence": o.occurrence,
                   "status": o.status, "claimed_at": now, "done_at": now, "owner": owner,
                   "config_version": o.config_version} for o, _ in ordered]  # fmt: skip
        plan = rows.plan_batch([p for _, p in items], now)
        ours = {f"care:{o.process}:{o.object}:{o.record_id}:{o.occurrence}" for o, _ in items}  # care.run_id
        new_runs = [row for run_id, row in plan.runs.items() if run_id in ours]
        new_outbox = [row for row in plan.outbox.values() if row["run_id"] in ours]
        other_runs = [row for run_id, row in plan.runs.items() if run_id not in ours]
        other_outbox = [row for row in plan.outbox.values() if row["run_id"] not in ours]
        taken: tuple[type[BaseException], ...] = (sa.exc.IntegrityError,)
        if self._postgres:
            import psycopg

            taken = (sa.exc.IntegrityError, psycopg.errors.IntegrityError)
        for fast in (True, False) if self._postgres else (False,):
            try:
                with self._write_lock, self._writer.begin() as conn:
                    if fast:
                        self._copy(conn, care_occurrences, ledger)
                        self._copy(conn, runs, new_runs)
                        self._copy(conn, outbox, new_outbox)
                    else:
                        self._many(conn, self._insert_ledger, ledger)
                        self._many(conn, self._upsert_runs, new_runs)
                        self._many(conn, self._insert_outbox, new_outbox)
                    self._many(conn, self._upsert_records, plan.records.values())
                    self._write_dates(conn, plan.records.values())
                    self._many(conn, self._upsert_runs, other_runs)
                    self._many(conn, self._upsert_timers, plan.timer_upserts)
                    self._many(conn, self._insert_outbox, other_outbox)
                    self._many(conn, self._upsert_allocations, plan.allocations.values())
                return True
            except taken:
                if self.care_done([o.key for o, _ in items]):
                    return False  # another tick committed some of them first
                if not fast:
                    raise  # not a taken occurrence: a real error
        return False  # unreachable: the last attempt returns or raises

    def _copy(self, conn: Connection, table: sa.Table, new: Sequence[Mapping[str, Any]]) -> None:
        """PostgreSQL ``COPY`` of new rows (a duplicate key fails the transaction, as an INSERT would)."""
        if not new:
            return
        names = list(new[0])
        dumps = getattr(self.engine.dialect, "_json_serializer", None) or json.dumps
        convert = [dumps if isinstance(table.c[n].type, sa.JSON) else None for n in names]
        columns = ", ".join(f'"{n}"' for n in names)
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
            for row in new:
                copy.write_row([f(row[n]) if f is not None else row[n] for n, f in zip(names, convert, strict=True)])

    def care_undated(self, object: str, field: str) -> tuple[int, int]:
        """(live records of ``object``, those without a usable date in ``field``): two index counts
        (the month-day index holds a row per live record and parseable date)."""
        r, d = records.c, record_dates.c
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(records)
                                 .where(r.object == object, r.deleted.is_(False))).scalar_one()  # fmt: skip
            dated = conn.execute(sa.select(sa.func.count()).select_from(record_dates)
                                 .where(d.object == object, d.field == field)).scalar_one()  # fmt: skip
        return int(total), max(0, int(total) - int(dated))

    def record_ids(self, object: str, after: str = "", limit: int = 1000) -> list[str]:
        """Ids of live records of ``object`` after ``after``, in order: the primary key, no JSON."""
        r = records.c
        stmt = (sa.select(r.id).where(r.object == object, r.deleted.is_(False), r.id > after)
                .order_by(r.id).limit(limit))  # fmt: skip
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def care_summary(self, process: str) -> CareSummary:
        c = care_occurrences.c
        with self.engine.connect() as conn:
            counts: dict[Any, Any] = dict(conn.execute(sa.select(c.status, sa.func.count()).where(c.process == process)
                                       .group_by(c.status)).all())  # fmt: skip
            last = conn.execute(sa.select(sa.func.max(c.done_at)).where(c.process == process)).scalar()
        if isinstance(last, str):  # max() over SQLite text loses the column type
            last = datetime.fromisoformat(last)
        return CareSummary(counts={str(k): int(v) for k, v in counts.items()}, last_done_at=last)

    # ------------------------------------------------------------------ replicas, policies, metrics, polling

    def extend_leases(self, owner: str, until: datetime, *, change_seqs: Sequence[int] = (),
                      timer_ids: Sequence[str] = (), outbox_ids: Sequence[int] = ()) -> int:  # fmt: skip
        """The heartbeat: push ``lease_until`` of work ``owner`` still holds to ``until``. Rows another
        claimer took over (our lease ran out first) are left alone. Returns how many were extended."""
        c, t, o = changes.c, timers.c, outbox.c
        extended = 0
        with self._write_lock, self._writer.begin() as conn:
            for part in _chunks(list(change_seqs)):
                extended += conn.execute(sa.update(changes).where(c.seq.in_(part), c.status == "claimed",
                                                                  c.lease_owner == owner)
                                         .values(lease_until=until)).rowcount  # fmt: skip
            for part in _chunks(list(timer_ids)):
                extended += conn.execute(sa.update(timers).where(t.id.in_(part), t.lease_owner == owner)
                                         .values(lease_until=until)).rowcount  # fmt: skip
            for part in _chunks(list(outbox_ids)):
                extended += conn.execute(sa.update(outbox).where(o.id.in_(part), o.status == "sending",
                                                                 o.lease_owner == owner)
                                         .values(lease_until=until)).rowcount  # fmt: skip
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
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_CLAIM_LOCK)))
            # locked, skipping rows a worker's commit is finishing now (it still holds them): a commit
            # that comes after this one is refused (fencing), so no change ends both done and failed
            query = changes.select().where(dead)
            found = [rows.change_from(row._mapping) for row in
                     conn.execute(query.with_for_update(skip_locked=True) if self._postgres else query)]  # fmt: skip
            params = [{"b_seq": ch.seq, "b_status": "failed", "b_now": now,
                       "b_error": f"gave up after {ch.attempts} attempts: the lease of every worker that "
                                  f"claimed it ran out (it died or hung)"} for ch in found]  # fmt: skip
            self._many(conn, self._finish_changes, params)
        return found

    def fail_exhausted_timers(self, now: datetime, max_attempts: int) -> list[Timer]:
        """Remove the timers claimed ``max_attempts`` times whose last lease ran out too, and fail
        their runs: a timer whose firing kills every worker must not go round forever."""
        t = timers.c
        dead = sa.and_(t.lease_until.is_not(None), t.lease_until <= now, t.attempts >= max_attempts)
        with self._write_lock, self._writer.begin() as conn:
            found = [rows.timer_from(row._mapping) for row in
                     conn.execute(timers.select().where(dead).with_for_update(skip_locked=True)
                                  if self._postgres else timers.select().where(dead))]  # fmt: skip
            for part in _chunks([timer.id for timer in found]):
                conn.execute(sa.delete(timers).where(t.id.in_(part)))
            for part in _chunks(sorted({timer.run_id for timer in found})):
                conn.execute(sa.update(runs).where(runs.c.id.in_(part), runs.c.status.in_(ACTIVE))
                             .values(status="failed", updated_at=now.isoformat()))  # fmt: skip
        return found

    def hold_outbox_many(self, holds: Sequence[tuple[int, datetime, str]], now: datetime, *,
                         owner: str | None = None) -> list[int]:  # fmt: skip
        """Hold claimed rows until a time a sending policy allows: status ``held``, ``next_attempt_at``
        that time, ``last_error`` the reason. A hold is not an attempt: the claim's count is undone.
        With ``owner``, rows another sender took over are left to it; their ids are returned."""
        if not holds:
            return []
        o = outbox.c
        stmt = (sa.update(outbox).where(o.id == sa.bindparam("b_id"))
                .values(status="held", next_attempt_at=sa.bindparam("b_until"), last_error=sa.bindparam("b_why"),
                        attempts=sa.case((o.attempts > 0, o.attempts - 1), else_=0),
                        lease_owner=None, lease_until=None))  # fmt: skip
        lost: set[int] = set()
        with self._write_lock, self._writer.begin() as conn:
            if owner is not None:
                for part in _chunks([row_id for row_id, _, _ in holds]):
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
        stmt = (sa.update(outbox).where(o.status == "held", o.channel.in_(list(channels)),
                                        o.last_error.startswith(reason_prefix, autoescape=True))
                .values(next_attempt_at=now))  # fmt: skip
        with self._write_lock, self._writer.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def release_outbox(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> None:
        """Hand claimed rows back, due now: they were not tried (their claim ran out of time before
        their turn), so the claim's attempt is undone and the next claim takes them at once. With
        ``owner``, rows another sender took over meanwhile stay with it."""
        if not row_ids:
            return
        o = outbox.c
        with self._write_lock, self._writer.begin() as conn:
            for chunk in _chunks(list(row_ids)):
                conn.execute(sa.update(outbox).where(o.id.in_(chunk), o.status == "sending", self._held_by(owner))
                             .values(status=sa.case((o.attempts > 1, "retry"), else_="pending"),
                                     attempts=sa.case((o.attempts > 0, o.attempts - 1), else_=0),
                                     next_attempt_at=now, lease_owner=None, lease_until=None))  # fmt: skip

    def clamp_retries(self, longest: float, now: datetime) -> int:
        """Retries due later than ``longest`` seconds from now (longer than any backoff: the
        clock went back since they were stored) fall due now. Returns how many."""
        o = outbox.c
        stmt = (sa.update(outbox).where(o.status == "retry", o.next_attempt_at > now + timedelta(seconds=longest))
                .values(next_attempt_at=now))  # fmt: skip
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

    def sent_counts(self, channel: str, since: datetime,
                    recipients: Sequence[str] = ()) -> tuple[int, dict[str, int]]:  # fmt: skip
        """Rows of ``channel`` sent at or after ``since``: in all, and per recipient among
        ``recipients``. Reads the (channel, sent_at) and (channel, recipient, sent_at) indexes."""
        o = outbox.c
        count = sa.func.count()
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(count).select_from(outbox)
                                 .where(o.channel == channel, o.sent_at >= since)).scalar_one()  # fmt: skip
            per: dict[str, int] = {}
            for part in _chunks(sorted(set(recipients))):
                stmt = (sa.select(o.recipient, count)
                        .where(o.channel == channel, o.recipient.in_(part), o.sent_at >= since)
                        .group_by(o.recipient))  # fmt: skip
                per.update({str(r): int(n) for r, n in conn.execute(stmt)})
        return int(total), per

    def queue_counts(self) -> dict[str, Any]:
        """What an operator graphs, each from an index: open changes by status, the oldest open
        change's ``received_at`` (the lag), outbox rows by status except ``sent``, the earliest
        ``next_attempt_at`` of a pending or retry row (the outbox's lag), pending timers."""
        c, o = changes.c, outbox.c
        count = sa.func.count()
        out: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for status in ("pending", "claimed"):
                out[f"changes_{status}"] = conn.execute(sa.select(count).select_from(changes)
                                                        .where(c.status == status)).scalar_one()  # fmt: skip
            oldest = None
            for status in ("pending", "claimed"):
                seq = conn.execute(sa.select(c.seq).where(c.status == status).order_by(c.seq).limit(1)).scalar()
                if seq is not None and (oldest is None or seq < oldest):
                    oldest = seq
            out["oldest_received_at"] = (
                conn.execute(sa.select(c.received_at).where(c.seq == oldest)).scalar() if oldest is not None else None
            )
            for status in rows.OUTBOX_GAUGES:
                out[f"outbox_{status}"] = conn.execute(sa.select(count).select_from(outbox)
                                                       .where(o.status == status)).scalar_one()  # fmt: skip
            due = [conn.execute(sa.select(sa.func.min(o.next_attempt_at)).where(o.status == status)).scalar()
                   for status in ("pending", "retry")]  # each the first entry of the (status, next_attempt_at) index
            out["oldest_due_at"] = min((d for d in due if d is not None), default=None)
            out["timers"] = conn.execute(sa.select(count).select_from(timers)).scalar_one()
        return out

    def claim_source(self, source: str, owner: str, now: datetime, lease_seconds: float) -> dict[str, Any] | None:
        """Lease the poller of ``source`` to ``owner`` (one replica polls a source at a time) and
        return its saved state (``{}`` the first time); None while another owner's lease runs."""
        from flowctl.store.tables import source_cursors

        s = source_cursors.c
        until = (now + timedelta(seconds=lease_seconds)).isoformat()
        with self._write_lock, self._writer.begin() as conn:
            query = sa.select(s.cursor).where(s.source == source)
            if self._postgres:
                conn.execute(self._insert_for(source_cursors).on_conflict_do_nothing(),
                             {"source": source, "cursor": {}, "updated_at": now})  # fmt: skip
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

    def save_source(self, source: str, state: Mapping[str, Any], hashes: Mapping[str, str | None],
                    owner: str, now: datetime, lease_seconds: float) -> None:  # fmt: skip
        """Store a poll's result in one transaction: the row hashes (None: the row is gone) and the
        source's state (its cursor), renewing ``owner``'s lease."""
        from flowctl.store.tables import source_cursors, source_rows

        r = source_rows.c
        until = (now + timedelta(seconds=lease_seconds)).isoformat()
        gone = [key for key, value in hashes.items() if value is None]
        kept = [{"source": source, "key": key, "hash": value} for key, value in hashes.items() if value is not None]
        with self._write_lock, self._writer.begin() as conn:
            for part in _chunks(gone):
                conn.execute(sa.delete(source_rows).where(r.source == source, r.key.in_(part)))
            self._many(conn, self._upsert_for(source_rows), kept)
            conn.execute(self._upsert_for(source_cursors),
                         {"source": source, "cursor": {**state, "owner": owner, "lease_until": until},
                          "updated_at": now})  # fmt: skip

    def source_hashes(self, source: str, keys: Sequence[str]) -> dict[str, str]:
        """The stored hash of each of ``keys`` seen before (absent: never seen, or deleted)."""
        from flowctl.store.tables import source_rows

        r = source_rows.c
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for part in _chunks(sorted(set(keys))):
                out.update(conn.execute(sa.select(r.key, r.hash).where(r.source == source, r.key.in_(part))).all())
        return out

    def source_keys(self, source: str) -> set[str]:
        """Every key of ``source`` the store holds a copy of (the delete scan compares them)."""
        from flowctl.store.tables import source_rows

        with self.engine.connect() as conn:
            found = conn.execute(sa.select(source_rows.c.key).where(source_rows.c.source == source))
            return {str(key) for key in found.scalars()}

    def _upsert_for(self, table: sa.Table) -> Any:
        stmt = self._insert_for(table)
        keys = [col.name for col in table.primary_key.columns]
        return stmt.on_conflict_do_update(index_elements=keys,
                                          set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys})
