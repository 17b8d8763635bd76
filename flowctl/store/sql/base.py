"""The shared floor of ``SqlStore``: connections, prepared statements and dialect differences.

Every role of the store (one mixin module each beside this one) reads and writes through what is
built here: one ``Engine`` per store (``store/engines.py``) and its writer twin, the SQLite write
lock, statements built once per store so SQLAlchemy compiles each shape once, and ``_prepare`` /
``_run``, which send a batch as one driver ``executemany`` with each value through its column
type. SQLite and PostgreSQL differ in a few places (``INSERT … ON CONFLICT`` flavour, ``FOR UPDATE
SKIP LOCKED``, advisory locks that make claimers and deployers take turns); those differences
live here or next to the statement that needs them, keyed on ``self._postgres``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from flowctl.engine.state import ACTIVE
from flowctl.store.dates import date_rows
from flowctl.store.engines import Writer, driver_sql, keeping, make_engine
from flowctl.store.tables import (
    allocations,
    care_occurrences,
    changes,
    config_versions,
    notes,
    outbox,
    record_dates,
    records,
    runs,
    source_rows,
    stage_entries,
    timers,
)
from flowctl.store.writelock import WriteLock

#: How many pending changes a claim reads at a time while looking for claimable ones.
SCAN_MIN = 256

#: Compiled plans :meth:`SqlBase._prepare` keeps. Its statements are built once, in ``__init__``:
#: a statement built per call would add a plan per call (the leak that grew the engine process
#: by megabytes a minute under load, from the date index's insert); past this bound the cache is
#: dropped and built again, so such a mistake costs compiling, not memory.
COMPILED_MAX = 256

#: Parameters per ``IN (...)`` list, well under SQLite's and PostgreSQL's limits.
CHUNK = 900

#: Appends from several replicas commit one at a time on PostgreSQL: a sequence hands out values
#: in call order but transactions commit in any order, and a claimer that saw seq 11 committed
#: before seq 10 would run one record's changes out of order.
PG_APPEND_LOCK = 0x666C6F77_61707064  # "flowappd"

#: Change claims take turns on PostgreSQL too. Whether a change may go depends on rows other
#: claimers are changing (an earlier change of its record); a claimer reading a snapshot that
#: misses a concurrent claim would hand out the next change of that record beside it. A claim
#: is one short transaction, so taking turns costs little; SKIP LOCKED still keeps it from
#: waiting on a worker that is finishing a change.
PG_CLAIM_LOCK = 0x666C6F77_636C6D63  # "flowclmc"

#: Deploys (``flowctl apply``/``rollback``) take turns: each checks the current version, then replaces it.
PG_DEPLOY_LOCK = 0x666C6F77_64706C79  # "flowdply"

CLAIMABLE_OUTBOX = ("pending", "retry", "held")  # held: until a sending policy allows


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def by_object(keys: Iterable[tuple[str, str]]) -> Iterator[tuple[str, Sequence[str]]]:
    """(object, ids) per object and chunk: ``object = ? AND id IN (...)`` reads the key index."""
    ids: dict[str, set[str]] = {}
    for object_, id_ in keys:
        ids.setdefault(object_, set()).add(id_)
    for object_, found in ids.items():
        for part in chunks(sorted(found)):
            yield object_, part


def converter(binds: Sequence[tuple[str, bool, Any, Any]], *, positional: bool) -> Callable[[Mapping[str, Any]], Any]:
    """A function from a row (by column key) to the driver's parameters of one compiled statement.

    ``binds``: per parameter in the statement's order, (name, taken from the row, the statement's
    own value otherwise, the type's bind processor or None). Generated once per statement and
    shape of row, like ``engine.state.copier``: a loop over the binds for every row of every write
    cost more than the rest of preparing it. Constants are processed here, once."""
    namespace: dict[str, Any] = {}
    parts = []
    for index, (name, live, const, proc) in enumerate(binds):
        if not live:
            namespace[f"c{index}"] = proc(const) if proc else const
            parts.append(f"c{index}")
        elif proc is not None:
            namespace[f"p{index}"] = proc
            parts.append(f"p{index}(row[{name!r}])")
        else:
            parts.append(f"row[{name!r}]")
    if positional:
        body = "(" + "".join(f"{part}, " for part in parts) + ")"
    else:
        body = "{" + ", ".join(f"{name!r}: {part}" for (name, *_), part in zip(binds, parts, strict=True)) + "}"
    exec(f"def convert(row):\n    return {body}\n", namespace)  # names are repr()'d: nothing runs from them
    return namespace["convert"]  # type: ignore[no-any-return]


class SqlBase:
    """The store on a database URL: ``sqlite:///path/flowctl.db`` or ``postgresql+psycopg://…``.

    The schema must be current (``flowctl.store.open_store`` migrates before opening).
    """

    def __init__(self, url: str | sa.URL) -> None:
        self.engine: Engine = make_engine(url)
        self._kept = threading.local()  # a thread's kept write connection: see kept_connection
        self._writer = Writer(self.engine, self._kept)
        self._lease_writer = Writer(self.engine, self._kept, lease=True)  # claims: see store/engines.py
        self.dialect = self.engine.dialect.name
        self._compiled: dict[tuple[int, tuple[str, ...]], Any] = {}  # see _many
        self._readers: dict[int, list[Any]] = {}  # see _rows: per kept query, its columns' result processors
        self._names: dict[int, list[str]] = {}  # see _dicts: per kept query, its columns' keys
        self._compiled_keepalive: list[Any] = []
        self._bound = threading.local()  # .conn: the inline run's transaction, read by _reading
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
        self._insert_stage_entries = stage_entries.insert()  # a history: rows are only ever added
        self._insert_dates = record_dates.insert()
        self._upsert_source_rows = upsert(source_rows)
        self._insert_notes = insert(notes).on_conflict_do_nothing(index_elements=["key"])  # once per effect
        self._insert_changes_plain = insert(changes).on_conflict_do_nothing(index_elements=["idempotency_key"])
        self._insert_changes = self._insert_changes_plain.returning(c.idempotency_key, c.seq)
        # RETURNING tells whether the row went in (psycopg reports no rowcount for this INSERT)
        self._insert_occurrence = (
            insert(care_occurrences).on_conflict_do_nothing().returning(care_occurrences.c.process)
        )
        self._insert_ledger = care_occurrences.insert()  # care: see insert_care
        self._finish_changes = (
            sa.update(changes)
            .where(c.seq == sa.bindparam("b_seq"))
            .values(
                status=sa.bindparam("b_status"),
                error=sa.bindparam("b_error"),
                processed_at=sa.bindparam("b_now"),
                lease_owner=None,
                lease_until=None,
            )
        )
        self._finish_held_changes = (  # fencing: only the changes this claim still holds
            sa.update(changes)
            .where(
                c.seq == sa.bindparam("b_seq"),
                c.status == "claimed",
                c.lease_owner == sa.bindparam("b_owner"),
                c.attempts == sa.bindparam("b_attempts"),
            )
            .values(
                status=sa.bindparam("b_status"),
                error=sa.bindparam("b_error"),
                processed_at=sa.bindparam("b_now"),
                lease_owner=None,
                lease_until=None,
            )
        )
        # the StateView reads, on every change the worker handles: built once, no expanding IN
        bind = sa.bindparam
        active = sa.or_(*(runs.c.status == sa.literal(status, sa.String()) for status in ACTIVE))
        self._get_record = records.select().where(records.c.object == bind("object"), records.c.id == bind("id"))
        self._get_active_runs = (
            runs.select()
            .where(runs.c.object == bind("object"), runs.c.record_id == bind("id"), active)
            .order_by(runs.c.seq, runs.c.id)
        )
        self._get_run = runs.select().where(runs.c.id == bind("id"))
        self._get_timers = timers.select().where(t.run_id == bind("run_id")).order_by(t.due, t.id)
        self._get_allocation = sa.select(allocations.c.state).where(allocations.c.rule == bind("rule"))
        r = records.c  # least_loaded: on the (object, owner) index; final stages are left out below
        self._owned = (
            sa.select(r.owner, r.pipeline, r.stage, sa.func.count())
            .where(r.object == bind("object"), r.owner.in_(bind("users", expanding=True)), r.deleted.is_(False))
            .group_by(r.owner, r.pipeline, r.stage)
        )
        # the worker's batch forms, built once: each batch only binds its keys (a statement built
        # per call cost more CPU than the query on a batch of one change)
        some: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
        self._records_in = records.select().where(records.c.object == bind("object"), records.c.id.in_(some))
        self._active_runs_in = (
            runs.select()
            .where(runs.c.object == bind("object"), runs.c.record_id.in_(some), active)
            .order_by(runs.c.seq, runs.c.id)
        )
        self._delete_dates = sa.delete(record_dates).where(
            record_dates.c.object == bind("object"), record_dates.c.record_id.in_(some)
        )
        self._delete_record_dates = sa.delete(record_dates).where(  # SQLite: one record a row, executemany
            record_dates.c.object == bind("object"), record_dates.c.record_id == bind("record_id")
        )
        self._delete_timers = sa.delete(timers).where(t.id.in_(some))
        claimable = sa.or_(c.status == "pending", sa.and_(c.status == "claimed", c.lease_until <= bind("now")))
        self._claimable_change_exists = sa.select(c.seq).where(claimable).limit(1)  # read before a claim (SQLite)
        claim = {"lease_owner": bind("owner"), "lease_until": bind("until"), "attempts": c.attempts + 1}
        self._claim_changes = (
            sa.update(changes)
            .where(c.seq.in_(sa.bindparam("seqs", expanding=True)), claimable)
            .values(**claim, status="claimed")
            .returning(*c)
        )
        # SQLite: the seqs as one JSON array, so the statement is compiled once and runs on the
        # driver (``_rows``); SQLAlchemy's expanding IN and its rows cost a third of a claim
        listed = sa.func.json_each(sa.bindparam("seqs_json", type_=sa.String())).table_valued("value")
        # ``status || ''``: rows found by seq, not on the status index, which SQLite's planner
        # would walk through every pending change (it cannot tell that the list is short)
        status = c.status + ""
        listed_claimable = sa.or_(status == "pending", sa.and_(status == "claimed", c.lease_until <= bind("now")))
        self._claim_listed_changes = (
            sa.update(changes)
            .where(c.seq.in_(sa.select(listed.c.value)), listed_claimable)
            .values(**claim, status="claimed")
            .returning(*c)
        )
        light = (c.seq, c.object, c.record_id, c.status, c.lease_until)
        self._claimed_changes = sa.select(*light).where(c.status == "claimed")
        self._pending_changes = (
            sa.select(*light)
            .where(c.status == "pending", c.seq > sa.bindparam("after"))
            .order_by(c.seq)
            .limit(sa.bindparam("scan"))
        )
        # the inline run's check (SQLite, under the write lock): whether a worker may hold the
        # record back, with an open change stored before the batch or a due timer under a live
        # lease; read on the record's own index entries, not through every open change
        self._held_back_record = sa.select(
            sa.or_(
                sa.exists().where(
                    c.object == bind("object"),
                    c.record_id == bind("id"),
                    c.seq <= bind("before"),
                    sa.or_(c.status == "pending", c.status == "claimed"),
                ),
                sa.exists().where(
                    t.object == bind("object"),
                    t.record_id == bind("id"),
                    t.due <= bind("now"),
                    t.lease_until > bind("now"),
                ),
            )
        )
        self._open_changes_of = (  # … on PostgreSQL, for the batch's records only
            sa.select(c.record_id)
            .where(
                c.object == bind("object"),
                c.record_id.in_(some),
                c.seq <= bind("before"),
                sa.or_(c.status == "pending", c.status == "claimed"),
            )
            .distinct()
        )
        self._timers_of_records = (  # … and their timers, locked (see SqlChangeQueue._held_back)
            sa.select(t.record_id, t.lease_until)
            .where(t.object == bind("object"), t.record_id.in_(some))
            .with_for_update(of=timers)
        )
        self._due_timers = (
            sa.select(t.id)
            .where(t.due <= sa.bindparam("now"), sa.or_(t.lease_until.is_(None), t.lease_until <= sa.bindparam("now")))
            .order_by(t.due)
            .limit(sa.bindparam("limit"))
        )
        self._claimable_outbox = (
            sa.select(o.id)
            .where(
                sa.or_(
                    o.status == "pending",  # never tried: due whatever the clock says (it may have gone back)
                    sa.and_(
                        o.status.in_(CLAIMABLE_OUTBOX),
                        sa.or_(o.next_attempt_at.is_(None), o.next_attempt_at <= sa.bindparam("now")),
                    ),
                    sa.and_(o.status == "sending", o.lease_until <= sa.bindparam("now")),
                )
            )
            .order_by(o.id)
            .limit(sa.bindparam("limit"))
        )
        if self._postgres:
            self._due_timers = self._due_timers.with_for_update(skip_locked=True)
            self._claimable_outbox = self._claimable_outbox.with_for_update(skip_locked=True)

    def kept_connection(self) -> contextlib.AbstractContextManager[None]:
        """Within the block, this thread's write transactions reuse one connection (SQLite; see
        :class:`~flowctl.store.engines.Writer`). For threads that write all their lives."""
        return contextlib.nullcontext() if self._postgres else keeping(self._kept)

    def close(self) -> None:
        self.engine.dispose()
        if isinstance(self._write_lock, WriteLock):
            self._write_lock.close()

    def _any(self, query: Any, params: Mapping[str, Any], *, kept: bool = True) -> bool:
        """Whether ``query`` finds a row, read outside any write transaction (SQLite: a claim
        that would find nothing need not queue for the write lock).

        The worker asks this two or three times per change when changes come one at a time, so a
        statement the store keeps (``kept``; it ends in ``LIMIT 1``) is read through :meth:`_rows`,
        on the thread's kept write connection between its transactions when it keeps one (no
        checkout from the pool; SQLite reads it in a snapshot of its own, as any read)."""
        own = getattr(self._kept, "conn", None) if kept else None
        if own is not None and not own.in_transaction():
            return bool(self._rows(own, query, params))
        with self.engine.connect() as conn:
            if not kept:
                return conn.execute(query, params).first() is not None
            return bool(self._rows(conn, query, params))

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection to read with: the write transaction of an inline run in progress on this
        thread (its own snapshot, no checkout from the pool: see ``_run_inline``), else the pool's."""
        bound = getattr(self._bound, "conn", None)
        if bound is not None:
            yield bound
            return
        with self.engine.connect() as conn:
            yield conn

    def _dicts(self, conn: Connection, query: Any, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """:meth:`_rows` as dicts by column name (what ``rows.*_from`` read)."""
        names = self._names.get(id(query))
        if names is None:
            names = self._names[id(query)] = [column.key for column in query.selected_columns]
        return [dict(zip(names, row, strict=True)) for row in self._rows(conn, query, params)]

    def _rows(self, conn: Connection, query: Any, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a SELECT the store keeps, each value as its column's type reads it.

        On SQLite the query is compiled once and run on the driver: the claim's two planning
        reads, taken for every batch, cost more through SQLAlchemy than SQLite's own work on them."""
        if self._postgres:
            return [tuple(row) for row in conn.execute(query, params)]
        prepared = self._prepare(query, [params])
        assert prepared is not None and isinstance(prepared[0], str)
        sql, binds = prepared
        readers = self._readers.get(id(query))
        if readers is None:
            dialect = self.engine.dialect
            compiled = query.compile(dialect=dialect)
            processors = [entry.type._cached_result_processor(dialect, None) for entry in compiled._result_columns]
            readers = [(column, read) for column, read in enumerate(processors) if read is not None]
            self._readers[id(query)] = readers
        found = driver_sql(conn, sql, binds[0]).fetchall()
        if not readers:
            return list(found)
        out = []
        for row in found:  # only the columns whose type reads them (a claimed change: 6 of 19)
            values = list(row)
            for column, read in readers:
                values[column] = read(values[column])
            out.append(tuple(values))
        return out

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
        if len(batch) > 1 and any(len(row) != len(keys) or tuple(row) != keys for row in batch):
            return stmt, batch  # rows of different shapes: let SQLAlchemy sort them out
        plan = self._compiled.get((id(stmt), keys))
        if plan is None:
            if len(self._compiled) >= COMPILED_MAX:  # and what is keyed on the statements' ids with it
                self._compiled.clear()
                self._compiled_keepalive.clear()
                self._readers.clear()
                self._names.clear()
            compiled = stmt.compile(dialect=self.engine.dialect, column_keys=list(keys))
            procs = compiled._bind_processors
            # per bind: take it from the row, or it is a constant of the statement (``values(x=None)``)
            binds = [
                (n, n in keys, compiled.binds[n].effective_value if n not in keys else None, procs.get(n))
                for n in (compiled.positiontup or compiled.binds)
            ]
            plan = (compiled.string, converter(binds, positional=compiled.positiontup is not None))
            self._compiled[(id(stmt), keys)] = plan
            self._compiled_keepalive.append(stmt)  # ids stay unique while the statement lives
        sql, convert = plan
        return sql, [convert(row) for row in batch]

    def _run(self, conn: Connection, prepared: tuple[Any, list[Any]] | None) -> int:
        """Send what :meth:`_prepare` made; the rows it changed (the sum over an executemany)."""
        if prepared is None:
            return 0
        statement, rows = prepared
        if not isinstance(statement, str):
            return int(conn.execute(statement, rows).rowcount)
        if self._postgres:
            return int(conn.exec_driver_sql(statement, rows).rowcount)
        return int(driver_sql(conn, statement, rows, many=True).rowcount)

    def _run_all(self, conn: Connection, writes: Sequence[tuple[Any, list[Any]] | None]) -> None:
        """Send several writes :meth:`_prepare` made, in order, whose row counts nobody reads.

        On PostgreSQL they go in one round trip (psycopg's pipeline mode) instead of one each: a
        batch writes records, dates, runs, timers, outbox rows and stage entries, and each round
        trip costs the client about 100 us of CPU besides the wait. An error is raised as
        SQLAlchemy raises it (``errors.unavailable`` still tells an outage from a bug)."""
        ready = [write for write in writes if write is not None]
        if not self._postgres or len(ready) < 2 or not all(isinstance(sql, str) for sql, _ in ready):
            for write in ready:
                self._run(conn, write)
            return
        import psycopg  # PostgreSQL only: SQLite users need not have it

        driver = conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        sql, rows_ = ready[0]
        try:
            with driver.pipeline(), driver.cursor() as cursor:
                for sql, rows_ in ready:
                    cursor.executemany(sql, rows_)
        except psycopg.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, rows_, exc, psycopg.Error) from exc

    def _insert_for(self, table: sa.Table) -> Any:
        return (postgresql.insert if self._postgres else sqlite.insert)(table)

    def _write_dates(self, conn: Connection, written: Iterable[Mapping[str, Any]]) -> None:
        """Re-index the date fields of the records just written (``store/dates.py``)."""
        written = list(written)
        self._unindex_dates(conn, written)
        self._many(conn, self._insert_dates, date_rows(written))

    def _unindex_dates(self, conn: Connection, written: Sequence[Mapping[str, Any]]) -> None:
        """Delete the date index rows of the records ``written`` (before their new ones go in)."""
        if not written:
            return
        if self._postgres:
            for object_, ids in by_object((row["object"], row["id"]) for row in written):
                conn.execute(self._delete_dates, {"object": object_, "ids": list(ids)})
        else:  # a statement SQLite prepares once, on the driver: SQLAlchemy's expanding IN cost more
            self._many(
                conn, self._delete_record_dates, [{"object": r["object"], "record_id": r["id"]} for r in written]
            )

    def _upsert_for(self, table: sa.Table) -> Any:
        stmt = self._insert_for(table)
        keys = [col.name for col in table.primary_key.columns]
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys}
        )
