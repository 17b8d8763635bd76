"""One SQLAlchemy ``Engine`` per store, tuned per database.

SQLite: WAL (readers never block the writer), ``synchronous=FULL`` (an acknowledged write survives
a power cut), a 10 s ``busy_timeout``, foreign keys off. Python's ``sqlite3`` would start
transactions lazily as ``BEGIN DEFERRED``; two writers that both read first then deadlock while
upgrading their read locks, so we take over transaction control (the SQLAlchemy recipe): write
transactions begin with ``BEGIN IMMEDIATE`` and queue on the busy timeout instead, and reads run
in autocommit, one snapshot per statement, with no BEGIN/ROLLBACK round trips.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

#: Execution option that marks a connection as a writer (``BEGIN IMMEDIATE`` on SQLite).
WRITE = "flowctl_write"

BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 5
CACHE_KIB = 32_768

# one encoder, built once: json.dumps with options builds a new JSONEncoder per call, and every
# JSON column of every row the worker writes goes through here
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


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
    return engine.execution_options(**{WRITE: True})


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database in (None, "", ":memory:"):
        raise ValueError(f"SQLite store needs a file, not {url.render_as_string()!r}: use memory:// for tests")
    engine = sa.create_engine(url, json_serializer=_dumps, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

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
        if conn.get_execution_options().get(WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
