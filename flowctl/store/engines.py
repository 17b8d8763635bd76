"""One SQLAlchemy ``Engine`` per store, tuned per database.

SQLite: WAL (readers never block the writer), ``synchronous=FULL`` (an acknowledged write survives
a power cut; claims, which only lease work, skip their own fsync: see ``lease_writer``), a 10 s
``busy_timeout``, foreign keys off. Python's ``sqlite3`` would start
transactions lazily as ``BEGIN DEFERRED``; two writers that both read first then deadlock while
upgrading their read locks, so we take over transaction control (the SQLAlchemy recipe): write
transactions begin with ``BEGIN IMMEDIATE`` and queue on the busy timeout instead, and reads run
in autocommit, one snapshot per statement, with no BEGIN/ROLLBACK round trips.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

#: Execution option that marks a connection as a writer (``BEGIN IMMEDIATE`` on SQLite).
WRITE = "flowctl_write"
#: Execution option of a writer whose transactions only take leases (see :func:`lease_writer`).
LEASE = "flowctl_lease"

BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 5
CACHE_KIB = 32_768

# one encoder, built once: json.dumps with options builds a new JSONEncoder per call, and every
# JSON column of every row the worker writes goes through here
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(value: object) -> str:
    """A JSON column's text. An empty dict (two of the six JSON values a new deal writes: its
    change's ``data`` and its run's ``visits``) skips the encoder, a microsecond to set up per call."""
    if type(value) is dict and not value:
        return "{}"
    return _encode(value)


_raw_decode = json.JSONDecoder().raw_decode


def _loads(text: str | bytes) -> Any:
    """A JSON column's value on SQLite. The store wrote the text compact, so it is decoded without
    ``json.loads``' two whitespace scans; anything else (whitespace, a bad document) goes to it."""
    if not isinstance(text, str):  # bytes: a BLOB another tool wrote, which json.loads decodes
        return json.loads(text)
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def make_engine(url: str | sa.URL) -> Engine:
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # pool_pre_ping: connections the server dropped (a restart) are replaced at checkout instead
    # of failing the next statement; connect_timeout: an unreachable host fails a connection
    # attempt in seconds (the default waits for TCP), so requests answer 503 rather than hang
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    return sa.create_engine(url, json_serializer=_dumps, pool_pre_ping=True, connect_args=connect_args)


def writer(engine: Engine) -> Engine:
    """The same engine (and pool), its transactions marked as writes."""
    return engine.execution_options(**{WRITE: True, LEASE: False})  # both, so a kept connection is reset


def lease_writer(engine: Engine) -> Engine:
    """A writer for claims: transactions that only lease work (changes, timers, messages).

    On SQLite they commit with ``synchronous=NORMAL``: no fsync of their own. A process that dies
    loses nothing by it (the commit is in the WAL file); a power cut can lose the last claims, and
    a lost claim is work not yet taken, which is taken again, as a claim whose lease ran out is.
    The next ``FULL`` commit (the work's results, a message recorded sent) syncs the WAL with
    every claim before it, so no result outlives the claim it was made under. Every other write
    stays ``FULL``: an acknowledged change, a run's results and a sent mark survive a power cut.
    """
    return engine.execution_options(**{WRITE: True, LEASE: True})


class Writer:
    """Write transactions (``begin()``, as an engine's) that run on the calling thread's kept
    connection while it keeps one (:func:`keeping`), else on one from the pool.

    A checkout and return through SQLAlchemy's pool costs about 18 µs of CPU a transaction, and a
    change at one client takes three (the append that runs it, the delivery's claim and its sent
    mark): a daemon's ingest, worker and delivery threads write all their lives, so each keeps a
    connection instead. SQLite only: on PostgreSQL a connection goes through the pool's ping, which
    replaces one a server restart dropped."""

    def __init__(self, engine: Engine, kept: threading.local, *, lease: bool = False) -> None:
        self._pooled = lease_writer(engine) if lease else writer(engine)
        self._engine = engine
        self._options = dict(self._pooled.get_execution_options())  # set per transaction on a kept one
        self._kept = kept

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        kept = self._kept
        if not getattr(kept, "wanted", False):
            with self._pooled.begin() as conn:
                yield conn
            return
        conn = kept.conn
        if conn is None:
            conn = kept.conn = self._engine.connect()
        elif conn.in_transaction():  # a write inside a write: never on the same connection
            with self._pooled.begin() as other:
                yield other
            return
        conn.execution_options(**self._options)
        try:
            with conn.begin():
                yield conn
        except BaseException:
            # what a failed transaction leaves may be broken (a closed file): the next takes a new one
            kept.conn = None
            conn.close()
            raise


@contextlib.contextmanager
def keeping(kept: threading.local) -> Iterator[None]:
    """Within the block, the calling thread's :class:`Writer` transactions share one connection."""
    if getattr(kept, "wanted", False):
        yield
        return
    kept.wanted, kept.conn = True, None
    try:
        yield
    finally:
        conn, kept.conn, kept.wanted = kept.conn, None, False
        if conn is not None:
            conn.close()


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database in (None, "", ":memory:"):
        raise ValueError(f"SQLite store needs a file, not {url.render_as_string()!r}: use memory:// for tests")
    # pool_use_lifo: a thread gets back the connection it just returned. SQLite's page cache is
    # per connection, and a connection that finds the file changed since its last transaction
    # drops all of it; handed out in turn (the pool's default), every write began on a cold cache
    # and read its pages again (100 us of a one-client change, most of it system time)
    engine = sa.create_engine(
        url,
        json_serializer=_dumps,
        json_deserializer=_loads,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
        pool_use_lifo=True,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 emits no BEGIN of its own; see _begin
        cursor = dbapi_connection.cursor()
        # a new file only (see flowctl db vacuum): purges give space back. Not asked of a file that
        # has pages: there it changes nothing, and it waits for a writer's transaction to end (a
        # reader opened by the hot path, whose transaction is that writer, would wait for itself)
        if not cursor.execute("PRAGMA page_count").fetchone()[0]:
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            f"busy_timeout={BUSY_TIMEOUT_MS}",
            "foreign_keys=OFF",
            f"cache_size=-{CACHE_KIB}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(WRITE):
            synchronous = "NORMAL" if options.get(LEASE) else "FULL"
            if conn.info.get("synchronous", "FULL") != synchronous:  # a pragma only when it changes
                driver_sql(conn, f"PRAGMA synchronous={synchronous}")
                conn.info["synchronous"] = synchronous
            driver_sql(conn, "BEGIN IMMEDIATE")

    return engine


def driver_sql(conn: Connection, sql: str, params: Any = (), *, many: bool = False) -> Any:
    """SQLite: ``sql`` run on the connection's own sqlite3 connection; its cursor.

    SQLAlchemy's execution context (events, result wrapping) costs 50 to 75 µs a statement, more
    than SQLite's own work on the small statements of every write transaction (``BEGIN``, an
    append's seq lookups, a batch's inserts). The transaction is ours anyway (``BEGIN IMMEDIATE``
    above). A driver error is raised as SQLAlchemy raises it, so
    :func:`~flowctl.store.errors.unavailable` still tells an outage from a bug."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        return driver.executemany(sql, params) if many else driver.execute(sql, params)
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc
