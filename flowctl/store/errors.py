"""What a store failure means to the daemon: the database is unavailable, or something is wrong.

The daemon's threads wait out an outage (the database stopped, restarted, a connection was cut,
SQLite's write lock was not had in time) with backoff and one log line per outage, while any other
error is a bug, logged with its traceback. Which exceptions mean "unavailable" depends on the
database driver, so the store, which owns the driver, decides: the runtime asks
:func:`unavailable` and logs :func:`brief`, and never imports SQLAlchemy itself.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

from flowctl.store.writelock import WriteLockTimeout


class StoreUnavailable(Exception):
    """The database could not commit the write; the client should retry (HTTP 503)."""


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (stopped, restarting, connection cut)
    rather than that a statement is wrong: those are waited out, not logged as bugs."""
    if isinstance(exc, sa.exc.OperationalError) and _sqlite_statement_error(exc.orig):
        return False
    if isinstance(exc, StoreUnavailable | WriteLockTimeout | sa.exc.OperationalError | sa.exc.InterfaceError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


def _sqlite_statement_error(cause: BaseException | None) -> bool:
    """Whether SQLite refused the statement itself (a syntax error, no such table or column, a
    function's wrong arguments: its generic ``SQLITE_ERROR``). sqlite3 raises those as an
    ``OperationalError`` too, like a locked or unreadable file, but waiting does not cure them."""
    return isinstance(cause, sqlite3.Error) and getattr(cause, "sqlite_errorname", "") == "SQLITE_ERROR"


def lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that waited its whole bound for SQLite's writer lock: another
    process holds it (perhaps frozen), not the database being down."""
    return isinstance(exc, WriteLockTimeout)


def brief(exc: BaseException) -> str:
    """The driver's first line ("connection refused"), without SQLAlchemy's SQL and links."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"[:300]


class BadUrl(ValueError):
    """A database URL that cannot be parsed."""


def sqlite_database(url: str) -> str | None:
    """The database file of a SQLite URL (as written, possibly a ``file:`` URI); None for another
    database or an in-memory SQLite. Raises :class:`BadUrl` for a URL that is not one."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise BadUrl(str(exc)) from exc
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return parsed.database
